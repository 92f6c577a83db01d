// The cloud's JSON API as the pages call it.
//
// The session cookie goes along by itself (same origin). Unsafe requests (POST, PUT, PATCH,
// DELETE) carry the session's CSRF token in X-CSRF-Token: the page got it in
// <meta name="csrf-token"> when it was rendered, or from the login answer. A 401 means the
// session has ended: the browser goes to the login page and comes back here afterwards.
// Errors are thrown as ApiError with the API's code, message and per-field reasons.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || null;

export class ApiError extends Error {
  constructor(status, code, message, fields = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

/** Use this token from now on (the login answer carries a new one). */
export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** The login page, coming back to where we are. */
export function loginUrl() {
  const here = location.pathname + location.search + location.hash;
  return `/login?next=${encodeURIComponent(here)}`;
}

/**
 * Call the API. `json` is sent as a JSON body, `body` as it is (FormData, Blob).
 * `login: false` keeps a 401 as an error instead of going to the login page (the login
 * form itself). Resolves to the parsed JSON (or text), null for 204.
 */
export async function api(path, { method = "GET", json, body, login = true } = {}) {
  let response = await send(path, method, json, body);
  if (response.status === 403 && UNSAFE.has(method) && (await isCsrfRefusal(response))) {
    await refreshCsrfToken(); // the session changed in another tab: take its token, once
    response = await send(path, method, json, body);
  }
  if (response.status === 401 && login) {
    location.assign(loginUrl());
    throw new ApiError(401, "unauthenticated", "Your session has ended: log in again.");
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || `http-${response.status}`,
      error.message || `${method} ${path} answered ${response.status}`,
      error.fields || {},
    );
  }
  return data;
}

async function send(path, method, json, body) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  try {
    return await fetch(path, {
      method,
      headers,
      body,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "network", `The cloud did not answer (${error.message}). Try again.`);
  }
}

async function isCsrfRefusal(response) {
  try {
    const data = await response.clone().json();
    return data?.error?.code === "csrf";
  } catch {
    return false;
  }
}

async function refreshCsrfToken() {
  const response = await send("/api/me", "GET");
  if (response.ok) setCsrfToken((await response.json()).csrf_token);
}
