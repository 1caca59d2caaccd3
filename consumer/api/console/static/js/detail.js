// One job in a dialog: the player (through the API's content redirect, with a short-lived content link since a
// <video> cannot send the bearer header), the parameters, the timings and the ids.

import {$, pairs, say, show} from "./dom.js";
import {between, bytes, milliseconds, seconds, when} from "./format.js";
import {errorText} from "./jobs.js";
import {traceOf} from "./session.js";
import {isTerminal} from "./streams.js";

const PARAMETERS = [
  ["prompt", "Prompt"], ["negative_prompt", "Negative prompt"], ["image_url", "Start image"],
  ["num_frames", "Frames"], ["fps", "Frames per second"], ["num_inference_steps", "Steps"],
  ["guidance_scale", "Guidance"], ["seed", "Seed"], ["fallback", "Template video allowed"],
  ["render_timeout_s", "Render timeout (s)"], ["deadline", "Deadline"],
];
// Why a job went to the template renderer (the API's degraded_reason codes).
const DEGRADED = {busy: "the GPUs were busy", pool_down: "no GPU worker was available"};

export class Detail {
  constructor({api, onAgain, onCancel, onDelete}) {
    this.api = api;
    this.dialog = $("detail");
    this.player = $("player");
    this.job = null;
    this.mediaFor = null;  // the job id whose links the player holds
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
    status.textContent = job.status;
    status.className = `status ${job.status}`;
    const degraded = $("detail-degraded");
    show(degraded, job.degraded === true);
    const reason = Object.hasOwn(DEGRADED, job.degraded_reason ?? "") ? DEGRADED[job.degraded_reason] : null;
    degraded.textContent = reason ? `template video: ${reason}` : "template video";
    say($("detail-error"), job.error ? errorText(job.error) : "");
    show($("again"), job.request !== null && job.request !== undefined);
    show($("detail-cancel"), !isTerminal(job) && !job.cancel_requested_at);

    const parameters = PARAMETERS.filter(([key]) => request[key] !== undefined && request[key] !== null)
      .map(([key, label]) => [label, String(request[key])]);
    const size = job.size ? job.size.replace("x", " × ") : "?";
    const duration = job.seconds ? `${job.seconds} s` : "?";
    parameters.splice(1, 0, ["Model", job.model], ["Size", size], ["Duration", duration]);
    if (request.metadata && Object.keys(request.metadata).length > 0) {
      parameters.push(["Metadata", JSON.stringify(request.metadata)]);
    }
    pairs($("detail-params"), parameters);

    const t = job.timings ?? {};
    const video = job.video;
    pairs($("detail-timings"), [
      ["Submitted", when(job.created_at)],
      ["Queued", between(t.received_at, t.render_started_at)],
      ["Render", milliseconds(t.render_ms)],
      ["Encode", milliseconds(t.encode_ms)],
      ["Upload", milliseconds(t.upload_ms)],
      ["Total", between(t.received_at, t.completed_at)],
      ...(video ? [["Video", `${video.width} × ${video.height}, ${video.num_frames} frames at ${video.fps} fps, `
        + `${seconds(video.duration_s)}, ${bytes(video.bytes)}${job.cache_hit ? " (from the cache)" : ""}`]] : []),
    ]);
    pairs($("detail-ids"), [
      ["Job id", job.id],
      ["Trace id", traceOf(job.id) ?? "not known here (only for jobs submitted from this tab)"],
      ["Updated", when(job.updated_at)],
      ["Expires", job.expires_at ? when(job.expires_at) : "–"],
    ]);

    const playable = job.status === "completed" && Boolean(video);
    show($("detail-media"), playable);
    if (playable && this.mediaFor !== job.id) this.load(job.id);
  }

  async load(id) {
    this.mediaFor = id;
    try {
      const links = await this.api.links(id);
      if (this.job?.id !== id || !this.dialog.open) return;
      this.player.poster = links.poster_url;
      this.player.src = links.video_url;
      this.player.autoplay = true;
      const download = $("download");
      download.href = links.video_url;
      download.download = `${id}.mp4`;
    } catch (error) {
      this.mediaFor = null;
      if (error.status === undefined) throw error;
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
    this.mediaFor = null;
    this.retried = false;
    this.message("");
  }
}
