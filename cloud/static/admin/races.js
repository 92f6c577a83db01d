// The races: every race by start time, filtered by state; admins create races here.

import { api } from "../common/api.js";
import {
  $,
  el,
  every,
  formatDateTime,
  fromLocalInput,
  onSubmit,
  showLoadError,
  stateBadge,
  toLocalInput,
} from "../common/ui.js";

const REFRESH_MS = 15000;
const filter = $("state-filter");
const note = $("races-note");

async function load() {
  const state = filter.value;
  try {
    const races = await api(`/api/races${state ? `?state=${encodeURIComponent(state)}` : ""}`);
    render(races);
  } catch (error) {
    showLoadError(note, "the races", error);
  }
}

function render(races) {
  $("races-table").hidden = races.length === 0;
  note.classList.remove("error");
  note.textContent = races.length
    ? `${races.length} race${races.length === 1 ? "" : "s"}, soonest first.`
    : filter.value
      ? "No race is in that state."
      : "No races yet.";
  $("races-rows").replaceChildren(
    ...races.map((race) =>
      el(
        "tr",
        { dataset: { raceId: race.id } },
        el("th", { scope: "row" }, el("a", { href: `/admin/races/${race.id}`, text: race.name })),
        el("td", { text: formatDateTime(race.starts_at_ms) }),
        el("td", {}, stateBadge(race.state)),
        el("td", { class: "num", text: `${race.riders} / ${race.max_riders}` }),
        el("td", { text: race.has_course ? "uploaded" : "none yet" }),
        el("td", { text: race.registration_open ? "open" : "closed" }),
      ),
    ),
  );
}

filter.addEventListener("change", load);
every(REFRESH_MS, load);

const form = $("create-race");
if (form) {
  const tomorrow = new Date();
  tomorrow.setDate(tomorrow.getDate() + 1);
  tomorrow.setHours(10, 0, 0, 0);
  form.elements.starts_at.value = toLocalInput(tomorrow.getTime());
  onSubmit(form, async () => {
    const fields = form.elements;
    const race = await api("/api/races", {
      method: "POST",
      json: {
        name: fields.name.value.trim(),
        starts_at: fromLocalInput(fields.starts_at.value),
        max_riders: Number(fields.max_riders.value),
        registration_open: fields.registration_open.checked,
      },
    });
    location.assign(`/admin/races/${race.id}`);
  });
}
