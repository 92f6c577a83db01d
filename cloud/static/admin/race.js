// A race's overview: its state (moved along the state machine, with confirmation), what
// is left to prepare, its details (admins edit or delete it while scheduled) and the
// relays serving it.

import { api } from "../common/api.js";
import {
  $,
  announce,
  confirmDialog,
  el,
  formatAgo,
  formatDateTime,
  fromLocalInput,
  onSubmit,
  sentence,
  showLoadError,
  toLocalInput,
} from "../common/ui.js";
import {
  changeState,
  describeMove,
  isAdmin,
  loadRace,
  raceId,
  showHead,
  transitions,
} from "./race-common.js";

let race = null;

async function load() {
  try {
    race = await loadRace();
  } catch (error) {
    showLoadError($("state-note"), "the race", error);
    return;
  }
  render();
  loadChecklist();
  loadRelays();
}

function render() {
  for (const step of $("state-steps").children) {
    if (step.dataset.state === race.state) step.setAttribute("aria-current", "step");
    else step.removeAttribute("aria-current");
  }
  renderStateActions();
  renderDetails();
  const form = $("edit-race");
  if (form) {
    const editable = race.state === "scheduled";
    form.hidden = !editable;
    $("edit-note").hidden = editable;
    if (editable) fillEditForm(form);
  }
}

function renderStateActions() {
  const actions = $("state-actions");
  const next = transitions[race.state] || [];
  const noCourse = !race.course;
  actions.replaceChildren(
    ...next.map((to) => {
      const move = describeMove(race.state, to);
      const blocked = to === "live" && noCourse;
      return el("button", {
        type: "button",
        class: move.danger ? "danger" : "primary",
        text: move.label,
        disabled: blocked,
        "aria-describedby": blocked ? "state-note" : null,
        on: { click: () => move_(to) },
      });
    }),
  );
  const note = $("state-note");
  note.classList.remove("error");
  if (!next.length) note.textContent = "The results are published: this race is final.";
  else if (race.state === "scheduled" && noCourse)
    note.textContent = "Upload the course before starting the race.";
  else note.textContent = "";
}

async function move_(to) {
  $("state-error").textContent = "";
  try {
    const updated = await changeState(race, to);
    if (updated) {
      race = { ...race, ...updated };
      render();
      loadChecklist();
    }
  } catch (error) {
    $("state-error").textContent = sentence(error.message);
  }
}

function renderDetails() {
  const items = [
    ["Starts", formatDateTime(race.starts_at_ms)],
    ["Riders at most", String(race.max_riders)],
    ["Registration", race.registration_open ? "open to racers" : "closed"],
    ["Last change", formatDateTime(race.updated_ms)],
  ];
  $("details").replaceChildren(
    ...items.map(([term, value]) =>
      el("div", {}, el("dt", { text: term }), el("dd", { text: value })),
    ),
  );
}

async function loadChecklist() {
  const list = $("checklist");
  const course = race.course;
  const items = [];
  const link = (path, text) => el("a", { href: `/admin/races/${raceId}${path}`, text });
  if (course) {
    const cps = course.checkpoints.length;
    const laps = `${course.laps} lap${course.laps === 1 ? "" : "s"}`;
    items.push([
      true,
      link("/course", `Course uploaded (${course.points.length} points, ${laps})`),
    ]);
    const checkpoints = cps
      ? `${cps} checkpoint${cps === 1 ? "" : "s"}`
      : "No checkpoints (optional)";
    items.push([cps > 0, link("/course", checkpoints)]);
  } else {
    items.push([false, link("/course", "Upload the course (GPX)")]);
  }
  try {
    const riders = await api(`/api/races/${raceId}/riders`);
    const n = riders.length;
    const text = n
      ? `${n} rider${n === 1 ? "" : "s"} on the start list`
      : "No riders registered yet";
    items.push([n > 0, link("/riders", text)]);
  } catch (error) {
    items.push([false, `Start list: ${error.message}`]);
  }
  const live = race.state !== "scheduled";
  items.push([live, live ? "Started" : "Start the race when everything is ready"]);
  list.replaceChildren(
    ...items.map(([done, content]) => el("li", { class: done ? "done" : "todo" }, content)),
  );
}

async function loadRelays() {
  const note = $("relays-note");
  try {
    const relays = await api(`/api/races/${raceId}/relays`);
    note.classList.remove("error");
    note.textContent = relays.length
      ? ""
      : "No relay serves this race yet: enrol one on the Relays page.";
    $("race-relays").replaceChildren(
      ...relays.map((relay) =>
        el(
          "li",
          {},
          el("strong", { text: relay.name }),
          ` — ${relay.stale ? "not heard from" : "reporting"},` +
            ` last report ${formatAgo(relay.reported_ms)}`,
          relay.page_url ? " — " : "",
          relay.page_url ? el("a", { href: relay.page_url, text: "spectator page" }) : "",
        ),
      ),
    );
  } catch (error) {
    showLoadError(note, "the relays", error);
  }
}

function fillEditForm(form, force = false) {
  const fields = form.elements;
  if (!force && form.contains(document.activeElement)) return; // never under someone's fingers
  fields.name.value = race.name;
  fields.starts_at.value = toLocalInput(race.starts_at_ms);
  fields.max_riders.value = race.max_riders;
  fields.registration_open.checked = race.registration_open;
}

const form = $("edit-race");
if (form && isAdmin) {
  onSubmit(form, async () => {
    const fields = form.elements;
    const updated = await api(`/api/races/${raceId}`, {
      method: "PATCH",
      json: {
        name: fields.name.value.trim(),
        starts_at: fromLocalInput(fields.starts_at.value),
        max_riders: Number(fields.max_riders.value),
        registration_open: fields.registration_open.checked,
      },
    });
    race = { ...race, ...updated };
    showHead(race);
    render();
    fillEditForm(form, true);
    announce("Saved.");
  });
  $("delete-race").addEventListener("click", async () => {
    const confirmed = await confirmDialog({
      title: "Delete the race?",
      message: [`${race.name} and its start list are deleted. This cannot be undone.`],
      confirm: "Delete the race",
      danger: true,
    });
    if (!confirmed) return;
    try {
      await api(`/api/races/${raceId}`, { method: "DELETE" });
      location.assign("/admin/races");
    } catch (error) {
      form.querySelector(".form-error").textContent = sentence(error.message);
    }
  });
}

load();
