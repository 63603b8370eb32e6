// The dashboard page: live metrics, models and events from LiveFeed, and the playground.
//
// State lives in a few plain objects and is re-rendered from them; nothing here talks to the network
// except through live.js and playground.js. Other features extend the page through window.modelwire:
// `feed` (add a topic, listen for events) and `panels.jobs` (the reserved, hidden jobs panel).

import { TimeChart, formatNumber } from "./charts.js";
import { LiveFeed, WsConnection } from "./live.js";
import { predictRest, predictSse, predictWs } from "./playground.js";
import { apiFetch, authEvents, probe, setCredential } from "./auth.js";

const PROTOCOLS = [
  { key: "rest", label: "REST" },
  { key: "grpc", label: "gRPC" },
  { key: "ws", label: "WebSocket" },
  { key: "sse", label: "SSE" },
];
const LABELS = Object.fromEntries(PROTOCOLS.map((p) => [p.key, p.label]));
const STATUS_TEXT = {
  ws: "live over WebSocket",
  sse: "live over SSE",
  connecting: "connecting…",
  offline: "offline, retrying…",
  signin: "sign in to go live",
};
const MAX_EVENTS = 50;
const MAX_HISTORY = 8;

const $ = (selector, root = document) => root.querySelector(selector);
const byTestId = (id, root = document) => $(`[data-testid="${id}"]`, root);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const ms = (value) => formatNumber(value, "ms");

// ---- live metrics ------------------------------------------------------------------------------------

const throughput = new TimeChart(
  byTestId("chart-throughput"),
  PROTOCOLS.map((p) => ({ key: p.key, label: p.label, color: `--c-${p.key}`, fill: true })),
  { unit: "req/s", label: "Requests per second by protocol", capacity: 120 },
);

const tiles = new Map();
for (const { key, label } of PROTOCOLS) {
  const node = $("#protocol-tile").content.firstElementChild.cloneNode(true);
  node.dataset.testid = `tile-${key}`;
  node.setAttribute("aria-label", `${label} traffic`);
  $(".swatch", node).classList.add(key);
  $(".tile-name", node).textContent = label;
  const rps = $("canvas.rps", node);
  const latency = $("canvas.latency", node);
  rps.dataset.testid = `chart-${key}-rps`;
  latency.dataset.testid = `chart-${key}-latency`;
  byTestId("protocols").append(node);
  tiles.set(key, {
    node,
    rps: new TimeChart(rps, [{ key: "rps", label: "req/s", color: `--c-${key}`, fill: true }], {
      unit: "req/s",
      label: `${label} requests per second`,
    }),
    latency: new TimeChart(
      latency,
      [
        { key: "p50", label: "p50", color: "--c-p50" },
        { key: "p99", label: "p99", color: "--c-p99" },
      ],
      { unit: "ms", label: `${label} latency` },
    ),
  });
}

let metricsEvents = 0;

function onMetrics(data) {
  metricsEvents += 1;
  document.body.dataset.metricsEvents = String(metricsEvents);
  const protocols = data.protocols ?? {};
  const sample = {};
  let total = 0;
  let worst = null;
  let connections = 0;
  for (const [key, stats] of Object.entries(protocols)) {
    total += stats.requests_per_s ?? 0;
    connections += stats.connections ?? 0;
    if (typeof stats.p99_ms === "number") worst = Math.max(worst ?? 0, stats.p99_ms);
    sample[key] = stats.requests_per_s ?? 0;
  }
  throughput.push(sample);
  for (const [key, tile] of tiles) {
    const stats = protocols[key] ?? {};
    tile.rps.push({ rps: stats.requests_per_s ?? 0 });
    tile.latency.push({ p50: stats.p50_ms, p99: stats.p99_ms });
    $(".tile-rps", tile.node).textContent = formatNumber(stats.requests_per_s ?? 0);
    $(".tile-p50", tile.node).textContent = ms(stats.p50_ms);
    $(".tile-p99", tile.node).textContent = ms(stats.p99_ms);
    $(".tile-errors", tile.node).textContent = formatNumber(stats.errors_per_s ?? 0);
    $(".tile-conns", tile.node).textContent = `${stats.connections ?? 0} open`;
  }
  byTestId("kpi-rps").textContent = formatNumber(total);
  byTestId("kpi-p99").textContent = ms(worst);
  byTestId("kpi-inflight").textContent = formatNumber(data.inflight ?? null);
  byTestId("kpi-connections").textContent = formatNumber(connections);
  byTestId("kpi-subscribers").textContent = formatNumber(data.subscribers ?? null);
  if (Array.isArray(data.models)) reconcileModels(data.models);
  if (Array.isArray(data.queues)) renderConsumers(data.queues);
  if (Array.isArray(data.features)) renderFeatureViews(data.features);
}

