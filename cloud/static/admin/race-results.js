// A race's results (published by admins and officials once it is finished) and its
// statistics: a summary, speed bars, the time at each checkpoint, per-rider figures.

import { api } from "../common/api.js";
import {
  $,
  el,
  formatDateTime,
  formatDuration,
  formatKm,
  formatNumber,
  sentence,
  showLoadError,
} from "../common/ui.js";
import { barChart, lineChart } from "./charts.js";
import { changeState, loadRace, raceId } from "./race-common.js";

let race = null;

async function load() {
  try {
    race = await loadRace();
  } catch (error) {
    showLoadError($("results-note"), "the race", error);
    return;
  }
  renderPublish();
  let results, stats, summary;
  try {
    [results, stats, summary] = await Promise.all([
      api(`/api/races/${raceId}/results`),
      api(`/api/races/${raceId}/stats`),
      api(`/api/races/${raceId}/summary`),
    ]);
  } catch (error) {
    showLoadError($("results-note"), "the results", error);
    return;
  }
  const names = new Map(results.map((r) => [r.rider_id, r.name]));
  const riderLabel = (r) => `#${r.bib ?? "–"} ${names.get(r.rider_id) ?? `rider ${r.rider_id}`}`;
  renderResults(results);
  renderSummary(summary);
  renderCharts(stats, riderLabel);
  renderStats(stats, names);
}

function renderPublish() {
  const area = $("publish");
  area.replaceChildren();
  if (race.state !== "finished") {
    const text = {
      scheduled: "The race has not started: results come once it is ridden.",
      live: "The race is live: these results are provisional.",
      neutralised: "The race is neutralised: these results are provisional.",
      published: "These results are published and final.",
    }[race.state];
    area.append(el("p", { class: "note", text }));
    return;
  }
  area.append(
    el("p", { class: "note", text: "The race is finished. Check the results, then publish them." }),
    el("button", {
      type: "button",
      class: "primary",
      id: "publish-button",
      text: "Publish the results",
      on: {
        click: async () => {
          $("publish-error").textContent = "";
          try {
            const updated = await changeState(race, "published");
            if (updated) {
              race = { ...race, ...updated };
              renderPublish();
            }
          } catch (error) {
            $("publish-error").textContent = sentence(error.message);
          }
        },
      },
    }),
  );
}

const STATUS = { finished: "finished", racing: "on the road", DNF: "DNF", DNS: "DNS", DSQ: "DSQ" };

function renderResults(results) {
  const note = $("results-note");
  note.classList.remove("error");
  note.textContent = results.length ? "" : "No results: nobody is on the start list.";
  $("results-table").hidden = !results.length;
  $("results-rows").replaceChildren(
    ...results.map((r) =>
      el(
        "tr",
        {},
        el("td", { class: "num", text: r.rank ?? "–" }),
        el("td", { class: "num", text: r.bib ?? "–" }),
        el("th", { scope: "row", text: r.name }),
        el("td", { text: STATUS[r.status] || r.status }),
        el("td", { class: "num", text: formatDuration(r.time_ms) }),
        el("td", {
          class: "num",
          text: r.gap_ms ? `+${formatDuration(r.gap_ms)}` : r.rank ? "–" : "",
        }),
        el("td", { class: "num", text: r.penalty_s ? `${r.penalty_s} s` : "" }),
        el("td", { class: "num", text: formatKm(r.progress_m) }),
      ),
    ),
  );
}

function renderSummary(s) {
  const items = [
    ["Riders with fixes", formatNumber(s.riders)],
    ["Fixes", formatNumber(s.fixes)],
    ["First fix", formatDateTime(s.start_ms)],
    ["Last fix", formatDateTime(s.end_ms)],
    ["Leader's distance", formatKm(s.leader_progress_m)],
    ["Field's distance", formatKm(s.distance_m, 1)],
    ["Average speed", s.avg_speed_kmh === null ? "–" : `${formatNumber(s.avg_speed_kmh, 1)} km/h`],
  ];
  $("summary").replaceChildren(
    ...items.map(([t, v]) => el("div", {}, el("dt", { text: t }), el("dd", { text: v }))),
  );
}

function renderCharts(stats, riderLabel) {
  const bySpeed = [...stats].sort(
    (a, b) => (b.avg_moving_speed_kmh ?? 0) - (a.avg_moving_speed_kmh ?? 0),
  );
  const kmh = (v) => `${formatNumber(v, 1)}`;
  barChart($("speed-chart"), {
    label: "Average moving speed of each rider, km/h",
    items: bySpeed.map((r) => ({ label: riderLabel(r), value: r.avg_moving_speed_kmh })),
    format: kmh,
    unitLabel: "km/h",
  });
  const byMax = [...stats].sort((a, b) => (b.max_speed_kmh ?? 0) - (a.max_speed_kmh ?? 0));
  barChart($("max-chart"), {
    label: "Top speed of each rider, km/h",
    items: byMax.map((r) => ({ label: riderLabel(r), value: r.max_speed_kmh })),
    format: kmh,
    unitLabel: "km/h",
  });
  const withSplits = stats.filter((r) => r.splits.some((s) => s.elapsed_ms !== null));
  $("splits-note").textContent = !race.course?.checkpoints?.length
    ? "The course has no checkpoints: add some on the Course page to get split times."
    : withSplits.length
      ? "Minutes from each rider's start to each checkpoint: a steeper line is a slower rider."
      : "Nobody has passed a checkpoint yet.";
  lineChart($("splits-chart"), {
    label: "Time from the start at each checkpoint, per rider",
    series: withSplits.map((r) => ({
      label: riderLabel(r),
      points: [
        [0, 0],
        ...r.splits
          .filter((s) => s.elapsed_ms !== null)
          .map((s) => [s.distance_m / 1000, s.elapsed_ms / 60000]),
      ],
    })),
    xFormat: (v) => `${formatNumber(v, v % 1 ? 1 : 0)} km`,
    yFormat: (v) => `${formatNumber(v, v % 1 ? 1 : 0)} min`,
    xLabel: "distance",
    yLabel: "minutes",
  });
}

function renderStats(stats, names) {
  $("stats-table").hidden = !stats.length;
  $("stats-rows").replaceChildren(
    ...stats.map((r) =>
      el(
        "tr",
        {},
        el("td", { class: "num", text: r.bib ?? "–" }),
        el("th", { scope: "row", text: names.get(r.rider_id) ?? `#${r.rider_id}` }),
        el("td", { class: "num", text: formatKm(r.distance_m) }),
        el("td", { class: "num", text: formatDuration(r.moving_ms) }),
        el("td", { class: "num", text: formatDuration(r.elapsed_ms) }),
        el("td", { class: "num", text: formatNumber(r.avg_moving_speed_kmh, 1) }),
        el("td", { class: "num", text: formatNumber(r.max_speed_kmh, 1) }),
        el("td", { class: "num", text: `${formatNumber(r.elevation_gain_m)} m` }),
        el(
          "td",
          { class: "climbs" },
          r.climbs
            .map((c) =>
              c.time_ms === null
                ? `${c.name}: –`
                : `${c.name}: ${formatDuration(c.time_ms)}${c.rank ? ` (#${c.rank})` : ""}` +
                  (c.vam_m_h === null ? "" : `, VAM ${formatNumber(c.vam_m_h)}`),
            )
            .join("; "),
        ),
      ),
    ),
  );
}

load();
