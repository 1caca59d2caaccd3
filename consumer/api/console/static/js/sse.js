// A server-sent events parser for a fetch() body (EventSource cannot send the Authorization header).
// Follows the HTML standard's rules: lines end in CR, LF or CRLF; a blank line dispatches; ":" starts a comment.

export function sseParser(onMessage) {
  let buffer = "";
  let data = [];
  let event = "";
  let id = null;

  function line(text) {
    if (text === "") {
      if (data.length > 0) onMessage({event: event || "message", data: data.join("\n"), id});
      data = [];
      event = "";
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const name = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") data.push(value);
    else if (name === "event") event = value;
    else if (name === "id" && !value.includes("\0")) id = value;
  }

  return function push(chunk) {
    buffer += chunk;
    // A CR at the very end may be the first half of a CRLF: keep it until the next chunk says.
    const held = buffer.endsWith("\r") ? "\r" : "";
    const parts = buffer.slice(0, buffer.length - held.length).split(/\r\n|\r|\n/);
    buffer = parts.pop() + held;  // an incomplete line waits for the next chunk
    for (const part of parts) line(part);
  };
}
