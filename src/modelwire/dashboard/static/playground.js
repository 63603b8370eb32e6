import { apiFetch } from "./auth.js";
// The playground's three ways to ask for one prediction. Each resolves to the model's output object
// (e.g. {sentiment, confidence}) or rejects with an Error carrying the server's error code.
//
//   REST       POST /v1/models/{name}/predict               {"text": ...}
//   WebSocket  {"op": "predict", "model": name, "text": ...} on the shared /v1/ws socket
//   SSE        POST /v1/models/{name}/predict/stream        {"texts": [...]}, read as a stream with fetch

function modelPath(model) {
  return `/v1/models/${encodeURIComponent(model)}`;
}

async function failure(response) {
  let error = { code: `HTTP_${response.status}`, message: response.statusText || "request failed" };
  try {
    const body = await response.json();
    if (body && typeof body.error === "object") error = body.error;
  } catch {
    /* not JSON: keep the status */
  }
  const err = new Error(error.message);
  err.code = error.code;
  return err;
}

export async function predictRest(model, text) {
  const response = await apiFetch(`${modelPath(model)}/predict`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function predictWs(ws, model, text) {
  const reply = await ws.request({ op: "predict", model, text });
  const { id, ...output } = reply;
  return output;
}

// Incremental text/event-stream parser: feed() chunks, get back complete {event, data, id} frames.
export class SseParser {
  constructor() {
    this.buffer = "";
  }

  feed(chunk) {
    this.buffer += chunk.replace(/\r\n?/g, "\n");
    const frames = [];
    let end;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const frame = { event: "message", data: [], id: null };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") frame.data.push(value);
        else if (field === "event") frame.event = value;
        else if (field === "id") frame.id = value;
      }
      if (frame.data.length) frames.push({ ...frame, data: frame.data.join("\n") });
    }
    return frames;
  }
}

export async function predictSse(model, text) {
  const response = await apiFetch(`${modelPath(model)}/predict/stream`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ texts: [text] }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new SseParser();
  let result = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const frame of parser.feed(value)) {
        const data = JSON.parse(frame.data);
        if (frame.event === "prediction") {
          const { index, ...output } = data;
          result = output;
        } else if (frame.event === "error") {
          const err = new Error(data.error?.message ?? data.message ?? "error");
          err.code = data.error?.code ?? data.code;
          throw err;
        } else if (frame.event === "done") {
          if (result === null) throw new Error("the stream ended without a prediction");
          return result;
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  throw new Error("the stream ended before its done event");
}
