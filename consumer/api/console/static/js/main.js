// The console's start: sign in (the key or token stays in this tab's sessionStorage), then the form, the job list
// driven by event streams, the queue panel and the detail dialog. A screen reader hears a job's status changes from
// one status region (#announcer), never every progress tick.

import {Api, ApiError, fetchJson} from "./api.js";
import {Detail} from "./detail.js";
import {$, say, show} from "./dom.js";
import {SubmitForm} from "./form.js";
import {JobList, listFilters, onFiltersChange} from "./jobs.js";
import {describe} from "./labels.js";
import {QueuePanel} from "./queue.js";
import * as session from "./session.js";
import {isTerminal, Streams} from "./streams.js";

class Console {
  constructor(config) {
    this.config = config;
    this.api = null;
    this.streams = null;
    this.queue = null;
    this.after = null;
    this.jobs = new JobList({
      onOpen: (job) => this.detail.open(job),
      onCancel: (job) => this.cancel(job),
      onTemplate: (job) => this.useTemplate(job),
    });
    this.detail = new Detail({
      api: {links: (id) => this.api.links(id)},
      onAgain: (job) => this.again(job),
      onCancel: (job) => this.cancel(job),
      onDelete: (job) => this.remove(job),
    });
    this.form = new SubmitForm({
      schema: config.submission,
      imageLimits: config.image,
      starting: config.form,
      onSubmit: (data) => this.submit(data),
    });
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn($("signin-key").value.trim());
    });
    $("signin-submit").disabled = false;  // the form is handled here from now on (index.html)
    $("signout").addEventListener("click", () => this.signOut());
    $("refresh").addEventListener("click", () => this.load());
    $("more").addEventListener("click", () => this.load(this.after));
    onFiltersChange(() => this.api && this.load());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.api) this.load();
    });
  }

  async start() {
    const saved = session.credential();
    if (saved) await this.signIn(saved);
    else this.showSignIn();
  }

  showSignIn(message = "") {
    show($("app"), false);
    show($("signout"), false);
    show($("signin"), true);
    say($("signin-error"), message);
    $("signin-key").focus();
  }

  // A credential is accepted when the API answers a call made with it.
  async signIn(credential) {
    say($("signin-error"), "");
    if (!credential) return this.showSignIn("Paste an API key or a token first.");
    const api = new Api(credential, (error) => this.expired(error));
    let models;
    try {
      await api.queue();
      ({body: models} = await api.json("/v1/models"));
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      session.forget();
      const text = error.status === 401 ? `That key or token was not accepted: ${error.message}.`
        : `Cannot sign in now: ${describe(error)}`;
      $("signin-key").setAttribute("aria-invalid", "true");
      return this.showSignIn(text);
    }
    session.remember(credential);
    $("signin-key").value = "";
    $("signin-key").removeAttribute("aria-invalid");
    this.api = api;
    this.form.useModel(models.data.find((model) => model.default) ?? models.data[0]);
    this.streams = new Streams(api, (job) => this.changed(job), (id, error) => this.streamFailed(id, error));
    this.queue = new QueuePanel(api, (estimate) => this.jobs.setEstimate(estimate));
    show($("signin"), false);
    show($("app"), true);
    show($("signout"), true);
    this.queue.start();
    await this.load();
    $("prompt").focus();
  }

  signOut(message = "") {
    this.streams?.stopAll();
    this.queue?.stop();
    this.api = null;
    session.forget();
    if ($("detail").open) $("detail").close();
    this.jobs.clear();
    this.showSignIn(message);
  }

  expired(error) {
    if (this.api) this.signOut(`Signed out: the API no longer accepts this key or token (${error.message}).`);
  }

  // The first page (after = null) replaces the list; "Show older" appends the next page.
  async load(after = null) {
    try {
      const page = await this.api.list(after, listFilters());
      if (after === null) this.jobs.clear();
      say($("jobs-error"), "");
      for (const job of page.data) {
        this.jobs.put(job);
        if (!isTerminal(job)) this.streams.follow(job.id);
      }
      this.jobs.empty();
      this.after = page.has_more ? page.last_id : null;
      show($("more"), this.after !== null);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) say($("jobs-error"), `The list cannot be loaded: ${describe(error)}`);
    }
  }

  changed(job) {
    const before = this.jobs.job(job.id);
    if (before !== null && (before.status !== job.status || before.degraded !== job.degraded)) this.announce(job);
    this.jobs.put(job, {atTop: true});
    this.detail.update(job);
    if (isTerminal(job)) this.queue.refresh();
  }

  streamFailed(id, error) {
    if (error.status !== 401) say($("jobs-error"), `Updates for a job stopped: ${describe(error)}`);
  }

  // One sentence per status change ("a red sneaker…: completed"), read out by the status region.
  announce(job) {
    const prompt = job.prompt ?? "Your video";
    const name = prompt.length > 60 ? `${prompt.slice(0, 60)}…` : prompt;
    const cancelled = job.status === "failed" && job.error?.code === "cancelled";
    const status = cancelled ? "cancelled" : job.status.replace("_", " ");
    $("announcer").textContent = `${name}: ${status}${job.degraded ? " (template video)" : ""}`;
  }

  async submit(data) {
    const {job, trace} = await this.api.submit(data);
    session.rememberTrace(job.id, trace);
    this.accepted(job);
  }

  accepted(job) {
    this.announce(job);
    this.jobs.put(job, {atTop: true});
    this.jobs.highlight(job.id);
    this.streams.follow(job.id);
    this.queue.refresh();
  }

  // The same model and parameters (the photo included: it is already in the tenant's folder) with another seed.
  async again(job) {
    const body = {...job.request, model: job.model};
    delete body.deadline;  // it may have passed
    // Its fallback choice as the API recorded it; a job from before that record allowed a template video if degraded.
    const fallback = job.fallback ?? (job.degraded ? "template" : null);
    if (fallback) body.fallback = fallback;
    const seeds = new Uint32Array(1);
    do crypto.getRandomValues(seeds); while (seeds[0] === body.seed);
    body.seed = seeds[0];
    try {
      const {job: next, trace} = await this.api.submit(body);
      session.rememberTrace(next.id, trace);
      $("detail").close();
      this.accepted(next);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.detail.message(`Not accepted: ${describe(error)}`);
    }
  }

  // A job waiting for a worker while the GPU pool is down: the same request with a template video allowed (the API
  // routes it to the template pool when the tenant's settings let it), then the waiting one cancelled.
  async useTemplate(job) {
    const body = {...job.request, model: job.model, fallback: "template"};
    delete body.deadline;
    try {
      const {job: next, trace} = await this.api.submit(body);
      session.rememberTrace(next.id, trace);
      this.accepted(next);
      await this.cancel(job);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      say($("jobs-error"), `Not accepted: ${error.describe()}`);
    }
  }

  async cancel(job) {
    try {
      const answer = await this.api.cancel(job.id);
      this.jobs.put({...answer, cancel_requested_at: answer.cancel_requested_at ?? Math.floor(Date.now() / 1000)});
      this.detail.update(this.jobs.job(job.id));
      this.queue.refresh();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      say($("jobs-error"), `The job was not cancelled: ${describe(error)}`);
    }
  }

  // Delete the job (its video too, unless another of the tenant's jobs shows it): it leaves the list.
  async remove(job) {
    try {
      await this.api.remove(job.id);
      this.jobs.remove(job.id);
      if ($("detail").open) $("detail").close();
      this.queue.refresh();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      this.detail.message(`The job was not deleted: ${describe(error)}`);
    }
  }
}

async function main() {
  let config;
  try {
    const [limits, openapi] = await Promise.all([fetchJson("/console/config.json"), fetchJson("/openapi.json")]);
    config = {image: limits.image, form: limits.form ?? {}, submission: openapi.components.schemas.VideoSubmission};
  } catch (error) {
    say($("signin-error"), `The console cannot start: ${error.message}`);
    return;
  }
  await new Console(config).start();
}

main();
