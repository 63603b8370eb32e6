import { apiFetch } from "./auth.js";
// The jobs panel: recent jobs with live status and progress bars, and a form to submit a small batch.
//
// It fills the panel app.js reserves (window.modelwire.panels.jobs) and follows every job over the page's
// live feed (topic jobs/*): job.queued, job.running, job.progress and the final states are pushed by the
// server, never polled. The list starts from GET /v1/jobs; each pushed event updates its row. A progress
// event carries only {id, status, progress}: it is merged into the job as last seen, and an event older
// than what the row shows is skipped (as jobs/watch.py does on the server).

const JOB_TYPES = ["job.queued", "job.running", "job.progress", "job.succeeded", "job.failed", "job.cancelled"];
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const MAX_JOBS = 20;

const { feed, panels } = window.modelwire;
const panel = panels.jobs;
const jobs = new Map(); // id -> job (as GET /v1/jobs/{id} shows it)
const rows = new Map(); // id -> <li>

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function failure(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "object") return body.error;
  } catch {
    /* not JSON */
  }
  return { code: `HTTP_${response.status}`, message: response.statusText || "request failed" };
}

// ---- the panel's markup --------------------------------------------------------------------------------

const form = el("form", { class: "jobs-form", "data-testid": "jobs-form" });
const textarea = el("textarea", {
  id: "jobs-texts",
  name: "texts",
  rows: "4",
  required: "",
  "data-testid": "jobs-texts",
  placeholder: "One text per line: each becomes one row of the job",
});
const modelSelect = el("select", { id: "jobs-model", name: "model", "data-testid": "jobs-model" });
const submitButton = el("button", { type: "submit", class: "primary", "data-testid": "jobs-submit" }, "Submit batch");
const formError = el("p", { class: "jobs-error", "data-testid": "jobs-error", role: "alert", hidden: "" });
form.append(
  el("label", { for: "jobs-texts", class: "field-label" }, "Batch"),
  textarea,
  el(
    "div",
    { class: "controls" },
    el("div", { class: "model-pick" }, el("label", { for: "jobs-model", class: "field-label" }, "Job model"), modelSelect),
    submitButton,
  ),
  formError,
);
const list = el("ol", { class: "jobs-list", "data-testid": "jobs-list", "aria-label": "Recent jobs" });
const empty = el("li", { class: "empty" }, "No jobs yet.");
list.append(empty);
panel.querySelector(".jobs-body").append(form, list);
panel.hidden = false;

// ---- rows ------------------------------------------------------------------------------------------------

function fraction(job) {
  const p = job.progress ?? {};
  if (typeof p.fraction === "number") return Math.max(0, Math.min(1, p.fraction));
  if (p.total) return Math.max(0, Math.min(1, (p.done ?? 0) / p.total));
  return job.status === "succeeded" ? 1 : 0;
}

function progressText(job) {
  const p = job.progress ?? {};
  if (p.stage) return `${p.stage} ${Math.round(fraction(job) * 100)}%`;
  const failed = p.errors ? ` · ${p.errors} failed` : "";
  return `${p.done ?? 0}/${p.total ?? 0}${failed}`;
}

function newRow(id) {
  const bar = el("div", {
    class: "job-progress",
    role: "progressbar",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": "0",
    "aria-label": `progress of job ${id}`,
    "data-testid": "job-progress",
  });
  bar.append(el("span", { class: "job-progress-fill" }));
  const cancel = el("button", { type: "button", class: "chip job-cancel", "data-testid": "job-cancel" }, "cancel");
  cancel.addEventListener("click", () => cancelJob(id));
  const row = el(
    "li",
    { class: "job", "data-job-id": id, "data-testid": "job-row", "data-events": "0" },
    el("span", { class: "job-id", title: id }, id.slice(0, 8)),
    el("span", { class: "job-model" }),
    el("span", { class: "job-status", "data-testid": "job-status" }),
    bar,
    el("span", { class: "job-count", "data-testid": "job-count" }),
    el("a", { class: "job-results", href: `/v1/jobs/${encodeURIComponent(id)}/results`, download: `${id}.ndjson` }, "results"),
    cancel,
  );
  return row;
}

