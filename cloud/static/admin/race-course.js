// A race's course: GPX upload (admins, while scheduled), the course drawn from its
// points, the elevation profile and the checkpoints (edited by admins while scheduled).

import { api } from "../common/api.js";
import { $, announce, el, formatKm, formatNumber, onSubmit, showLoadError } from "../common/ui.js";
import { clearChart } from "./charts.js";
import { drawMap, drawProfile } from "./drawing.js";
import { CourseGeometry } from "./geometry.js";
import { isAdmin, loadRace, raceId, showHead } from "./race-common.js";

const KINDS = ["sprint", "climb", "feed", "intermediate", "finish"];
const GPX_REASONS = {
  "not-xml": "This file is not XML: choose a .gpx file.",
  "not-gpx": "This XML file is not GPX.",
  "no-points": "The GPX file has no track or route points.",
  "bad-point": "The GPX file has a point that is not a valid position.",
  "too-large": "The file is larger than 20 MB.",
  "dtd-refused": "GPX files with a DTD are refused (they can be used to attack servers).",
  missing: "Choose a GPX file.",
};

let race = null;
let geometry = null;

async function load() {
  try {
    race = await loadRace();
  } catch (error) {
    showLoadError($("course-note"), "the course", error);
    return;
  }
  render();
}

function editable() {
  return isAdmin && race.state === "scheduled";
}

function render() {
  const upload = $("upload-course");
  if (upload) {
    upload.hidden = !editable();
    $("upload-locked").hidden = editable();
  }
  geometry = race.course ? new CourseGeometry(race.course) : null;
  $("map-key").hidden = !geometry;
  if (!geometry) {
    $("course-note").textContent = editable()
      ? "No course yet: upload a GPX file."
      : "No course yet.";
    $("course-map").replaceChildren();
    $("course-facts").replaceChildren();
    clearChart($("profile"));
    $("cp-note").textContent = "Checkpoints come after the course.";
    $("cp-view").hidden = true;
    if ($("checkpoints-form")) $("checkpoints-form").hidden = true;
    return;
  }
  $("course-note").textContent = "";
  drawMap($("course-map"), geometry, `Map of the course of ${race.name}`);
  renderFacts();
  drawProfile($("profile"), geometry, {
    title: `Elevation profile of ${race.name}`,
    onPick: editable() ? (distance) => addCheckpoint({ distance_m: distance }) : null,
  });
  $("profile-hint").hidden = !editable();
  renderCheckpoints();
}

function renderFacts() {
  const facts = [
    ["Distance", formatKm(geometry.finish)],
    ["Laps", String(geometry.laps)],
    ["Lap", formatKm(geometry.lapLength)],
    ["Points", formatNumber(race.course.points.length)],
    ["Climbing", geometry.climbing === null ? "–" : `${formatNumber(geometry.climbing)} m`],
    [
      "Elevation",
      geometry.hasElevation
        ? `${formatNumber(geometry.minEle)}–${formatNumber(geometry.maxEle)} m`
        : "none in the file",
    ],
  ];
  $("course-facts").replaceChildren(
    ...facts.map(([term, value]) =>
      el("div", {}, el("dt", { text: term }), el("dd", { text: value })),
    ),
  );
}

// -- checkpoints --------------------------------------------------------------------

function renderCheckpoints() {
  const checkpoints = race.course.checkpoints;
  const form = $("checkpoints-form");
  const editing = Boolean(form) && editable();
  $("cp-note").textContent = checkpoints.length
    ? ""
    : editing
      ? "No checkpoints yet. Sprints, climbs (foot and top), feed zones and intermediate" +
        " points get split times in the statistics."
      : "No checkpoints.";
  $("cp-view").hidden = editing || !checkpoints.length;
  $("cp-rows").replaceChildren(
    ...checkpoints.map((cp, k) =>
      el(
        "tr",
        {},
        el("td", { class: "num", text: String(k + 1) }),
        el("th", { scope: "row", text: cp.name }),
        el("td", { text: cp.kind }),
        el("td", { class: "num", text: formatKm(cp.distance_m, 3) }),
        el("td", { class: "num", text: cp.end_m === null ? "" : formatKm(cp.end_m, 3) }),
      ),
    ),
  );
  if (!form) return;
  form.hidden = !editing;
  if (editing && !form.contains(document.activeElement)) {
    $("cp-edit-rows").replaceChildren();
    for (const cp of checkpoints) addCheckpoint(cp, false);
  }
}