// ---- feature views -----------------------------------------------------------------------------------

// One row per feature view of the metrics snapshot's `features`: how old the newest event written here is,
// against the view's TTL (past it: stale), and how many rows were applied.
function renderFeatureViews(views) {
  const panel = byTestId("features-panel");
  panel.hidden = views.length === 0;
  const body = $("tbody", byTestId("features-table"));
  body.replaceChildren(
    ...views.map((v) =>
      el(
        "tr",
        { "data-view": v.name, class: v.stale ? "stale" : "" },
        el("td", { class: "view-name" }, v.name),
        el("td", { "data-field": "age" }, v.newest_event_age_s == null ? "no event yet" : `${formatNumber(v.newest_event_age_s)} s`),
        el("td", { "data-field": "ttl" }, `${v.ttl_s} s`),
        el("td", { "data-field": "applied" }, String(v.applied ?? 0)),
      ),
    ),
  );
}

// ---- queue consumers ---------------------------------------------------------------------------------

// One row per consumer of the metrics snapshot's `queues`: its rate over the last window, the messages it
// holds unacknowledged, and its counts since the server started.
function renderConsumers(queues) {
  const panel = byTestId("consumers-panel");
  panel.hidden = queues.length === 0;
  const body = $("tbody", byTestId("consumers-table"));
  body.replaceChildren(
    ...queues.map((q) =>
      el(
        "tr",
        { "data-consumer": `${q.broker}:${q.name}` },
        el("td", { class: "consumer-name" }, q.name),
        el("td", {}, q.broker),
        el("td", { "data-field": "messages_per_s" }, formatNumber(q.messages_per_s ?? 0)),
        el("td", { "data-field": "in_flight" }, String(q.in_flight ?? 0)),
        el("td", { "data-field": "redelivered" }, String(q.redelivered ?? 0)),
        el("td", { "data-field": "dead_lettered" }, String(q.dead_lettered ?? 0)),
      ),
    ),
  );
}

// ---- models ------------------------------------------------------------------------------------------

const models = new Map(); // name -> {platform, defaultVersion, versions: Map(version -> ready)}
let renderedModels = "";

async function loadModels() {
  try {
    const response = await apiFetch("/v1/models");
    if (!response.ok) return;
    const body = await response.json();
    models.clear();
    for (const m of body.models ?? []) {
      models.set(m.name, {
        platform: m.platform ?? "",
        defaultVersion: m.default_version,
        versions: new Map((m.versions ?? []).map((v) => [String(v.version), Boolean(v.ready)])),
      });
    }
    renderModels();
  } catch {
    /* the live feed retries; the next metrics snapshot fills the table */
  }
}

function modelEntry(name) {
  if (!models.has(name)) models.set(name, { platform: "", defaultVersion: null, versions: new Map() });
  return models.get(name);
}

function onModelEvent(event) {
  const { name, version, ready } = event.data ?? {};
  if (!name) return;
  if (["model.unloaded", "model.deleted", "model.removed"].includes(event.type)) {
    const entry = models.get(name);
    entry?.versions.delete(String(version));
    if (entry && entry.versions.size === 0) models.delete(name);
  } else if (["model.default_changed", "model.rolled_back"].includes(event.type)) {
    modelEntry(name).defaultVersion = String(version);
  } else if (event.type === "model.promoted") {
    modelEntry(name).defaultVersion = String(version);
  } else if (["model.loaded", "model.registered"].includes(event.type)) {
    modelEntry(name).versions.set(String(version), ready !== false);
  }
  renderModels();
}

// The metrics snapshot lists every loaded version: it corrects anything an event missed.
function reconcileModels(loaded) {
  const seen = new Map();
  for (const { name, version, ready } of loaded) {
    if (!seen.has(name)) seen.set(name, new Map());
    seen.get(name).set(String(version), Boolean(ready));
  }
  for (const name of [...models.keys()]) if (!seen.has(name)) models.delete(name);
  for (const [name, versions] of seen) modelEntry(name).versions = versions;
  renderModels();
}

