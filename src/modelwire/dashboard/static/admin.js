import { apiFetch, authEvents } from "./auth.js";
// The models panel's admin actions (docs/admin.md): make a version the default, load or unload it, roll back.
//
// Shown only to a credential that may manage models: the panel asks GET /v1/admin/models, and stays hidden
// on 401/403 (a server with authentication on and a credential without `models:admin`). The server decides
// every action again (the admin façade checks the scope); the page only offers them. After each action the
// models table is refreshed (window.modelwire.refreshModels); the live feed's `models` events do the rest:
// a change made elsewhere (the CLI, the API, a rollout, the memory budget) updates the versions and the
// status line too, a burst of events read once. A failed action's message stays until the next action.

const { refreshModels, feed } = window.modelwire;
const panel = document.querySelector('[data-testid="models-admin"]');
const modelSelect = panel.querySelector('[data-testid="admin-model"]');
const versionSelect = panel.querySelector('[data-testid="admin-version"]');
const status = panel.querySelector('[data-testid="admin-status"]');

function option(value, label) {
  const node = document.createElement("option");
  node.value = value;
  node.textContent = label;
  return node;
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  if (!response.ok) throw new Error(body?.error?.message ?? `${response.status} ${response.statusText}`);
  return body;
}

function describe(state) {
  const versions = state.versions.map((v) => `v${v.version} ${v.state}`).join(", ");
  return `${state.name}: default v${state.default_version} (${versions})`;
}

async function showVersions() {
  const name = modelSelect.value;
  if (!name) return;
  const state = await answer(await apiFetch(`/v1/admin/models/${encodeURIComponent(name)}`));
  const chosen = versionSelect.value;
  versionSelect.replaceChildren(...state.versions.map((v) => option(v.version, `v${v.version} (${v.state})`)));
  if (state.versions.some((v) => v.version === chosen)) versionSelect.value = chosen;
  status.textContent = describe(state);
}

async function probe() {
  try {
    const response = await apiFetch("/v1/admin/models");
    if (!response.ok) {
      panel.hidden = true;
      return;
    }
    const body = await response.json();
    const names = [...new Set(body.models.map((m) => m.name))].sort();
    const chosen = modelSelect.value || (names.includes("sentiment") ? "sentiment" : names[0]);
    modelSelect.replaceChildren(...names.map((name) => option(name, name)));
    if (chosen) modelSelect.value = chosen;
    panel.hidden = false;
    await showVersions();
  } catch {
    panel.hidden = true; /* the server is away: the live feed reports that */
  }
}

const ACTIONS = {
  default: (name, version) => ["PUT", `/v1/admin/models/${name}/default`, { version }],
  load: (name, version) => ["POST", `/v1/admin/models/${name}/versions/${version}/load`, null],
  unload: (name, version) => ["POST", `/v1/admin/models/${name}/versions/${version}/unload`, null],
  rollback: (name) => ["POST", `/v1/admin/models/${name}/rollback`, null],
};

panel.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const name = encodeURIComponent(modelSelect.value);
  const version = encodeURIComponent(versionSelect.value);
  const [method, url, body] = ACTIONS[button.dataset.action](name, version);
  const options = { method };
  if (body) Object.assign(options, { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
  button.disabled = true;
  status.classList.remove("error");
  try {
    const state = await answer(await apiFetch(url, options));
    status.textContent = describe(state);
    await refreshModels();
    await showVersions();
  } catch (error) {
    status.textContent = error.message;
    status.classList.add("error");
  } finally {
    button.disabled = false;
  }
});

let pending = null; // one read for a burst of events
function showSoon() {
  if (pending !== null || panel.hidden) return;
  pending = setTimeout(() => {
    pending = null;
    if (!status.classList.contains("error")) showVersions().catch(() => {});
  }, 100);
}

feed.addEventListener("event", (e) => {
  if (e.detail.topic === "models" || e.detail.type === "reset") showSoon();
});
modelSelect.addEventListener("change", () => showVersions().catch(() => {}));
authEvents.addEventListener("changed", probe);
probe();
