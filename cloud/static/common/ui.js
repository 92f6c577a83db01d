// Small DOM helpers shared by the pages: building elements, formatting figures, forms
// that show the API's field errors, and the confirmation and show-once dialogs.

export const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * An element: `attrs` are attributes, except `text` (its text), `class`, `dataset`
 * (data-* values) and `on` ({event: handler}); `children` are nodes or strings.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** An SVG element with attributes (and `text`, `class` as for `el`). */
export function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  node.append(...children);
  return node;
}

function setAttributes(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on")
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else node.setAttribute(key, value === true ? "" : value);
  }
}

/** Say something to screen-reader users (the page's polite live region). */
export function announce(message) {
  const region = $("announce");
  if (!region) return;
  region.textContent = "";
  requestAnimationFrame(() => {
    region.textContent = message;
  });
}

// -- figures ------------------------------------------------------------------------

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const DATE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const TIME = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

export const formatDateTime = (ms) =>
  ms === null || ms === undefined ? "–" : DATE_TIME.format(ms);
export const formatDate = (ms) => (ms === null || ms === undefined ? "–" : DATE.format(ms));
export const formatTime = (ms) => (ms === null || ms === undefined ? "–" : TIME.format(ms));

/** 3725000 -> "1:02:05", 65000 -> "1:05". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "–";
  const total = Math.round(Math.abs(ms) / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  const sign = ms < 0 ? "−" : "";
  return h ? `${sign}${h}:${String(m).padStart(2, "0")}:${s}` : `${sign}${m}:${s}`;
}

export function formatKm(metres, digits = 2) {
  return metres === null || metres === undefined ? "–" : `${(metres / 1000).toFixed(digits)} km`;
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  return value.toLocaleString(undefined, {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** How long ago a moment was, in words ("12 s ago", "3 min ago", "2 h ago"). */
export function formatAgo(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return formatDateTime(ms);
}

