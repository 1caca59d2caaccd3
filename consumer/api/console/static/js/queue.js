// The queue panel (GET /v1/queue): the pool's figures, this tenant's own queued jobs and its estimated wait (workers
// serve tenants round-robin, so it depends on this tenant's own jobs and on how many tenants wait, not on their
// backlogs). Refreshed after this console's own changes, when a job ends, and every REFRESH_MS while the page is
// visible (other tenants' jobs change it too).

import {$} from "./dom.js";
import {wait} from "./format.js";

const REFRESH_MS = 15000;

export class QueuePanel {
  constructor(api, onEstimate) {
    this.api = api;
    this.onEstimate = onEstimate;
    this.timer = null;
    this.pending = null;
  }

  start() {
    this.refresh();
    this.timer = setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, REFRESH_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // Coalesces calls made while one is under way.
  refresh() {
    this.pending ??= this.api.queue()
      .then((queue) => this.show(queue))
      .catch(() => this.show(null))
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }

  show(queue) {
    $("queue-queued").textContent = queue ? String(queue.queued) : "–";
    $("queue-mine").textContent = queue ? String(queue.tenant_queued) : "–";
    $("queue-in-progress").textContent = queue ? String(queue.in_progress) : "–";
    $("queue-workers").textContent = queue ? String(queue.workers_active) : "–";
    $("queue-wait").textContent = queue ? wait(queue.estimated_wait_s) : "–";
    this.onEstimate(queue ? queue.estimated_wait_s : null);
  }
}
