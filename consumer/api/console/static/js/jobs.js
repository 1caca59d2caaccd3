// The list of the tenant's jobs, newest first: one row per job, updated in place from its event stream.

import {$, h, say, show} from "./dom.js";
import {phaseText, statusWord, wait} from "./format.js";
import {explain} from "./labels.js";
import {isTerminal} from "./streams.js";

export class JobList {
  constructor({onOpen, onCancel, onTemplate}) {
    this.onOpen = onOpen;
    this.onCancel = onCancel;
    this.onTemplate = onTemplate;
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

  // Where the job is, in words: its phase, its place in line and the wait (the queue's estimate is an interactive
  // job's), its progress while it renders.
  note(job) {
    if (job.cancel_requested_at && !isTerminal(job)) return "cancel requested";
    const where = phaseText(job);
    if (job.phase === "waiting_for_worker") return `${where}: none is active`;
    if (job.status === "queued" && job.request?.priority === "bulk") return `${where}; bulk: after interactive jobs`;
    if (job.status === "queued") return `${where}; wait: ${wait(this.estimate)}`;
    if (job.status === "in_progress") return `${where} · ${job.progress}%`;
    return statusWord(job) === "cancelled" ? where : "";
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
      template: h("button", {class: "secondary small", testid: "job-template", text: "Use a template video now",
        attrs: {type: "button"}}),
    };
    parts.open.addEventListener("click", () => this.onOpen(this.rows.get(job.id).job));
    parts.cancel.addEventListener("click", () => this.onCancel(this.rows.get(job.id).job));
    parts.template.addEventListener("click", () => this.onTemplate(this.rows.get(job.id).job));
    const node = h("li", {class: "job", testid: `job-${job.id}`},
      parts.thumb, parts.placeholder,
      h("div", {class: "job-body"}, parts.prompt, h("p", {class: "job-meta"}, parts.status, parts.degraded, parts.note),
        parts.progress, parts.error),
      h("div", {class: "job-actions"}, parts.open, parts.cancel, parts.template));
    return {node, parts, job};
  }

  render(row) {
    const {job, parts} = row;
    const prompt = job.prompt ?? "(parameters not yet known to this replica)";
    parts.prompt.textContent = prompt;
    parts.open.setAttribute("aria-label", `Open: ${prompt.slice(0, 80)}`);
    parts.cancel.setAttribute("aria-label", `Cancel: ${prompt.slice(0, 80)}`);
    const word = statusWord(job);
    parts.status.textContent = word;
    parts.status.className = `status ${word}`;
    show(parts.degraded, job.degraded === true);
    parts.degraded.textContent = job.similar_to ? "an earlier video of this product" : "template video";
    parts.progress.value = job.progress;
    parts.progress.textContent = `${job.progress}%`;
    parts.progress.setAttribute("aria-label", `Progress ${job.progress}%`);
    show(parts.progress, !isTerminal(job) || job.status === "completed");
    say(parts.error, job.error && word !== "cancelled" ? errorText(job.error) : "");
    parts.note.textContent = this.note(job);
    show(parts.cancel, !isTerminal(job) && !job.cancel_requested_at);
    // A job no worker will take soon: the same request again, a template video allowed (the API decides).
    show(parts.template, job.phase === "waiting_for_worker" && !job.cancel_requested_at);
    const poster = job.video?.poster_url;
    if (poster && !parts.thumb.getAttribute("src")) parts.thumb.src = poster;  // each answer signs it anew: keep one
    show(parts.thumb, Boolean(poster));
    show(parts.placeholder, !poster);
  }
}

// The list's filters as the form holds them (`Api.list`), and a call when they change.
export function listFilters() {
  return {status: $("filter-status").value, sku: $("filter-sku").value.trim(), createdAfter: $("filter-created").value};
}

export function onFiltersChange(reload) {
  const form = $("job-filters");
  form.addEventListener("change", () => reload());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    reload();
  });
}

export function errorText(error) {
  return explain(error.message, error.field);
}