function renderModels() {
  const snapshot = JSON.stringify([...models].map(([n, m]) => [n, m.platform, m.defaultVersion, [...m.versions]]));
  if (snapshot === renderedModels) return;
  renderedModels = snapshot;
  const body = $("tbody", byTestId("models-table"));
  body.replaceChildren();
  let ready = 0;
  for (const [name, model] of [...models].sort(([a], [b]) => a.localeCompare(b))) {
    const versions = el("td", { class: "model-versions" });
    for (const [version, isReady] of model.versions) {
      if (isReady) ready += 1;
      const classes = ["version", isReady ? "ready" : "", version === model.defaultVersion ? "default" : ""];
      versions.append(
        el("span", { class: classes.join(" ").trim(), title: isReady ? "ready" : "not ready" }, `v${version}`),
      );
    }
    body.append(
      el("tr", { "data-model": name }, el("td", { class: "model-name" }, name), versions, el("td", {}, model.platform)),
    );
  }
  byTestId("kpi-models").textContent = String(ready);
  const select = byTestId("playground-model");
  const chosen = select.value || (models.has("sentiment") ? "sentiment" : "");
  select.replaceChildren(...[...models.keys()].sort().map((name) => el("option", { value: name }, name)));
  if (models.has(chosen)) select.value = chosen;
}

// ---- event log ---------------------------------------------------------------------------------------

let eventsSeen = 0;

// One readable line per event: the fields a person looks for, never raw JSON (the title keeps it all).
function describeJob(data) {
  const parts = [`job ${String(data.id ?? "?").slice(0, 8)}`]; // as the jobs panel shows it; the title has all
  if (data.status) parts.push(data.status);
  const p = data.progress ?? {};
  if (p.stage) parts.push(`${p.stage} ${Math.round((p.fraction ?? 0) * 100)}%`);
  else if (p.total) parts.push(`${p.done ?? 0}/${p.total} rows`);
  else if (p.done) parts.push(`${p.done} rows`);
  if (p.errors) parts.push(`${p.errors} errors`);
  if (data.model) parts.push(data.version ? `${data.model} v${data.version}` : data.model);
  if (data.error?.message) parts.push(data.error.message);
  return parts.join(" · ");
}

function describe(type, data) {
  if (!data || typeof data !== "object") return String(data ?? "");
  if (type.startsWith("job.")) return describeJob(data);
  if (data.name !== undefined && data.version !== undefined) {
    return `${data.name} v${data.version}${data.ready === false ? " (not ready)" : ""}`;
  }
  if (type.startsWith("server.") && typeof data.ready === "boolean") return data.ready ? "ready" : "not ready";
  const scalar = (v) => v === null || ["string", "number", "boolean"].includes(typeof v);
  return Object.entries(data)
    .filter(([, v]) => scalar(v))
    .map(([k, v]) => `${k} ${v}`)
    .join(" · ");
}

function logEvent(event, received = true) {
  if (received) eventsSeen += 1;
  const log = byTestId("event-log");
  $(".empty", log)?.remove();
  const time = new Date((event.time ?? Date.now() / 1000) * 1000).toLocaleTimeString([], { hour12: false });
  const type = event.type ?? event.topic ?? "event";
  log.prepend(
    el(
      "li",
      { "data-type": event.type ?? "" },
      el("span", { class: "e-time" }, time),
      el("span", { class: "e-type" }, type),
      el("span", { class: "e-data", title: JSON.stringify(event.data ?? {}) }, describe(type, event.data)),
    ),
  );
  while (log.children.length > MAX_EVENTS) log.lastElementChild.remove();
  if (eventsSeen) byTestId("event-count").textContent = `${eventsSeen} received`;
}

// ---- playground --------------------------------------------------------------------------------------

const ws = new WsConnection("/v1/ws");
const form = byTestId("playground-form");
const result = byTestId("playground-result");