function render(job) {
  let row = rows.get(job.id);
  if (!row) {
    row = newRow(job.id);
    rows.set(job.id, row);
    empty.remove();
    list.prepend(row);
    while (list.children.length > MAX_JOBS) {
      const last = list.lastElementChild;
      rows.delete(last.dataset.jobId);
      jobs.delete(last.dataset.jobId);
      last.remove();
    }
  }
  const percent = Math.round(fraction(job) * 100);
  row.dataset.status = job.status;
  row.querySelector(".job-model").textContent = job.model ?? "";
  const status = row.querySelector(".job-status");
  status.textContent = job.status;
  status.className = `job-status status-${job.status}`;
  status.title = job.error ? `${job.error.code}: ${job.error.message}` : "";
  const bar = row.querySelector(".job-progress");
  bar.setAttribute("aria-valuenow", String(percent));
  bar.querySelector(".job-progress-fill").style.width = `${percent}%`;
  row.querySelector(".job-count").textContent = progressText(job);
  const noResults = job.kind === "train" || (job.progress?.done ?? 0) === 0;
  row.querySelector(".job-results").style.visibility = noResults ? "hidden" : "";
  row.querySelector(".job-cancel").style.visibility = FINAL.has(job.status) ? "hidden" : "";
}

// The job after an event, or null when the event says nothing newer than what is shown.
function apply(current, type, data) {
  if (!current) return type === "job.progress" ? null : data;
  if (type === "job.progress") {
    const old = current.progress ?? {};
    if (current.status !== "running" || (data.progress?.done ?? 0) < (old.done ?? 0)) return null;
    return { ...current, progress: { ...old, ...data.progress } };
  }
  const stamp = data.updated_at ?? 0;
  const seen = current.updated_at ?? 0;
  if (stamp < seen || (stamp === seen && data.status === current.status)) return null;
  return { ...current, ...data }; // events leave out metadata and callback_url: keep what was shown
}

async function refresh(id) {
  const response = await apiFetch(`/v1/jobs/${encodeURIComponent(id)}`);
  if (response.ok) show(await response.json());
}

function show(job) {
  jobs.set(job.id, job);
  render(job);
}

function onJobEvent(event) {
  const data = event.data ?? {};
  if (!data.id) return;
  const updated = apply(jobs.get(data.id), event.type, data);
  if (updated) show(updated);
  else if (!jobs.has(data.id)) refresh(data.id).catch(() => {});
  const row = rows.get(data.id);
  if (row) row.dataset.events = String(Number(row.dataset.events) + 1);
}

// ---- actions ---------------------------------------------------------------------------------------------

async function cancelJob(id) {
  const response = await apiFetch(`/v1/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (response.ok) show(await response.json());
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const inputs = textarea.value.split("\n").map((line) => line.trim()).filter(Boolean);
  formError.hidden = true;
  submitButton.disabled = true;
  try {
    const response = await apiFetch("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: modelSelect.value || "sentiment", inputs, metadata: { from: "dashboard" } }),
    });
    if (!response.ok) {
      const error = await failure(response);
      formError.textContent = `${error.code}: ${error.message}`;
      formError.hidden = false;
      return;
    }
    const job = await response.json();
    if (!jobs.has(job.id)) show(job); // pushed events may have shown it already
    textarea.value = "";
  } finally {
    submitButton.disabled = false;
  }
});

// ---- start -----------------------------------------------------------------------------------------------

async function loadModels() {
  const response = await apiFetch("/v1/models");
  if (!response.ok) return;
  const names = ((await response.json()).models ?? []).map((m) => m.name).sort();
  modelSelect.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
  if (names.includes("sentiment")) modelSelect.value = "sentiment";
}

async function loadJobs() {
  const response = await apiFetch(`/v1/jobs?limit=${MAX_JOBS}`);
  if (!response.ok) return;
  const page = await response.json();
  for (const job of [...(page.jobs ?? [])].reverse()) if (!jobs.has(job.id)) show(job);
}

feed.addEventListener("event", (e) => {
  const event = e.detail;
  if (event.topic?.startsWith("jobs/")) onJobEvent(event);
  else if (event.type === "reset") loadJobs().catch(() => {});
});
feed.addTopic("jobs/*", JOB_TYPES);
document.addEventListener("modelwire:credential", () => {
  loadModels().catch(() => {});
  loadJobs().catch(() => {});
});
loadModels().catch(() => {});
loadJobs()
  .catch(() => {})
  .finally(() => (panel.dataset.ready = "true"));
