import { apiFetch, authEvents } from "./auth.js";
// The models panel's memory budget (docs/admin.md, "Memory budget"): the budget, what is used, and each
// version's measured size, last use and pin, with a pin/unpin action.
//
// Shown only to a credential that may manage models, on a server with a budget: GET /v1/admin/memory
// answers 401/403 to one without `models:admin`, and `budget_bytes: null` without a budget; the panel stays
// hidden then. It is read again on every `models` event the live feed brings (a load, an unload by the
// budget, a pin), a burst of them read once. Pin and unpin are PUT /v1/admin/models/{name}/pin; the server
// decides them again.

const { feed } = window.modelwire;
const panel = document.querySelector('[data-testid="models-memory"]');
const summary = panel.querySelector('[data-testid="memory-summary"]');
const meter = panel.querySelector('[data-testid="memory-meter"]');
const body = panel.querySelector('[data-testid="memory-table"] tbody');
const status = panel.querySelector('[data-testid="memory-status"]');

const MIB = 1 << 20;
const mib = (bytes) => `${(bytes / MIB).toFixed(1)} MiB`;

function cell(text, className) {
  const node = document.createElement("td");
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

function lastUsed(seconds) {
  return seconds == null ? "never" : new Date(seconds * 1000).toLocaleTimeString();
}

function row(m) {
  const tr = document.createElement("tr");
  tr.dataset.model = m.name;
  tr.dataset.version = m.version;
  const pin = document.createElement("button");
  pin.type = "button";
  pin.dataset.testid = "memory-pin";
  pin.dataset.name = m.name;
  pin.dataset.pinned = String(m.pinned);
  pin.textContent = m.pinned ? "Unpin" : "Pin";
  const pinCell = cell(m.pinned ? "pinned " : "", "memory-pinned");
  pinCell.append(pin);
  const state = m.unloaded_by_budget && m.state !== "ready" ? "unloaded by budget" : m.state;
  tr.append(
    cell(m.name, "model-name"),
    cell(`v${m.version}`),
    cell(state, `memory-state ${m.state}`),
    cell(m.size_bytes == null ? "not measured" : mib(m.size_bytes), "memory-size"),
    cell(lastUsed(m.last_used), "memory-last-used"),
    pinCell,
  );
  return tr;
}

async function refresh() {
  try {
    const response = await apiFetch("/v1/admin/memory");
    if (!response.ok) {
      panel.hidden = true;
      return;
    }
    const memory = await response.json();
    if (memory.budget_bytes == null) {
      panel.hidden = true; /* no budget: nothing is measured or unloaded */
      return;
    }
    summary.textContent = `Memory budget: ${mib(memory.used_bytes)} used of ${mib(memory.budget_bytes)}`;
    meter.max = memory.budget_bytes;
    meter.value = Math.min(memory.used_bytes, memory.budget_bytes);
    const sorted = [...memory.models].sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
    body.replaceChildren(...sorted.map(row));
    panel.hidden = false;
  } catch {
    panel.hidden = true; /* the server is away: the live feed reports that */
  }
}

let pending = null; // one read for a burst of events
function refreshSoon() {
  if (pending !== null) return;
  pending = setTimeout(() => {
    pending = null;
    refresh();
  }, 100);
}

panel.addEventListener("click", async (event) => {
  const button = event.target.closest('button[data-testid="memory-pin"]');
  if (!button) return;
  const pinned = button.dataset.pinned !== "true";
  button.disabled = true;
  status.classList.remove("error");
  try {
    const response = await apiFetch(`/v1/admin/models/${encodeURIComponent(button.dataset.name)}/pin`, {
      method: "PUT",
      body: JSON.stringify({ pinned }),
      headers: { "Content-Type": "application/json" },
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new Error(answer?.error?.message ?? `${response.status} ${response.statusText}`);
    status.textContent = `${button.dataset.name}: ${pinned ? "pinned (never unloaded by the memory budget)" : "unpinned"}`;
    await refresh();
  } catch (error) {
    status.textContent = error.message;
    status.classList.add("error");
    button.disabled = false;
  }
});

feed.addEventListener("event", (e) => {
  if (e.detail.topic === "models" || e.detail.type === "reset") refreshSoon();
});
authEvents.addEventListener("changed", refresh);
refresh();