const km = (metres) => (metres === null || metres === undefined ? "" : String(metres / 1000));

function addCheckpoint(cp = {}, focus = true) {
  const rows = $("cp-edit-rows");
  const n = rows.children.length + 1;
  const name = el("input", {
    name: "cp-name",
    required: true,
    maxlength: 200,
    "aria-label": `Checkpoint ${n}: name`,
    value: cp.name ?? "",
  });
  const kind = el(
    "select",
    { name: "cp-kind", "aria-label": `Checkpoint ${n}: kind` },
    ...KINDS.map((k) =>
      el("option", { value: k, text: k, selected: k === (cp.kind || "intermediate") }),
    ),
  );
  const at = el("input", {
    name: "cp-at",
    type: "number",
    min: 0,
    step: "any",
    required: true,
    inputmode: "decimal",
    "aria-label": `Checkpoint ${n}: at, km from the start`,
    value: km(cp.distance_m),
  });
  const end = el("input", {
    name: "cp-end",
    type: "number",
    min: 0,
    step: "any",
    inputmode: "decimal",
    "aria-label": `Checkpoint ${n}: top of the climb, km from the start`,
    value: km(cp.end_m),
  });
  const syncKind = () => {
    end.disabled = kind.value !== "climb";
    if (end.disabled) end.value = "";
    if (kind.value === "finish" && geometry) at.value = km(geometry.finish);
  };
  kind.addEventListener("change", syncKind);
  syncKind();
  if (cp.kind === "climb") end.value = km(cp.end_m);
  const remove = el("button", {
    type: "button",
    class: "small",
    text: "Remove",
    "aria-label": `Remove checkpoint ${n}`,
  });
  const row = el(
    "tr",
    {},
    el("td", { class: "num", text: String(n) }),
    el("td", {}, name),
    el("td", {}, kind),
    el("td", {}, at),
    el("td", {}, end),
    el("td", {}, remove),
  );
  remove.addEventListener("click", () => {
    row.remove();
    renumber();
    $("cp-add").focus();
    announce(`Checkpoint removed. Save to keep the change.`);
  });
  rows.append(row);
  if (focus) name.focus();
}

function renumber() {
  [...$("cp-edit-rows").children].forEach((row, k) => {
    row.cells[0].textContent = String(k + 1);
    const label = (field, text) =>
      row.querySelector(`[name=${field}]`).setAttribute("aria-label", text);
    label("cp-name", `Checkpoint ${k + 1}: name`);
    label("cp-kind", `Checkpoint ${k + 1}: kind`);
    label("cp-at", `Checkpoint ${k + 1}: at, km from the start`);
    label("cp-end", `Checkpoint ${k + 1}: top of the climb, km from the start`);
    row.querySelector("button").setAttribute("aria-label", `Remove checkpoint ${k + 1}`);
  });
}

const metres = (value) => Math.round(Number(value) * 10000) / 10; // km -> m, to 0.1 m

const form = $("checkpoints-form");
if (form) {
  $("cp-add").addEventListener("click", () => addCheckpoint());
  onSubmit(form, async () => {
    const checkpoints = [...$("cp-edit-rows").children].map((row) => {
      const value = (field) => row.querySelector(`[name=${field}]`).value;
      const kind = value("cp-kind");
      return {
        name: value("cp-name").trim(),
        kind,
        distance_m: metres(value("cp-at")),
        end_m: kind === "climb" && value("cp-end") !== "" ? metres(value("cp-end")) : null,
      };
    });
    race = await api(`/api/races/${raceId}/checkpoints`, {
      method: "PUT",
      json: { checkpoints },
    });
    document.activeElement?.blur?.();
    render();
    $("cp-add").focus();
    announce(`${checkpoints.length} checkpoint${checkpoints.length === 1 ? "" : "s"} saved.`);
  });
}

const upload = $("upload-course");
if (upload) {
  onSubmit(upload, async () => {
    const file = upload.elements.file.files[0];
    const laps = Number(upload.elements.laps.value) || 1;
    const body = new FormData();
    if (file) body.append("file", file, file.name);
    try {
      race = await api(`/api/races/${raceId}/course?laps=${laps}`, { method: "PUT", body });
    } catch (error) {
      if (error.fields?.file)
        error.fields.file = GPX_REASONS[error.fields.file] || error.fields.file;
      throw error;
    }
    showHead(race);
    upload.reset();
    render();
    announce("The course is uploaded.");
  });
}

load();
