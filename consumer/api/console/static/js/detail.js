// One job in a dialog: the player (through the API's content redirect, with a short-lived content link since a
// <video> cannot send the bearer header), the start image as a thumbnail (the same links), the parameters, the
// timings (from when the job was submitted: its wait counts) and the ids.

import {$, pairs, say, show} from "./dom.js";
import {between, bytes, milliseconds, phaseText, seconds, statusWord, when} from "./format.js";
import {errorText} from "./jobs.js";
import {traceOf} from "./session.js";
import {isTerminal} from "./streams.js";

const PARAMETERS = [
  ["prompt", "Prompt"], ["negative_prompt", "Negative prompt"],
  ["num_frames", "Frames"], ["fps", "Frames per second"], ["num_inference_steps", "Steps"],
  ["guidance_scale", "Guidance"], ["seed", "Seed"],
  ["render_timeout_s", "Render timeout (s)"], ["deadline", "Deadline"],
];
// What the job may get when the GPUs are busy or down (its fallback choice, kept by "Render again").
const FALLBACK = {
  similar: "an earlier video of the same photo, else a template video",
  template: "a template video",
  none: "none: it waits for a GPU",
};
// Why a job went to the template renderer (the API's degraded_reason codes).
const DEGRADED = {busy: "the GPUs were busy", pool_down: "no GPU worker was available"};

export class Detail {
  constructor({api, onAgain, onCancel, onDelete}) {
    this.api = api;
    this.dialog = $("detail");
    this.player = $("player");
    this.job = null;
    this.mediaFor = null;  // the job id whose links the player holds
    this.imageFor = null;  // the job id whose start image the thumbnail shows
    this.retried = false;
    $("detail-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => this.unload());
    $("again").addEventListener("click", () => onAgain(this.job));
    $("detail-cancel").addEventListener("click", () => onCancel(this.job));
    $("detail-delete").addEventListener("click", () => onDelete(this.job));
    this.player.addEventListener("error", () => this.reloadOnce());
  }

  open(job) {
    this.unload();
    this.job = job;
    this.render();
    if (!this.dialog.open) this.dialog.showModal();
    $("detail-close").focus();
  }

  // A newer answer about a job: shown when it is the open one.
  update(job) {
    if (this.dialog.open && this.job?.id === job.id) {
      this.job = job;
      this.render();
    }
  }

  message(text) {
    $("detail-message").textContent = text;
  }

  render() {
    const job = this.job;
    const request = job.request ?? {};
    $("detail-title").textContent = job.prompt ?? job.id;
    const status = $("detail-status");
    const word = statusWord(job);
    status.textContent = word === "cancelled" ? phaseText(job) : isTerminal(job) ? word : `${word}: ${phaseText(job)}`;
    status.className = `status ${word}`;
    const degraded = $("detail-degraded");
    show(degraded, job.degraded === true);
    const reason = Object.hasOwn(DEGRADED, job.degraded_reason ?? "") ? DEGRADED[job.degraded_reason] : null;
    degraded.textContent = reason ? `template video: ${reason}` : "template video";
    say($("detail-error"), job.error && word !== "cancelled" ? errorText(job.error) : "");
    show($("again"), isTerminal(job) && job.request !== null && job.request !== undefined);  // a finished job only
    show($("detail-cancel"), !isTerminal(job) && !job.cancel_requested_at);

    const parameters = PARAMETERS.filter(([key]) => request[key] !== undefined && request[key] !== null)
      .map(([key, label]) => [label, String(request[key])]);
    const size = job.size ? job.size.replace("x", " × ") : "?";
    const duration = job.seconds ? `${job.seconds} s` : "?";
    parameters.splice(1, 0, ["Model", job.model], ["Size", size], ["Duration", duration]);
    if (Object.hasOwn(FALLBACK, job.fallback ?? "")) parameters.push(["If the GPUs are busy", FALLBACK[job.fallback]]);
    if (request.metadata && Object.keys(request.metadata).length > 0) {
      parameters.push(["Metadata", JSON.stringify(request.metadata)]);
    }
    pairs($("detail-params"), parameters);

    const t = job.timings ?? {};
    const video = job.video;
    pairs($("detail-timings"), [
      ["Submitted", when(job.created_at)],
      ["Queued", between(job.created_at, t.render_started_at)],
      ["Render", milliseconds(t.render_ms)],
      ["Encode", milliseconds(t.encode_ms)],
      ["Upload", milliseconds(t.upload_ms)],
      ["Total", between(job.created_at, t.completed_at)],
      ...(video ? [["Video", `${video.width} × ${video.height}, ${video.num_frames} frames at ${video.fps} fps, `
        + `${seconds(video.duration_s)}, ${bytes(video.bytes)}${job.cache_hit ? " (from the cache)" : ""}`]] : []),
    ]);
    const trace = traceOf(job.id);
    pairs($("detail-ids"), [
      ["Job id", job.id],
      ...(trace ? [["Trace id", trace]] : []),
      ["Updated", when(job.updated_at)],
      ["Expires", job.expires_at ? when(job.expires_at) : "–"],
    ]);

    const playable = job.status === "completed" && Boolean(video);
    show($("detail-media"), playable);
    if (playable && this.mediaFor !== job.id) this.load(job.id);
    if (request.image_url && !playable && this.imageFor !== job.id) this.load(job.id);
  }

  // The job's links: the start image's (any status), and the video's once it is completed.
  async load(id) {
    const completed = this.job.status === "completed";
    if (completed) this.mediaFor = id;
    this.imageFor = id;
    try {
      const links = await this.api.links(id);
      if (this.job?.id !== id || !this.dialog.open) return;
      const image = $("detail-start-image");
      if (links.start_image_url && !image.getAttribute("src")) image.src = links.start_image_url;
      show(image, Boolean(links.start_image_url));
      if (!completed) return;
      this.player.poster = links.poster_url;
      this.player.src = links.video_url;
      this.player.autoplay = true;
      // The API answers with the file as an attachment under a readable name (the SKU or prompt, and the id).
      $("download").href = links.video_url;
    } catch (error) {
      this.mediaFor = null;
      if (error.status === undefined) throw error;
      if (!completed) return;  // no start image in the tenant's folder (409): nothing to show, nothing wrong
      this.message(`The video cannot be loaded: ${error.describe()}`);
    }
  }

  // Links last a few minutes: a player left open past that gets fresh ones once.
  reloadOnce() {
    if (this.retried || this.mediaFor === null || !this.dialog.open) return;
    this.retried = true;
    this.load(this.mediaFor);
  }

  unload() {
    this.player.pause();
    this.player.removeAttribute("src");
    this.player.removeAttribute("poster");
    this.player.load();
    $("download").removeAttribute("href");
    $("detail-start-image").removeAttribute("src");
    show($("detail-start-image"), false);
    this.mediaFor = null;
    this.imageFor = null;
    this.retried = false;
    this.message("");
  }
}
