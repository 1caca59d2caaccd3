// One event stream per unfinished job, driving its row: no polling. Browsers open at most six HTTP/1.1 connections
// to one origin, so at most MAX_STREAMS streams run at once (the rest wait their turn, oldest last) and calls keep
// connections to spare. A dropped stream resumes with Last-Event-ID.

const MAX_STREAMS = 4;
const TERMINAL = new Set(["completed", "failed"]);
const RETRY_MS = [1000, 2000, 5000, 10000];

export function isTerminal(job) {
  return TERMINAL.has(job.status);
}

export class Streams {
  constructor(api, onJob, onError) {
    this.api = api;
    this.onJob = onJob;
    this.onError = onError;
    this.running = new Map();  // job id -> AbortController
    this.waiting = [];
  }

  follow(id) {
    if (this.running.has(id) || this.waiting.includes(id)) return;
    this.waiting.push(id);
    this.next();
  }

  stopAll() {
    this.waiting = [];
    for (const controller of this.running.values()) controller.abort();
    this.running.clear();
  }

  next() {
    while (this.running.size < MAX_STREAMS && this.waiting.length > 0) {
      const id = this.waiting.shift();
      const controller = new AbortController();
      this.running.set(id, controller);
      this.run(id, controller.signal).finally(() => {
        if (this.running.get(id)?.signal === controller.signal) this.running.delete(id);
        this.next();
      });
    }
  }

  async run(id, signal) {
    let lastEventId = null;
    let ended = false;
    for (let attempt = 0; !signal.aborted && !ended; attempt += 1) {
      try {
        lastEventId = await this.api.events(id, {
          lastEventId,
          signal,
          onJob: (job) => {
            attempt = 0;
            if (isTerminal(job)) ended = true;
            this.onJob(job);
          },
        });
        if (lastEventId === null) ended = true;  // 204 before any event: nothing will come
        if (!ended) await pause(RETRY_MS[0], signal);  // the server closed it early (a restart): resume soon
      } catch (error) {
        if (signal.aborted || error.name === "AbortError") return;
        if (error.status >= 400 && error.status < 500 && error.status !== 429) {
          this.onError(id, error);  // 401 signs out, 404 is gone: retrying cannot help
          return;
        }
        await pause(RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)], signal);
      }
    }
  }
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, {once: true});
  });
}
