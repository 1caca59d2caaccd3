// The list of the tenant's jobs, newest first: one row per job, updated in place from its event stream.

import {$, h, say, show} from "./dom.js";
import {wait} from "./format.js";
import {isTerminal} from "./streams.js";

export class JobList {
  constructor({onOpen, onCancel}) {
    this.onOpen = onOpen;
    this.onCancel = onCancel;
    this.list = $("job-list");
    this.rows = new Map();  // job id -> {node, parts, job}
    this.estimate = null;
  }

  clear() {
    this.rows.clear();
    this.list.replaceChildren();
    show($("jobs-empty"), false);
  }

  job(id) {
    return this.rows.get(id)?.job ?? null;
  }

  // Add or update a job; new jobs go first (`atTop`) or after the others (an older page).
  put(job, {atTop = false} = {}) {
    let row = this.rows.get(job.id);
    if (row === undefined) {
      row = this.create(job);
      this.rows.set(job.id, row);
      if (atTop) this.list.prepend(row.node);
      else this.list.append(row.node);
    }
    row.job = job;
    this.render(row);
    show($("jobs-empty"), this.rows.size === 0);
    return row;
  }

  empty() {
    show($("jobs-empty"), this.rows.size === 0);
  }

  remove(id) {
    this.rows.get(id)?.node.remove();
    this.rows.delete(id);
    this.empty();
  }

  highlight(id) {
    const row = this.rows.get(id);
    if (!row) return;
    for (const other of this.list.querySelectorAll(".fresh")) other.classList.remove("fresh");
    row.node.classList.add("fresh");
    row.parts.open.focus({preventScroll: true});
    row.node.scrollIntoView({block: "nearest"});
  }

  setEstimate(estimate) {
    this.estimate = estimate;
    for (const row of this.rows.values()) this.render(row);
  }

  create(job) {
    const parts = {
      thumb: h("img", {class: "thumb", attrs: {alt: "", loading: "lazy", width: 88, height: 88}}),
      placeholder: h("div", {class: "thumb", attrs: {"aria-hidden": "true"}}),
      prompt: h("p", {class: "job-prompt", testid: "job-prompt"}),
      status: h("span", {testid: "job-status"}),
      degraded: h("span", {class: "badge template", text: "template video", testid: "job-degraded"}),
      note: h("span", {class: "muted", testid: "job-note"}),
      progress: h("progress", {testid: "job-progress", attrs: {max: 100, value: 0}}),
      error: h("p", {class: "error", testid: "job-error"}),
      open: h("button", {class: "secondary small", testid: "job-open", text: "Open", attrs: {type: "button"}}),
      cancel: h("button", {class: "danger small", testid: "job-cancel", text: "Cancel", attrs: {type: "button"}}),
    };
    parts.open.addEventListener("click", () => this.onOpen(this.rows.get(job.id).job));
    parts.cancel.addEventListener("click", () => this.onCancel(this.rows.get(job.id).job));
    const node = h("li", {class: "job", testid: `job-${job.id}`},
      parts.thumb, parts.placeholder,
      h("div", {class: "job-body"}, parts.prompt, h("p", {class: "job-meta"}, parts.status, parts.degraded, parts.note),
        parts.progress, parts.error),
      h("div", {class: "job-actions"}, parts.open, parts.cancel));
    return {node, parts, job};
  }

  render(row) {
    const {job, parts} = row;
    const prompt = job.prompt ?? "(parameters not yet known to this replica)";
    parts.prompt.textContent = prompt;
    parts.open.setAttribute("aria-label", `Open: ${prompt.slice(0, 80)}`);
    parts.cancel.setAttribute("aria-label", `Cancel: ${prompt.slice(0, 80)}`);
    parts.status.textContent = job.status;
    parts.status.className = `status ${job.status}`;
    show(parts.degraded, job.degraded === true);
    parts.progress.value = job.progress;
    parts.progress.textContent = `${job.progress}%`;
    parts.progress.setAttribute("aria-label", `Progress ${job.progress}%`);
    show(parts.progress, !isTerminal(job) || job.status === "completed");
    say(parts.error, job.error ? errorText(job.error) : "");
    const cancelling = job.cancel_requested_at && !isTerminal(job);
    parts.note.textContent = cancelling ? "cancel requested"
      : job.status === "queued" && job.request?.priority === "bulk" ? "bulk: after interactive jobs"
      : job.status === "queued" ? `wait: ${wait(this.estimate)}`  // the queue's estimate is an interactive job's
        : job.status === "in_progress" ? `${job.progress}%` : "";
    show(parts.cancel, !isTerminal(job) && !job.cancel_requested_at);
    const poster = job.video?.poster_url;
    if (poster && !parts.thumb.getAttribute("src")) parts.thumb.src = poster;  // each answer signs it anew: keep one
    show(parts.thumb, Boolean(poster));
    show(parts.placeholder, !poster);
  }
}

export function errorText(error) {
  return error.field ? `${error.message} (field: ${error.field})` : error.message;
}
