// What the console remembers: only in this tab's sessionStorage (never localStorage, a cookie or a URL), gone when
// the tab closes or the person signs out.

const CREDENTIAL = "vidgen.credential";
const TRACES = "vidgen.traces";

export function credential() {
  return sessionStorage.getItem(CREDENTIAL);
}

export function remember(value) {
  sessionStorage.setItem(CREDENTIAL, value);
}

export function forget() {
  sessionStorage.removeItem(CREDENTIAL);
  sessionStorage.removeItem(TRACES);
}

function traces() {
  try {
    return JSON.parse(sessionStorage.getItem(TRACES) || "{}");
  } catch {
    return {};
  }
}

// The trace id the API named when this tab submitted the job (the job object does not carry one).
export function traceOf(jobId) {
  return traces()[jobId] || null;
}

export function rememberTrace(jobId, traceId) {
  if (!traceId) return;
  sessionStorage.setItem(TRACES, JSON.stringify({...traces(), [jobId]: traceId}));
}
