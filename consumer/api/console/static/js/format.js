// Human-readable numbers, times and job states. Pure.

export function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(0)} KB`;
  return `${(count / (1024 * 1024)).toFixed(1)} MB`;
}

export function seconds(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 90) return `${value.toFixed(1)} s`;
  return `${Math.round(value / 60)} min`;
}

export function milliseconds(value) {
  return value === null || value === undefined ? "–" : seconds(value / 1000);
}

// Seconds between two moments, each Unix seconds (the job's own times) or ISO 8601 (the result's timings).
export function between(start, end) {
  if (!start || !end) return "–";
  return seconds((instant(end) - instant(start)) / 1000);
}

function instant(moment) {
  return typeof moment === "number" ? moment * 1000 : Date.parse(moment);
}

// A moment as the local time of day ("02:13").
export function clock(moment) {
  if (moment === null || moment === undefined) return "–";
  return new Date(instant(moment)).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

// A moment the API gives in Unix seconds (the job's own times) or as ISO 8601 (the result's timings).
export function when(moment) {
  if (moment === null || moment === undefined) return "–";
  return new Date(typeof moment === "number" ? moment * 1000 : moment).toLocaleString();
}

export function wait(estimate) {
  if (estimate === null || estimate === undefined) return "unknown (no worker active)";
  return estimate < 1 ? "none" : `about ${seconds(estimate)}`;
}

// Where a job is, in words (the API's `phase`): "queued, 3rd in line", "waiting for a worker", "denoising 4/12",
// "decoding", ..., "Cancelled by you at 02:13".
export function phaseText(job) {
  const phase = job.phase ?? job.status;
  if (phase === "cancelled") return `Cancelled by you at ${clock(job.cancel_requested_at ?? job.updated_at)}`;
  if (phase === "waiting_for_worker") return "waiting for a worker";
  if (phase === "queued") return job.queue_position ? `queued, ${ordinal(job.queue_position)} in line` : "queued";
  if (phase === "denoising" && job.step !== null && job.step !== undefined && job.total) {
    return `denoising ${job.step}/${job.total}`;
  }
  return phase.replaceAll("_", " ");
}

function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : {1: "st", 2: "nd", 3: "rd"}[n % 10] ?? "th";
  return `${n}${suffix}`;
}

// The status badge's word and style: a cancelled job is neither a failure nor red.
export function statusWord(job) {
  return job.phase === "cancelled" ? "cancelled" : job.status;
}