/** A moment as a datetime-local input's value (local time, to the minute). */
export function toLocalInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}`
  );
}

/** A datetime-local input's value (local time) as ISO 8601 with a zone, or null. */
export function fromLocalInput(value) {
  if (!value) return null;
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? null : moment.toISOString();
}

export const STATE_LABEL = {
  scheduled: "Scheduled",
  live: "Live",
  neutralised: "Neutralised",
  finished: "Finished",
  published: "Results published",
};

/** A race state as a badge (colour and words). */
export function stateBadge(state) {
  return el("span", { class: `badge state-${state}`, text: STATE_LABEL[state] || state });
}

// -- forms --------------------------------------------------------------------------

/** A message as a sentence: the API's messages start in lower case. */
export function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

/** Remove the error messages a form shows. */
export function clearErrors(form) {
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  const general = form.querySelector(".form-error");
  if (general) general.textContent = "";
}

/** Show an error on a form: the message on top, each field's reason next to it. */
export function showError(form, error) {
  const general = form.querySelector(".form-error");
  let focused = false;
  for (const [name, reason] of Object.entries(error.fields || {})) {
    const field = form.elements.namedItem(name);
    if (!field || !(field instanceof HTMLElement) || field.type === "hidden") continue;
    field.setAttribute("aria-invalid", "true");
    const id = `${field.id || name}-error`;
    const message = el("p", { class: "field-error", id, text: reason });
    field.insertAdjacentElement("afterend", message);
    const described = (field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    if (!described.includes(id))
      field.setAttribute("aria-describedby", [...described, id].join(" "));
    if (!focused) {
      field.focus();
      focused = true;
    }
  }
  const message = sentence(error.message || String(error));
  if (general) general.textContent = message;
  else if (!focused) announce(message);
}

/**
 * Handle a form's submit with `handler(form)` (async): the form is busy meanwhile, its
 * errors are cleared first and shown when the handler throws.
 */
export function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (form.getAttribute("aria-busy") === "true") return;
    clearErrors(form);
    form.setAttribute("aria-busy", "true");
    const buttons = [...form.querySelectorAll("button[type=submit]")];
    for (const b of buttons) b.disabled = true;
    try {
      await handler(form);
    } catch (error) {
      showError(form, error);
    } finally {
      form.removeAttribute("aria-busy");
      for (const b of buttons) b.disabled = false;
    }
  });
}

/** Show a failure to load something in a status element. */
export function showLoadError(node, what, error) {
  node.textContent = `Could not load ${what}: ${error.message}.`;
  node.classList.add("error");
}

// -- dialogs ------------------------------------------------------------------------

function openDialog(dialog, initial) {
  const before = document.activeElement;
  document.body.append(dialog);
  dialog.showModal();
  initial?.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (before instanceof HTMLElement && before.isConnected) before.focus();
      resolve(dialog.returnValue);
    });
  });
}

/**
 * Ask before doing something: resolves true when confirmed. Cancel has the focus first,
 * and Escape cancels.
 */
export async function confirmDialog({ title, message, confirm = "Confirm", danger = false }) {
  const cancel = el("button", { type: "submit", value: "cancel", text: "Cancel" });
  const ok = el("button", {
    type: "submit",
    value: "ok",
    class: danger ? "danger" : "primary",
    text: confirm,
  });
  const heading = el("h2", { id: "dialog-title", text: title });
  const body = Array.isArray(message) ? message : [message];
  const dialog = el(
    "dialog",
    { "aria-labelledby": "dialog-title", "aria-describedby": "dialog-message", class: "dialog" },
    el(
      "form",
      { method: "dialog" },
      heading,
      el(
        "div",
        { id: "dialog-message" },
        ...body.map((m) => (m instanceof Node ? m : el("p", { text: m }))),
      ),
      el("div", { class: "actions" }, cancel, ok),
    ),
  );
  return (await openDialog(dialog, cancel)) === "ok";
}

/**
 * Show a secret that the cloud gives this once (a relay's credential, a temporary
 * password), with a copy button; resolves when the dialog is closed.
 */
export async function secretDialog({ title, intro, secret, notes = [] }) {
  const value = el("input", {
    id: "secret-value",
    class: "secret",
    readonly: true,
    value: secret,
    "aria-describedby": "secret-intro",
    spellcheck: "false",
  });
  const copied = el("span", { class: "note", role: "status" });
  const copy = el("button", {
    type: "button",
    text: "Copy",
    on: {
      click: async () => {
        value.select();
        try {
          await navigator.clipboard.writeText(secret);
          copied.textContent = "Copied.";
        } catch {
          copied.textContent = "Select the text and copy it (Ctrl+C).";
        }
      },
    },
  });
  const done = el("button", { type: "submit", value: "done", class: "primary", text: "Done" });
  const dialog = el(
    "dialog",
    { "aria-labelledby": "dialog-title", class: "dialog secret-dialog" },
    el(
      "form",
      { method: "dialog" },
      el("h2", { id: "dialog-title", text: title }),
      el("p", { id: "secret-intro", text: intro }),
      el("label", { for: "secret-value", class: "visually-hidden", text: title }),
      el("div", { class: "secret-row" }, value, copy),
      copied,
      ...notes.map((text) => el("p", { class: "note", text })),
      el(
        "p",
        { class: "warning" },
        "It is shown only this once: the cloud keeps no copy it could show again.",
      ),
      el("div", { class: "actions" }, done),
    ),
  );
  await openDialog(dialog, value);
}

// -- repeating work -----------------------------------------------------------------

/**
 * Run `task` now and then every `everyMs` while the page is visible (again at once when
 * it becomes visible). Returns a function that stops it.
 */
export function every(everyMs, task) {
  let timer = null;
  let stopped = false;
  let running = false;
  const run = async () => {
    clearTimeout(timer);
    if (stopped || running) return;
    running = true;
    try {
      if (!document.hidden) await task();
    } catch (error) {
      console.warn(error);
    } finally {
      running = false;
    }
    if (!stopped) timer = setTimeout(run, everyMs);
  };
  const onVisible = () => {
    if (!document.hidden) run();
  };
  document.addEventListener("visibilitychange", onVisible);
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}
