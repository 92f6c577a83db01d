// Past races side by side (GET /api/races/compare): average speed and riders per race,
// the average speed across the season, and the figures as a table.

import { api } from "../common/api.js";
import {
  $,
  el,
  formatDate,
  formatDateTime,
  formatKm,
  formatNumber,
  onSubmit,
  showLoadError,
} from "../common/ui.js";
import { barChart, clearChart, lineChart } from "./charts.js";

const PAST = new Set(["finished", "published"]);
const DEFAULT_PICKS = 12;
const MAX_PICKS = 50;
const form = $("compare-form");
const note = $("compare-note");
let races = new Map();

async function loadRaces() {
  const all = await api("/api/races");
  const past = all.filter((r) => PAST.has(r.state)).sort((a, b) => b.starts_at_ms - a.starts_at_ms);
  races = new Map(past.map((r) => [r.id, r]));
  const fieldset = $("race-picks");
  fieldset.replaceChildren(el("legend", { text: "Finished and published races" }));
  if (!past.length) {
    fieldset.append(el("p", { class: "note", text: "No race has finished yet." }));
    return [];
  }
  past.forEach((race, k) =>
    fieldset.append(
      el(
        "label",
        { class: "inline" },
        el("input", { type: "checkbox", name: "race", value: race.id, checked: k < DEFAULT_PICKS }),
        `${race.name} (${formatDate(race.starts_at_ms)})`,
      ),
    ),
  );
  return past.slice(0, DEFAULT_PICKS).map((r) => r.id);
}

const label = (summary) => races.get(summary.race_id)?.name ?? `race ${summary.race_id}`;

async function compare(ids) {
  if (!ids.length) {
    note.textContent = "Choose at least one race.";
    for (const id of ["speed-chart", "riders-chart", "trend-chart"]) clearChart($(id));
    $("compare-table").hidden = true;
    $("compare-csv").hidden = true;
    return;
  }
  const query = `race_ids=${ids.join(",")}`;
  const rows = await api(`/api/races/compare?${query}`);
  $("compare-csv").href = `/api/races/compare?${query}&format=csv`;
  $("compare-csv").hidden = false;
  note.classList.remove("error");
  note.textContent = `${rows.length} race${rows.length === 1 ? "" : "s"}.`;
  const byDate = [...rows].sort(
    (a, b) => (races.get(a.race_id)?.starts_at_ms ?? 0) - (races.get(b.race_id)?.starts_at_ms ?? 0),
  );
  barChart($("speed-chart"), {
    label: "Average moving speed of the field in each race, km/h",
    items: byDate.map((s) => ({ label: label(s), value: s.avg_speed_kmh })),
    format: (v) => formatNumber(v, 1),
    unitLabel: "km/h",
  });
  barChart($("riders-chart"), {
    label: "Riders with fixes in each race",
    items: byDate.map((s) => ({ label: label(s), value: s.riders })),
    format: (v) => formatNumber(v),
  });
  const trend = byDate.filter((s) => s.avg_speed_kmh !== null && races.has(s.race_id));
  if (trend.length < 2) {
    const text = "A trend needs two races with figures or more: pick another race above.";
    clearChart($("trend-chart"), el("p", { class: "note", text }));
  } else {
    lineChart($("trend-chart"), {
      label: "Average moving speed by race date",
      series: [
        {
          label: "average moving speed, km/h",
          points: trend.map((s) => [races.get(s.race_id).starts_at_ms, s.avg_speed_kmh]),
        },
      ],
      xFormat: (v) => formatDate(v),
      yFormat: (v) => formatNumber(v, 1),
      yLabel: "km/h",
      yZero: false,
    });
  }
  $("compare-table").hidden = false;
  $("compare-rows").replaceChildren(
    ...byDate.map((s) =>
      el(
        "tr",
        {},
        el(
          "th",
          { scope: "row" },
          el("a", { href: `/admin/races/${s.race_id}/results`, text: label(s) }),
        ),
        el("td", { text: formatDateTime(s.start_ms) }),
        el("td", { class: "num", text: formatNumber(s.riders) }),
        el("td", { class: "num", text: formatNumber(s.fixes) }),
        el("td", { class: "num", text: formatKm(s.leader_progress_m) }),
        el("td", { class: "num", text: formatKm(s.distance_m, 1) }),
        el("td", { class: "num", text: formatNumber(s.avg_speed_kmh, 1) }),
      ),
    ),
  );
}

onSubmit(form, async () => {
  const ids = [...form.querySelectorAll("input[name=race]:checked")].map((i) => Number(i.value));
  if (ids.length > MAX_PICKS) {
    throw new Error(`Choose at most ${MAX_PICKS} races.`);
  }
  await compare(ids);
});

loadRaces()
  .then(compare)
  .catch((error) => showLoadError(note, "the statistics", error));