function showResult(protocol, text, output, rtt, error) {
  result.dataset.state = error ? "error" : "done";
  result.dataset.count = String(Number(result.dataset.count ?? 0) + 1);
  const sentiment = output?.sentiment ?? null;
  const confidence = typeof output?.confidence === "number" ? output.confidence : null;
  const badge = byTestId("result-sentiment");
  badge.textContent = error ? "error" : (sentiment ?? "—");
  badge.className = `sentiment ${sentiment ?? ""}`.trim();
  byTestId("result-confidence").textContent = confidence === null ? "–" : `${(confidence * 100).toFixed(1)}%`;
  $(".bar-fill", result).style.width = `${confidence === null ? 0 : Math.round(confidence * 100)}%`;
  byTestId("result-protocol").textContent = LABELS[protocol];
  byTestId("result-rtt").textContent = ms(rtt);
  const raw = byTestId("result-output");
  raw.hidden = error !== null || sentiment !== null;
  raw.textContent = output && sentiment === null ? JSON.stringify(output, null, 2) : "";
  const message = byTestId("result-error");
  message.hidden = error === null;
  message.textContent = error ? `${error.code ?? "ERROR"}: ${error.message}` : "";

  const history = byTestId("playground-history");
  history.prepend(
    el(
      "li",
      {},
      el("span", {}, LABELS[protocol]),
      el("span", { class: `h-sentiment ${sentiment ?? ""}` }, error ? "error" : (sentiment ?? "output")),
      el("span", {}, ms(rtt)),
      el("span", { class: "h-text", title: text }, text),
    ),
  );
  while (history.children.length > MAX_HISTORY) history.lastElementChild.remove();
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = byTestId("playground-text").value;
  const protocol = new FormData(form).get("protocol");
  const model = byTestId("playground-model").value || "sentiment";
  const button = byTestId("playground-submit");
  button.disabled = true;
  result.dataset.state = "pending";
  const started = performance.now();
  let output = null;
  let error = null;
  try {
    if (protocol === "ws") output = await predictWs(ws, model, text);
    else if (protocol === "sse") output = await predictSse(model, text);
    else output = await predictRest(model, text);
  } catch (err) {
    error = err;
  }
  showResult(protocol, text, output, performance.now() - started, error);
  button.disabled = false;
});

byTestId("playground-text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
});
for (const chip of document.querySelectorAll("[data-example]")) {
  chip.addEventListener("click", () => {
    byTestId("playground-text").value = chip.dataset.example;
    form.requestSubmit();
  });
}

// ---- wiring ------------------------------------------------------------------------------------------

const params = new URLSearchParams(location.search);
const feed = new LiveFeed(ws, ["metrics", "models", "server"], { via: params.get("via") === "sse" ? "sse" : "ws" });

// The badge: the feed's state, or, while the server waits for a credential the page lacks, a call to sign in.
function renderStatus() {
  const state = document.body.dataset.live ?? "connecting";
  const waiting = !byTestId("auth-form").hidden && state !== "ws" && state !== "sse";
  $(".status-text").textContent = waiting ? STATUS_TEXT.signin : (STATUS_TEXT[state] ?? state);
}

feed.addEventListener("status", (e) => {
  document.body.dataset.live = e.detail;
  renderStatus();
  // The page's own connection changes are logged too (not counted as received events).
  if (e.detail === "ws" || e.detail === "sse") {
    logEvent({ type: "connected", time: Date.now() / 1000, data: STATUS_TEXT[e.detail] }, false);
  }
});
feed.addEventListener("event", (e) => {
  const event = e.detail;
  if (event.topic === "metrics") onMetrics(event.data ?? {});
  else {
    if (event.topic === "models") onModelEvent(event);
    if (event.type === "reset") loadModels();
    logEvent(event);
  }
});

window
  .matchMedia("(prefers-color-scheme: dark)")
  .addEventListener("change", () => [throughput, ...[...tiles.values()].flatMap((t) => [t.rps, t.latency])].forEach((c) => c.draw()));

byTestId("event-log").append(el("li", { class: "empty" }, "No events yet."));

apiFetch("/v2")
  .then((r) => (r.ok ? r.json() : null))
  .then((meta) => {
    if (meta) byTestId("server-version").textContent = `${meta.name ?? "modelwire"} ${meta.version ?? ""}`.trim();
  })
  .catch(() => {});

window.modelwire = { feed, ws, panels: { jobs: $("#jobs-panel"), alerts: $("#alerts-panel") }, refreshModels: loadModels };
// ---- credentials (servers with authentication on) ---------------------------------------------------

const authForm = byTestId("auth-form");
function askForCredential(message = "") {
  authForm.hidden = false;
  renderStatus();
  byTestId("auth-error").textContent = message;
  byTestId("auth-credential").focus();
}
authEvents.addEventListener("needed", () => askForCredential());
authForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  setCredential(byTestId("auth-credential").value.trim());
  if (!(await probe())) return askForCredential("That credential was refused (401).");
  authForm.hidden = true;
  renderStatus();
  byTestId("auth-credential").value = "";
  if (started) {
    ws.close();
    loadModels();
  } else start();
  document.dispatchEvent(new CustomEvent("modelwire:credential"));
});

// The live feed starts once the page may open it (at once when authentication is off).
let started = false;
function start() {
  started = true;
  loadModels().then(() => feed.start());
}
probe().then((ok) => (ok ? start() : askForCredential()));
