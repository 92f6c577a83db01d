// Relays: their health as they last reported it (trackers, spectators, backlog, uplink,
// certificate hash), the races they serve; admins enrol them (the credential is shown
// once), change their races, disable or enable them.

import { api } from "../common/api.js";
import {
  $,
  announce,
  confirmDialog,
  el,
  every,
  formatAgo,
  formatNumber,
  onSubmit,
  secretDialog,
  sentence,
  showLoadError,
} from "../common/ui.js";

const REFRESH_MS = 10000;
const STALE_MS = 60000;
const isAdmin = document.body.dataset.role === "admin";
const note = $("relays-note");
let races = [];

async function load() {
  try {
    const [relays, raceList] = await Promise.all([api("/api/relays"), api("/api/races")]);
    races = raceList;
    render(relays);
  } catch (error) {
    showLoadError(note, "the relays", error);
  }
  renderRaceChoice();
}

const raceName = (id) => races.find((r) => r.id === id)?.name ?? `race ${id}`;

function health(relay) {
  if (relay.disabled) return [el("span", { class: "badge bad", text: "disabled" })];
  if (relay.reported_ms === null) {
    return [el("span", { class: "badge quiet", text: "never reported" })];
  }
  const stale = Date.now() - relay.reported_ms > STALE_MS;
  return [
    el("span", { class: `badge ${stale ? "bad" : "good"}`, text: stale ? "silent" : "reporting" }),
    el("div", { class: "note", text: `last report ${formatAgo(relay.reported_ms)}` }),
  ];
}

function render(relays) {
  note.classList.remove("error");
  note.textContent = relays.length ? "" : "No relay is enrolled yet.";
  $("relays-table").hidden = !relays.length;
  const rows = $("relays-rows");
  if (rows.contains(document.activeElement)) return; // refresh later, not under the focus
  rows.replaceChildren(...relays.map(row));
}

/** ", expires in 9 days"; a warning within 2 days (a relay renews its own 3 days ahead). */
function expiry(notAfterMs) {
  if (typeof notAfterMs !== "number") return "";
  const days = (notAfterMs - Date.now()) / 86_400_000;
  if (days < 0) return el("strong", { class: "error", text: ", expired" });
  const text =
    days < 2
      ? `, expires in ${Math.max(1, Math.round(days * 24))} h`
      : `, expires in ${Math.floor(days)} days`;
  return days < 2 ? el("strong", { class: "expiring", text }) : text;
}

function row(relay) {
  const s = relay.status || {};
  const name = el("th", { scope: "row" }, relay.name);
  if (s.page_url) {
    name.append(el("div", {}, el("a", { href: s.page_url, text: "spectator page" })));
  }
  const hash = s.cert_sha256
    ? el(
        "code",
        { title: s.cert_sha256, class: "mono" },
        `${s.cert_sha256.slice(0, 16)}…`,
        s.self_signed ? " (self-signed)" : "",
        expiry(s.cert_not_after_ms),
      )
    : "–";
  const cells = [
    name,
    el("td", {}, ...health(relay)),
    el("td", { text: relay.race_ids.map(raceName).join(", ") || "none" }),
    el("td", { class: "num", text: formatNumber(s.trackers) }),
    el("td", { class: "num", text: formatNumber(s.spectators) }),
    el("td", { class: "num", text: formatNumber(s.backlog_fixes) }),
    el("td", { text: s.uplink ?? "–" }),
    el("td", { class: "cert" }, hash),
  ];
  if (isAdmin) {
    cells.push(
      el(
        "td",
        { class: "actions" },
        el("button", {
          type: "button",
          class: "small",
          text: "Races…",
          "aria-label": `Races of ${relay.name}`,
          on: { click: () => editRaces(relay) },
        }),
        el("button", {
          type: "button",
          class: "small",
          text: relay.disabled ? "Enable" : "Disable",
          "aria-label": `${relay.disabled ? "Enable" : "Disable"} ${relay.name}`,
          on: { click: () => toggle(relay) },
        }),
      ),
    );
  }
  return el(
    "tr",
    { class: relay.disabled ? "disabled" : null, dataset: { relayId: relay.id } },
    ...cells,
  );
}

/** Checkboxes of the races not yet published (and any in `chosen`). */
function raceCheckboxes(prefix, chosen = []) {
  const open = races.filter((r) => r.state !== "published" || chosen.includes(r.id));
  if (!open.length) return [el("p", { class: "note", text: "There is no race to serve yet." })];
  return open.map((race) =>
    el(
      "label",
      { class: "inline" },
      el("input", {
        type: "checkbox",
        name: "race_ids",
        value: race.id,
        id: `${prefix}-${race.id}`,
        checked: chosen.includes(race.id),
      }),
      `${race.name} (${race.state})`,
    ),
  );
}

function renderRaceChoice() {
  const fieldset = $("race-choice");
  if (!fieldset || fieldset.contains(document.activeElement)) return;
  const chosen = [...fieldset.querySelectorAll("input:checked")].map((i) => Number(i.value));
  fieldset.replaceChildren(
    el("legend", { text: "Races it serves" }),
    ...raceCheckboxes("enrol", chosen),
  );
}

const chosenIds = (root) =>
  [...root.querySelectorAll("input[name=race_ids]:checked")].map((i) => Number(i.value));

async function editRaces(relay) {
  const boxes = el(
    "fieldset",
    {},
    el("legend", { text: `Races ${relay.name} serves` }),
    ...raceCheckboxes("edit", relay.race_ids),
  );
  const confirmed = await confirmDialog({
    title: `Races of ${relay.name}`,
    message: [boxes, "The relay picks the change up at its next configuration refresh."],
    confirm: "Save",
  });
  if (!confirmed) return;
  await change(relay, { race_ids: chosenIds(boxes) }, `${relay.name} serves its new races.`);
}

async function toggle(relay) {
  const disabling = !relay.disabled;
  const confirmed = await confirmDialog({
    title: `${disabling ? "Disable" : "Enable"} ${relay.name}?`,
    message: disabling
      ? ["Its credential stops working at once: it can no longer upload, forward or fetch races."]
      : ["Its credential works again."],
    confirm: disabling ? "Disable" : "Enable",
    danger: disabling,
  });
  if (!confirmed) return;
  await change(
    relay,
    { disabled: disabling },
    `${relay.name} is ${disabling ? "disabled" : "enabled"}.`,
  );
}

async function change(relay, body, done) {
  try {
    await api(`/api/relays/${relay.id}`, { method: "PATCH", json: body });
    announce(done);
  } catch (error) {
    note.textContent = sentence(error.message);
    note.classList.add("error");
  }
  await load();
}

const form = $("enrol-relay");
if (form) {
  onSubmit(form, async () => {
    const name = form.elements.name.value.trim();
    const relay = await api("/api/relays", {
      method: "POST",
      json: { name, race_ids: chosenIds(form) },
    });
    form.reset();
    await secretDialog({
      title: `Credential of ${relay.name}`,
      intro: "Put it in a file on the relay's machine and start the relay with it:",
      secret: relay.credential,
      notes: [
        `gruppetto relay --cloud ${location.origin} --credential relay.key --data ./relay-data`,
      ],
    });
    announce(`${relay.name} is enrolled.`);
    await load();
  });
}

every(REFRESH_MS, load);
