import { apiFetch } from "./auth.js";
// The alerts panel: pending and firing alerts (monitoring/, docs/monitoring.md), live.
//
// It fills the panel app.js reserves (window.modelwire.panels.alerts): the list starts from GET /v1/alerts
// and follows the `alerts` topic on the page's live feed (alert.pending, alert.firing, alert.resolved are
// pushed by the server, never polled). A resolved alert leaves the list for the "recently resolved" line.

const ALERT_TYPES = ["alert.pending", "alert.firing", "alert.resolved"];

const { feed, panels } = window.modelwire;
const panel = panels.alerts;
const alerts = new Map(); // fingerprint -> alert event data
const rows = new Map(); // fingerprint -> <li>

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const list = el("ol", { class: "alerts-list", "data-testid": "alerts-list", "aria-label": "Active alerts" });
const empty = el("li", { class: "empty", "data-testid": "alerts-empty" }, "No alerts: every monitor is within its rule.");
const resolved = el("p", { class: "muted small", "data-testid": "alerts-resolved" });
list.append(empty);
panel.querySelector(".alerts-body").append(list, resolved);
panel.hidden = false;

function value(number) {
  return typeof number === "number" ? number.toPrecision(3) : "–";
}

function render(alert) {
  const row = rows.get(alert.fingerprint) ?? el("li", { class: "alert-row", "data-testid": "alert-row" });
  row.dataset.state = alert.state;
  row.dataset.name = alert.name;
  row.replaceChildren(
    el("span", { class: `badge ${alert.state} ${alert.severity}`, "data-testid": "alert-state" }, alert.state),
    el("span", { class: "alert-name", "data-testid": "alert-name" }, alert.name),
    el("span", { class: "muted small" }, `${alert.model} ${alert.version} · ${alert.monitor}`),
    el(
      "span",
      { class: "alert-value", "data-testid": "alert-value" },
      `${value(alert.value)} > ${value(alert.threshold)}`,
    ),
    el("time", { class: "muted small", datetime: alert.since, title: alert.since }, `since ${alert.since.slice(11, 19)}`),
  );
  if (alert.summary) row.title = alert.summary;
  if (alert.silenced) row.classList.add("silenced");
  if (!rows.has(alert.fingerprint)) {
    rows.set(alert.fingerprint, row);
    list.prepend(row);
  }
  empty.hidden = rows.size > 0;
}

function forget(alert) {
  rows.get(alert.fingerprint)?.remove();
  rows.delete(alert.fingerprint);
  alerts.delete(alert.fingerprint);
  empty.hidden = rows.size > 0;
  resolved.textContent = `Resolved ${alert.since.slice(11, 19)}: ${alert.name} (${alert.model} ${alert.version})`;
}

function onAlert(alert) {
  if (!alert || !alert.fingerprint) return;
  if (alert.state === "resolved") return forget(alert);
  alerts.set(alert.fingerprint, alert);
  render(alert);
}

async function loadAlerts() {
  const response = await apiFetch("/v1/alerts");
  if (!response.ok) return;
  const body = await response.json();
  for (const fingerprint of [...rows.keys()]) rows.get(fingerprint).remove();
  rows.clear();
  alerts.clear();
  for (const alert of body.alerts ?? []) onAlert(alert);
  empty.hidden = rows.size > 0;
  const last = (body.recent ?? [])[0];
  if (last) resolved.textContent = `Resolved ${last.since.slice(11, 19)}: ${last.name} (${last.model} ${last.version})`;
}

feed.addEventListener("event", (e) => {
  const event = e.detail;
  if (event.topic === "alerts") onAlert(event.data);
  else if (event.type === "reset") loadAlerts().catch(() => {});
});
feed.addTopic("alerts", ALERT_TYPES);
document.addEventListener("modelwire:credential", () => loadAlerts().catch(() => {}));
loadAlerts()
  .catch(() => {})
  .finally(() => (panel.dataset.ready = "true"));
