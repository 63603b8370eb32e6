// Credentials for a server started with authentication on (`--auth on`, or any non-loopback address).
//
// The page works without any when authentication is off. When a call answers 401 the header shows a field
// for an API key or JWT; it is kept in this tab's sessionStorage only (never in a cookie or localStorage)
// and sent as `Authorization: Bearer …` on every fetch. A browser cannot set headers on a WebSocket, so
// before opening one the page asks `POST /v1/auth/ws-token` for a short-lived token and offers it as a
// `Sec-WebSocket-Protocol` entry (the server never echoes it back). EventSource cannot send headers either:
// with a credential set, the live feed stays on WebSocket.

const STORAGE_KEY = "modelwire.credential";

export const authEvents = new EventTarget();

export function credential() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return "";
  }
}

export function setCredential(value) {
  try {
    if (value) sessionStorage.setItem(STORAGE_KEY, value);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    /* storage disabled: the credential lives until the page reloads */
  }
  memory = value;
  authEvents.dispatchEvent(new CustomEvent("changed", { detail: Boolean(value) }));
}

let memory = "";

function current() {
  return credential() || memory;
}

// fetch() with the credential; a 401 asks the person for one (403: the credential lacks a scope).
export async function apiFetch(url, options = {}) {
  const headers = new Headers(options.headers || {});
  const value = current();
  if (value) headers.set("Authorization", `Bearer ${value}`);
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401) authEvents.dispatchEvent(new CustomEvent("needed", { detail: url }));
  return response;
}

// The Sec-WebSocket-Protocol entries to offer: the real subprotocol, plus a handshake token when needed.
export async function wsProtocols(subprotocol) {
  if (!current()) return [subprotocol];
  const response = await apiFetch("/v1/auth/ws-token", { method: "POST" });
  if (!response.ok) throw new Error(`no WebSocket token (${response.status})`);
  const body = await response.json();
  return [subprotocol, body.subprotocol];
}

export function hasCredential() {
  return Boolean(current());
}

// Whether this server wants credentials the page does not have. The job list needs a credential whenever
// authentication is on (401 without one; 403 only means the credential lacks `jobs:read`).
export async function probe() {
  try {
    const response = await apiFetch("/v1/jobs?limit=1");
    return response.status !== 401;
  } catch {
    return true; /* the server is away: the live feed reports that */
  }
}
