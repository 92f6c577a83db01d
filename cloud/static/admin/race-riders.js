// A race's start list: riders with their bibs; admins register racers (bib chosen or the
// lowest free one) and remove them while the race is scheduled.

import { api } from "../common/api.js";
import { $, announce, confirmDialog, el, onSubmit, sentence, showLoadError } from "../common/ui.js";
import { isAdmin, loadRace, raceId } from "./race-common.js";

const STATUS = {
  registered: "registered",
  finished: "finished",
  dnf: "did not finish",
  dns: "did not start",
  dsq: "disqualified",
};

let race = null;
let riders = [];

async function load() {
  const note = $("riders-note");
  try {
    [race, riders] = await Promise.all([loadRace(), api(`/api/races/${raceId}/riders`)]);
  } catch (error) {
    showLoadError(note, "the start list", error);
    return;
  }
  render();
  if (isAdmin) loadRacers();
}

function editable() {
  return isAdmin && race.state === "scheduled";
}

function render() {
  const note = $("riders-note");
  note.classList.remove("error");
  note.textContent = riders.length
    ? `${riders.length} of at most ${race.max_riders} riders.`
    : "Nobody is registered yet.";
  $("riders-table").hidden = riders.length === 0;
  $("riders-rows").replaceChildren(
    ...riders.map((rider) =>
      el(
        "tr",
        { dataset: { riderId: rider.rider_id } },
        el("td", { class: "num", text: String(rider.bib) }),
        el("th", { scope: "row", text: rider.name }),
        el("td", { text: STATUS[rider.status] || rider.status }),
        el("td", { class: "num", text: `#${rider.rider_id}` }),
        isAdmin ? el("td", { class: "actions" }, removeButton(rider)) : null,
      ),
    ),
  );
  const form = $("add-rider");
  if (form) {
    form.hidden = !editable();
    $("add-locked").hidden = editable();
  }
}

function removeButton(rider) {
  if (!editable()) return "";
  return el("button", {
    type: "button",
    class: "small",
    text: "Remove",
    "aria-label": `Remove ${rider.name} (bib ${rider.bib})`,
    on: {
      click: async () => {
        const confirmed = await confirmDialog({
          title: "Remove the rider?",
          message: [`${rider.name} (bib ${rider.bib}) leaves the start list of ${race.name}.`],
          confirm: "Remove",
          danger: true,
        });
        if (!confirmed) return;
        try {
          await api(`/api/races/${raceId}/registrations/${rider.rider_id}`, { method: "DELETE" });
          announce(`${rider.name} is no longer on the start list.`);
          await reload();
          $("list-title").focus?.();
        } catch (error) {
          $("riders-note").textContent = sentence(error.message);
        }
      },
    },
  });
}

async function reload() {
  riders = await api(`/api/races/${raceId}/riders`);
  render();
  if (isAdmin) loadRacers();
}

async function loadRacers() {
  const select = $("user_id");
  if (!select || !editable()) return;
  let racers;
  try {
    racers = await api("/api/users?role=racer");
  } catch (error) {
    select.replaceChildren(
      el("option", { value: "", text: `Could not load racers: ${error.message}` }),
    );
    return;
  }
  const registered = new Set(riders.map((r) => r.rider_id));
  const available = racers.filter((u) => !u.disabled && !registered.has(u.id));
  const chosen = select.value;
  select.replaceChildren(
    el("option", {
      value: "",
      text: available.length ? "Choose a racer" : "No other racer accounts",
    }),
    ...available.map((u) =>
      el("option", { value: u.id, text: u.username, selected: String(u.id) === chosen }),
    ),
  );
}

const form = $("add-rider");
if (form) {
  onSubmit(form, async () => {
    const body = { user_id: Number(form.elements.user_id.value) || null };
    const bib = form.elements.bib.value;
    if (bib !== "") body.bib = Number(bib);
    const added = await api(`/api/races/${raceId}/registrations`, { method: "POST", json: body });
    form.reset();
    await reload();
    announce(`Registered with bib ${added.bib}.`);
  });
}

load();
