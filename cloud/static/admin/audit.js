// The audit log (admins): who changed what and when, newest first, for every race and
// account or for one (?race_id=N or ?user_id=N, as the API filters).

import { api } from "../common/api.js";
import { $, el, formatDateTime, formatDuration, formatKm, showLoadError } from "../common/ui.js";

const ACTIONS = {
  "race.create": "created the race",
  "race.update": "edited the race",
  "race.delete": "deleted the race",
  "race.state": "changed the state",
  "race.course": "uploaded the course",
  "race.checkpoints": "set the checkpoints",
  "registration.add": "registered a rider",
  "registration.remove": "removed a rider",
  "user.create": "created the account",
  "user.update": "changed the account",
  "user.unlock": "unlocked the account",
  "user.password-reset": "reset the password",
};

const form = $("audit-filter");
const note = $("audit-note");
let users = new Map();
let races = new Map();

const LABELS = {
  user_id: "account",
  length_m: "length",
  count: "checkpoints",
  max_riders: "riders at most",
  starts_at_ms: "starts",
  locked_until_ms: "was locked until",
  expires_ms: "temporary password until",
};

function detail(key, value) {
  if (key === "length_m" && typeof value === "number") return formatKm(value);
  if (key.endsWith("_ms") && typeof value === "number") {
    return key === "time_ms" || key === "elapsed_ms"
      ? formatDuration(value)
      : formatDateTime(value);
  }
  if (key === "user_id" && users.has(value)) return `${users.get(value)} (#${value})`;
  if (Array.isArray(value) && value.length === 2) return `${value[0]} → ${value[1]}`;
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function details(values) {
  const { old, new: now, ...rest } = values;
  const parts = old !== undefined && now !== undefined ? [`${old} → ${now}`] : [];
  if (old !== undefined && now === undefined) rest.old = old;
  if (now !== undefined && old === undefined) rest.new = now;
  for (const [k, v] of Object.entries(rest)) {
    parts.push(`${LABELS[k] ?? k.replaceAll("_", " ")}: ${detail(k, v)}`);
  }
  return parts.join("; ");
}

function objectLink(entry) {
  if (entry.object_type === "race" && entry.object_id) {
    const name = races.get(entry.object_id);
    return el("a", {
      href: `/admin/races/${entry.object_id}`,
      text: name ? `${name} (race ${entry.object_id})` : `race ${entry.object_id}`,
    });
  }
  if (entry.object_type === "user" && entry.object_id) {
    return users.get(entry.object_id) ?? `account ${entry.object_id}`;
  }
  return `${entry.object_type}${entry.object_id ? ` ${entry.object_id}` : ""}`;
}

function render(entries) {
  note.classList.remove("error");
  note.textContent = entries.length
    ? `${entries.length} entr${entries.length === 1 ? "y" : "ies"}, newest first` +
      (entries.length >= 200 ? " (the newest 200)." : ".")
    : "Nothing recorded.";
  $("audit-table").hidden = !entries.length;
  $("audit-rows").replaceChildren(
    ...entries.map((entry) =>
      el(
        "tr",
        { dataset: { action: entry.action } },
        el("td", { text: formatDateTime(entry.t_ms) }),
        el("td", { text: entry.actor }),
        el(
          "td",
          {},
          ACTIONS[entry.action] || entry.action,
          el("div", { class: "note mono", text: entry.action }),
        ),
        el("td", {}, objectLink(entry)),
        el("td", { text: details(entry.detail || {}) }),
      ),
    ),
  );
}

async function loadChoices() {
  const [userList, raceList] = await Promise.all([api("/api/users"), api("/api/races")]);
  users = new Map(userList.map((u) => [u.id, u.username]));
  races = new Map(raceList.map((r) => [r.id, r.name]));
  const params = new URLSearchParams(location.search);
  const fill = (select, items, chosen) => {
    for (const [id, name] of items) {
      select.append(el("option", { value: id, text: name, selected: String(id) === chosen }));
    }
  };
  fill(form.elements.race_id, races, params.get("race_id"));
  fill(form.elements.user_id, users, params.get("user_id"));
}

async function load() {
  const params = new URLSearchParams(location.search);
  const query = params.get("race_id")
    ? `?race_id=${encodeURIComponent(params.get("race_id"))}`
    : params.get("user_id")
      ? `?user_id=${encodeURIComponent(params.get("user_id"))}`
      : "";
  try {
    render(await api(`/api/audit${query}`));
  } catch (error) {
    showLoadError(note, "the audit log", error);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const race = form.elements.race_id.value;
  const user = form.elements.user_id.value;
  const query = race ? `?race_id=${race}` : user ? `?user_id=${user}` : "";
  history.replaceState(null, "", `${location.pathname}${query}`);
  load();
});
// one filter at a time (the API filters by a race or by an account)
form.elements.race_id.addEventListener("change", () => {
  if (form.elements.race_id.value) form.elements.user_id.value = "";
});
form.elements.user_id.addEventListener("change", () => {
  if (form.elements.user_id.value) form.elements.race_id.value = "";
});

loadChoices()
  .catch((error) => showLoadError(note, "the races and accounts", error))
  .then(load);
