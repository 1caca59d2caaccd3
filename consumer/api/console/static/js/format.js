// Human-readable numbers. Pure.

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

export function between(start, end) {
  if (!start || !end) return "–";
  return seconds((Date.parse(end) - Date.parse(start)) / 1000);
}

// A moment the API gives in Unix seconds (the job's own times) or as ISO 8601 (the result's timings).
export function when(moment) {
  if (moment === null || moment === undefined) return "–";
  return new Date(typeof moment === "number" ? moment * 1000 : moment).toLocaleString();
}

export function wait(estimate) {
  if (estimate === null || estimate === undefined) return "unknown (no worker seen yet)";
  return estimate < 1 ? "none" : `about ${seconds(estimate)}`;
}
