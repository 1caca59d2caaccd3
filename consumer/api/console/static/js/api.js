// The job API as the console calls it: every call carries the bearer header; nothing puts the credential in a URL.

import {sseParser} from "./sse.js";

export class ApiError extends Error {
  constructor(status, code, message, field = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryAfter = retryAfter;
  }

  // What a person reads: the API's own message, the field at fault, and when to try again.
  describe() {
    const parts = [this.message];
    if (this.field) parts.push(`(field: ${this.field})`);
    if (this.retryAfter) parts.push(`Try again in ${this.retryAfter} s.`);
    return parts.join(" ");
  }
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = body && typeof body.error === "object" && body.error !== null ? body.error : {};
  return new ApiError(
    response.status,
    typeof error.code === "string" ? error.code : "http_" + response.status,
    typeof error.message === "string" ? error.message : `the API answered ${response.status}`,
    typeof error.field === "string" ? error.field : null,
    response.headers.get("Retry-After"),
  );
}

function unreachable() {
  return new ApiError(0, "unreachable", "the API cannot be reached; check the connection and try again");
}

export class Api {
  constructor(credential, onUnauthorized) {
    this.credential = credential;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}) {
    return {Authorization: `Bearer ${this.credential}`, ...extra};
  }

  async fetch(path, init = {}) {
    let response;
    try {
      response = await fetch(path, {...init, headers: this.headers(init.headers), credentials: "omit", cache: "no-store"});
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw unreachable();
    }
    if (!response.ok && response.status !== 204) {
      const error = await failure(response);
      if (error.status === 401 && this.onUnauthorized) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async json(path, init = {}) {
    const response = await this.fetch(path, init);
    return {body: await response.json(), headers: response.headers};
  }

  queue() {
    return this.json("/v1/queue").then(({body}) => body);
  }

  list(after = null) {
    const query = new URLSearchParams({limit: "20", order: "desc"});
    if (after) query.set("after", after);
    return this.json(`/v1/videos?${query}`).then(({body}) => body);
  }

  job(id) {
    return this.json(`/v1/videos/${encodeURIComponent(id)}`).then(({body}) => body);
  }

  // A FormData (fields and the photo) or a plain object (sent as JSON). Returns the job and its trace id, if named.
  async submit(data) {
    const init = data instanceof FormData
      ? {method: "POST", body: data}
      : {method: "POST", body: JSON.stringify(data), headers: {"Content-Type": "application/json"}};
    const {body, headers} = await this.json("/v1/videos", init);
    const trace = (headers.get("traceresponse") || "").split("-")[1] || null;
    return {job: body, trace};
  }

  cancel(id) {
    return this.json(`/v1/videos/${encodeURIComponent(id)}/cancel`, {method: "POST"}).then(({body}) => body);
  }

  // Forget the job and delete its video (the API keeps a video another job of the tenant shows).
  remove(id) {
    return this.json(`/v1/videos/${encodeURIComponent(id)}`, {method: "DELETE"}).then(({body}) => body);
  }

  links(id) {
    return this.json(`/v1/videos/${encodeURIComponent(id)}/links`, {method: "POST"}).then(({body}) => body);
  }

  // Follow one job's event stream until it ends. Calls onJob(job, version) per change; returns the last version seen.
  async events(id, {lastEventId = null, signal, onJob}) {
    const headers = {Accept: "text/event-stream"};
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const response = await this.fetch(`/v1/videos/${encodeURIComponent(id)}/events`, {headers, signal});
    let version = lastEventId;
    if (response.status === 204 || response.body === null) return version;  // nothing new: it had ended
    const push = sseParser((message) => {
      if (message.event !== "status") return;
      version = message.id;
      onJob(JSON.parse(message.data), message.id);
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return version;
      push(value);
    }
  }
}

export async function fetchJson(path) {
  let response;
  try {
    response = await fetch(path, {credentials: "omit"});
  } catch {
    throw unreachable();
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}
