// The page's connections to the server: one WebSocket (`/v1/ws`, shared by the live feed and the
// playground) and, when WebSocket cannot be had, Server-Sent Events (`/v1/events`) for the live feed.
//
// LiveFeed tries WebSocket first (or SSE first with ?via=sse in the page URL). If the socket cannot be
// opened, or closes before the server confirms a subscription, it falls back to SSE. A feed that was working
// reconnects with a growing delay after the server goes away; EventSource reconnects by itself and resumes
// with Last-Event-ID. Listeners receive every event in one shape: {topic, id, type, time, data}.

import { hasCredential, wsProtocols } from "./auth.js";

export const WS_SUBPROTOCOL = "modelwire.v1.json";
// EventSource only reports named events it has a listener for: every type the dashboard shows.
export const SSE_TYPES = [
  "metrics", "model.loaded", "model.unloaded", "server.ready", "server.stopping", "reset",
];

function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export class WsConnection extends EventTarget {
  constructor(path = "/v1/ws") {
    super();
    this.path = path;
    this.socket = null;
    this.pending = new Map();
    this.nextId = 1;
    this._opening = null;
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  // Resolves once open; rejects if the socket fails or closes first.
  connect() {
    if (this.open) return Promise.resolve(this);
    if (this._opening) return this._opening;
    this._opening = wsProtocols(WS_SUBPROTOCOL).then((protocols) => this._open(protocols));
    this._opening.catch(() => (this._opening = null));
    return this._opening;
  }

  _open(protocols) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(wsUrl(this.path), protocols);
      this.socket = socket;
      let opened = false;
      socket.addEventListener("open", () => {
        opened = true;
        this._opening = null;
        resolve(this);
      });
      socket.addEventListener("message", (e) => this._receive(e.data));
      socket.addEventListener("close", (e) => {
        this._opening = null;
        if (this.socket === socket) this.socket = null;
        const reason = `WebSocket closed (${e.code}${e.reason ? ": " + e.reason : ""})`;
        for (const { reject: fail } of this.pending.values()) fail(new Error(reason));
        this.pending.clear();
        if (!opened) reject(new Error(reason));
        this.dispatchEvent(new CustomEvent("close", { detail: { code: e.code, opened } }));
      });
    });
  }

  send(message) {
    this.socket.send(JSON.stringify(message));
  }

  // One request/reply by id: a prediction, or a subscribe answered by "subscribed".
  async request(message, timeoutMs = 30000) {
    await this.connect();
    const id = `d${this.nextId++}`;
    const key = message.op === "subscribe" ? `topic:${message.topic}` : id;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.pending.delete(key);
        reject(new Error("no answer in time"));
      }, timeoutMs);
      const waiter = {
        resolve: (v) => (clearTimeout(timer), this.pending.delete(id), this.pending.delete(key), resolve(v)),
        reject: (e) => (clearTimeout(timer), this.pending.delete(id), this.pending.delete(key), reject(e)),
      };
      this.pending.set(id, waiter);
      if (key !== id) this.pending.set(key, waiter);
      this.send({ ...message, id });
    });
  }

  _receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.op === "event") {
      const { topic, id, type, time, data } = message;
      this.dispatchEvent(new CustomEvent("event", { detail: { topic, id, type, time, data } }));
      return;
    }
    // A subscription is confirmed by id, or by topic should the server not echo the id.
    let key = message.id ?? null;
    if (!this.pending.has(key) && message.op === "subscribed") key = `topic:${message.topic}`;
    const waiter = this.pending.get(key);
    if (!waiter) return;
    this.pending.delete(key);
    if (message.op === "error") {
      const err = new Error(message.error?.message ?? "error");
      err.code = message.error?.code;
      waiter.reject(err);
    } else waiter.resolve(message);
  }

  close() {
    this.socket?.close(1000);
  }
}

export class LiveFeed extends EventTarget {
  constructor(ws, topics, { via = "ws" } = {}) {
    super();
    this.ws = ws;
    this.topics = topics;
    this.via = via;
    this.state = "connecting";
    this.source = null;
    this._delay = 500;
    this._onEvent = (e) => this._emit(e.detail);
    ws.addEventListener("event", this._onEvent);
    ws.addEventListener("close", () => {
      if (this.state === "ws") this._retry("ws");
    });
  }

  start() {
    if (this.via === "sse" || typeof WebSocket === "undefined") this._startSse();
    else this._startWs();
  }

  // Listen to one more topic (the jobs panel adds jobs/*); `types` are its SSE event names.
  addTopic(topic, types = []) {
    for (const type of types) if (!SSE_TYPES.includes(type)) SSE_TYPES.push(type);
    if (this.topics.includes(topic)) return;
    this.topics.push(topic);
    if (this.state === "ws") this.ws.request({ op: "subscribe", topic }, 10000).catch(() => {});
    else if (this.source) {
      this.source.close();
      this._startSse();
    }
  }

  _status(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: state }));
  }

  _emit(event) {
    this.dispatchEvent(new CustomEvent("event", { detail: event }));
  }

  async _startWs() {
    this._status("connecting");
    try {
      await this.ws.connect();
      await Promise.all(this.topics.map((topic) => this.ws.request({ op: "subscribe", topic }, 10000)));
    } catch {
      // EventSource cannot carry a credential: with one set, keep trying the WebSocket.
      if (hasCredential()) this._retry("ws");
      else this._startSse();
      return;
    }
    this._delay = 500;
    this._status("ws");
  }

  _startSse() {
    if (typeof EventSource === "undefined") return this._status("offline");
    this._status("connecting");
    const source = new EventSource(`/v1/events?topics=${this.topics.map(encodeURIComponent).join(",")}`);
    this.source = source;
    const handle = (e) => {
      try {
        this._emit(JSON.parse(e.data));
      } catch {
        /* a malformed event is skipped */
      }
    };
    for (const type of SSE_TYPES) source.addEventListener(type, handle);
    source.addEventListener("open", () => this._status("sse"));
    source.addEventListener("error", (e) => {
      if (e.data) {
        // The server dropped this stream (a slow reader): start a fresh one.
        source.close();
        this._retry("sse");
      } else if (source.readyState === EventSource.CLOSED) this._retry("sse");
      else this._status("connecting");
    });
  }

  _retry(via) {
    this._status("offline");
    const delay = this._delay;
    this._delay = Math.min(this._delay * 2, 10000);
    setTimeout(() => (via === "sse" ? this._startSse() : this._startWs()), delay);
  }
}
