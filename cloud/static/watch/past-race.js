// A past race: the race at a glance, the results, a replay with speed control, charts
// comparing riders, every rider's statistics and their checkpoint splits.
//
// All of it comes from the cloud's API: /api/races/{id} (the course), .../results,
// .../stats, .../summary and .../track (every rider's positions, for the replay).

import { api } from "/static/common/api.js";
import { $, el, formatDuration, formatKm, formatNumber, formatTime } from "/static/common/ui.js";
import { formatDistance } from "/static/shared/board.js";
import { barChart, lineChart } from "./charts.js";
import { CourseView } from "./course-view.js";
import { RaceTracks, ReplayClock } from "./replay.js";
import { localizeTimes } from "./times.js";

const COMPARE_MAX = 8;
const COMPARE_FIRST = 5;
const GAP_POINTS = 60;
const MOMENT_SHOWN = 10;
const TRACK_STEP_S = 5;
const OUT = new Set(["DNF", "DNS", "DSQ"]);

const root = $("race");
const raceId = Number(root.dataset.raceId);
const startsAt = Number(root.dataset.startsAtMs);
const over = ["finished", "published"].includes(root.dataset.state);
const page = {
  results: [],
  stats: [],
  byRider: new Map(), // rider_id -> results row (bib, name, status, finish_ms...)
  tracks: null,
  clock: null,
  compared: [], // rider ids in the order chosen: the n-th has colour c(n+1)
  view: null,
  frameRequest: null,
};

function setText(node, value) {
  if (node.textContent !== value) node.textContent = value;
}

function riderLabel(riderId) {
  const row = page.byRider.get(riderId);
  return row ? `${row.bib} ${row.name || ""}`.trim() : `Rider ${riderId}`;
}

function riderName(riderId) {
  return page.byRider.get(riderId)?.name || `Rider ${riderId}`;
}

function behind(ms) {
  return ms ? `+${formatDuration(ms)}` : "";
}

// -- the race at a glance and the results -------------------------------------------

function renderSummary(summary) {
  const finishers = page.results.filter((r) => r.time_ms !== null);
  const speed = summary.avg_speed_kmh;
  const length = page.view.geometry ? page.view.geometry.finish : null;
  const tiles = [
    ["Riders", formatNumber(page.results.length)],
    ["Finishers", formatNumber(finishers.length)],
    ["Winning time", finishers.length ? formatDuration(finishers[0].time_ms) : "–"],
    ["Course", formatKm(length, 1)],
    ["Average speed", speed === null ? "–" : `${formatNumber(speed, 1)} km/h`],
    ["Fixes recorded", formatNumber(summary.fixes)],
  ];
  $("summary").replaceChildren(
    ...tiles.map(([label, value]) =>
      el("div", {}, el("dt", { text: label }), el("dd", { text: value })),
    ),
  );
  $("summary-note").hidden = true;
}

function statusText(row) {
  if (row.status === "finished") return "Finished";
  if (OUT.has(row.status)) return row.status;
  const where = row.progress_m === null ? "" : ` at ${formatDistance(row.progress_m)}`;
  return over ? `Did not reach the finish${where}` : `Racing${where}`;
}

function renderResults() {
  const rows = page.results.map((r) =>
    el(
      "tr",
      { dataset: { bib: r.bib, riderId: r.rider_id }, class: r.time_ms === null && "unplaced" },
      el("td", { class: "num rank", text: r.rank === null ? "–" : String(r.rank) }),
      el("td", { class: "num", text: String(r.bib) }),
      el("td", { class: "name", text: r.name || "—" }),
      el("td", { class: "num time", text: formatDuration(r.time_ms) }),
      el("td", { class: "num gap", text: r.rank === 1 ? "" : behind(r.gap_ms) }),
      el("td", { class: "status", text: statusText(r) }),
      el("td", { class: "num", text: r.penalty_s ? `+${r.penalty_s} s` : "" }),
    ),
  );
  $("results-rows").replaceChildren(...rows);
  $("results").hidden = !rows.length;
  setText($("results-note"), rows.length ? "Penalties are in the times." : "Nobody raced.");
}

// -- statistics and splits ----------------------------------------------------------

function climbsText(climbs) {
  return climbs
    .filter((c) => c.time_ms !== null)
    .map((c) => {
      const vam = c.vam_m_h === null ? "" : `, ${formatNumber(c.vam_m_h)} m/h`;
      const rank = c.rank === null ? "" : ` (#${c.rank})`;
      return `${c.name}: ${formatDuration(c.time_ms)}${vam}${rank}`;
    })
    .join("; ");
}

function inResultOrder(rows) {
  const order = new Map(page.results.map((r, i) => [r.rider_id, i]));
  const at = (row) => order.get(row.rider_id) ?? Infinity;
  return [...rows].sort((a, b) => at(a) - at(b) || a.bib - b.bib);
}

function renderStats() {
  const rows = inResultOrder(page.stats).map((s) =>
    el(
      "tr",
      { dataset: { bib: s.bib } },
      el("td", { class: "num", text: String(s.bib) }),
      el("td", { class: "name", text: riderName(s.rider_id) }),
      el("td", { class: "num", text: formatKm(s.distance_m) }),
      el("td", { class: "num", text: formatDuration(s.moving_ms) }),
      el("td", { class: "num", text: formatDuration(s.elapsed_ms) }),
      el("td", { class: "num avg", text: formatNumber(s.avg_moving_speed_kmh, 1) }),
      el("td", { class: "num", text: formatNumber(s.max_speed_kmh, 1) }),
      el("td", { class: "num", text: `${formatNumber(s.elevation_gain_m)} m` }),
      el("td", { class: "climbs", text: climbsText(s.climbs) || "–" }),
    ),
  );
  $("stats-rows").replaceChildren(...rows);
  $("stats").hidden = !rows.length;
  const note = rows.length ? "Moving time counts the time spent riding." : "No fix was recorded.";
  setText($("stats-note"), note);
}

function renderSplits() {
  const riders = inResultOrder(page.stats);
  const checkpoints = riders.length ? riders[0].splits : [];
  if (!checkpoints.length) {
    $("splits").hidden = true;
    setText($("splits-note"), "This course has no checkpoints.");
    return;
  }
  const places = checkpoints.map((_, k) => {
    const times = riders.map((r) => r.splits[k].t_ms).filter((t) => t !== null);
    // A rider's place: one more than the riders through earlier (ties share a place).
    const place = (r) => 1 + times.filter((t) => t < r.splits[k].t_ms).length;
    return new Map(riders.map((r) => [r.rider_id, place(r)]));
  });
  const heading = (label, cls = "num") => el("th", { scope: "col", class: cls, text: label });
  $("splits-head").replaceChildren(
    heading("Bib"),
    heading("Rider", ""),
    ...checkpoints.map((cp) => heading(`${cp.name} (${formatDistance(cp.distance_m)})`)),
    heading("Finish"),
  );
  const rows = riders.map((r) => {
    const result = page.byRider.get(r.rider_id);
    const cells = r.splits.map((s, k) => {
      const place = places[k].get(r.rider_id);
      const value = s.t_ms === null ? "–" : `${formatDuration(s.elapsed_ms)} (${place})`;
      return el("td", { class: "num", text: value });
    });
    const finish = result && result.time_ms !== null ? formatDuration(result.time_ms) : "–";
    return el(
      "tr",
      { dataset: { bib: r.bib } },
      el("td", { class: "num", text: String(r.bib) }),
      el("th", { scope: "row", class: "name", text: riderName(r.rider_id) }),
      ...cells,
      el("td", { class: "num", text: finish }),
    );
  });
  $("splits-rows").replaceChildren(...rows);
  $("splits").hidden = false;
  setText($("splits-note"), "Time from the start at each checkpoint, and the place there.");
}

// -- comparison charts --------------------------------------------------------------

function colourOf(riderId) {
  const i = page.compared.indexOf(riderId);
  return i < 0 ? "" : `c${i + 1}`;
}

function renderPicker() {
  const full = page.compared.length >= COMPARE_MAX;
  const labels = page.results.map((r) => {
    const chosen = page.compared.includes(r.rider_id);
    const input = el("input", {
      type: "checkbox",
      value: String(r.rider_id),
      id: `compare-${r.rider_id}`,
      checked: chosen,
      disabled: full && !chosen,
    });
    input.addEventListener("change", () => compare(r.rider_id, input.checked));
    const swatch = el("span", { class: `swatch ${colourOf(r.rider_id)}`, "aria-hidden": "true" });
    return el("label", { class: "inline", for: input.id }, input, swatch, riderLabel(r.rider_id));
  });
  $("compare-riders").replaceChildren(...labels);
  $("compare-pick").hidden = !labels.length;
}

function compare(riderId, chosen) {
  const others = page.compared.filter((id) => id !== riderId);
  page.compared = chosen ? [...others, riderId] : others;
  renderPicker();
  renderCharts();
  renderReplay();
  $(`compare-${riderId}`).focus();
}

/** Time behind the fastest rider at evenly spaced distances, from the tracks. */
function gapSeries(geometry) {
  const distances = [];
  for (let k = 0; k <= GAP_POINTS; k++) distances.push((geometry.finish * k) / GAP_POINTS);
  const times = new Map();
  for (const track of page.tracks.riders) {
    times.set(track.riderId, distances.map((d) => track.timeAt(d)));
  }
  const fastest = distances.map((_, k) => {
    const known = [...times.values()].map((ts) => ts[k]).filter((t) => t !== null);
    return known.length ? Math.min(...known) : null;
  });
  return page.compared.map((id) => {
    const points = [];
    (times.get(id) || []).forEach((t, k) => {
      if (t !== null && fastest[k] !== null) points.push([distances[k], (t - fastest[k]) / 1000]);
    });
    return { label: riderLabel(id), cls: colourOf(id), bib: page.byRider.get(id)?.bib, points };
  });
}

function renderGapChart() {
  const figure = $("gap-chart");
  const geometry = page.view.geometry;
  const usable = page.tracks && !page.tracks.empty && geometry && geometry.finish > 0;
  if (!usable || !page.compared.length) {
    figure.replaceChildren(figure.querySelector("figcaption"));
    if (!page.results.length) return "There is nobody to compare.";
    if (!page.compared.length) return "Pick riders to compare.";
    return page.tracks ? "There are no tracks to compare." : "";
  }
  const series = gapSeries(geometry);
  const last = series.map((s) => {
    const end = s.points.at(-1);
    return `${s.label} ${end ? behind(end[1] * 1000) || "fastest" : "no data"}`;
  });
  lineChart(figure, {
    series,
    marks: geometry.checkpoints.map((cp) => ({ x: cp.distance_m, label: cp.name })),
    xMax: geometry.finish,
    xFormat: formatDistance,
    yFormat: (s) => (s ? `+${formatDuration(s * 1000)}` : "0"),
    yTitle: "behind",
    summary: `Time behind the fastest along the course; at the end: ${last.join(", ")}.`,
  });
  return "";
}

function renderSpeedChart() {
  const figure = $("speed-chart");
  const stats = new Map(page.stats.map((s) => [s.rider_id, s]));
  const rows = page.compared.map((id) => ({
    label: riderLabel(id),
    cls: colourOf(id),
    value: stats.get(id)?.avg_moving_speed_kmh ?? null,
    extra: stats.get(id)?.max_speed_kmh ?? null,
  }));
  if (!rows.length || !page.stats.length) {
    figure.replaceChildren(figure.querySelector("figcaption"));
    return;
  }
  const said = rows.map((r) => {
    return `${r.label} ${formatNumber(r.value, 1)} (top ${formatNumber(r.extra, 1)})`;
  });
  barChart(figure, {
    rows,
    format: (v) => formatNumber(v, v > 0 && v < 10 ? 1 : 0),
    valueName: "average moving speed",
    extraName: "top speed",
    summary: `Average moving speed in km/h: ${said.join(", ")}.`,
  });
}

function renderCharts() {
  const note = renderGapChart();
  renderSpeedChart();
  setText($("charts-note"), note);
}

// -- the replay ---------------------------------------------------------------------

function clockText(t) {
  return `${formatDuration(Math.max(0, t - startsAt))} after the start · ${formatTime(t)}`;
}

function finishedBy(riderId, t) {
  const result = page.byRider.get(riderId);
  return Boolean(result && result.finish_ms !== null && t >= result.finish_ms);
}

function renderReplay() {
  const clock = page.clock;
  if (!clock) return;
  const positions = page.tracks.positionsAt(clock.t);
  page.view.show(
    positions.map((p) => ({
      ...p,
      title: riderLabel(p.riderId),
      classes: {
        finished: finishedBy(p.riderId, clock.t),
        out: OUT.has(page.byRider.get(p.riderId)?.status) && p.ended,
        stale: p.hole,
        compared: page.compared.includes(p.riderId),
      },
    })),
  );
  const finish = page.view.geometry ? page.view.geometry.finish : null;
  const items = positions.slice(0, MOMENT_SHOWN).map((p) => {
    let where = formatDistance(p.progress_m);
    if (finishedBy(p.riderId, clock.t)) where = "finished";
    else if (finish) where = `${formatDistance(Math.max(0, finish - p.progress_m))} to go`;
    if (p.hole) where += " (no position for a while)";
    return el(
      "li",
      { dataset: { bib: p.bib } },
      el("span", { class: "who", text: riderLabel(p.riderId) }),
      el("span", { class: "where", text: where }),
    );
  });
  if (!items.length) items.push(el("li", { class: "note", text: "Nobody has started yet." }));
  $("moment").replaceChildren(...items);
  const scrub = $("scrub");
  const value = String(Math.round(clock.fraction * Number(scrub.max)));
  if (scrub.value !== value) scrub.value = value;
  scrub.setAttribute("aria-valuetext", clockText(clock.t));
  setText($("replay-clock"), clockText(clock.t));
  const play = $("play");
  setText(play, clock.playing ? "Pause" : clock.t >= clock.end ? "Play again" : "Play");
  play.setAttribute("aria-pressed", String(clock.playing));
}

function animate(now) {
  page.frameRequest = null;
  const playing = page.clock.tick(now);
  renderReplay();
  if (playing) page.frameRequest = requestAnimationFrame(animate);
}

function togglePlay() {
  const clock = page.clock;
  if (clock.playing) clock.pause();
  else {
    clock.play(performance.now());
    if (page.frameRequest === null) page.frameRequest = requestAnimationFrame(animate);
  }
  renderReplay();
}

function seek(t) {
  page.clock.seek(t);
  if (page.clock.playing) page.clock.lastTick = performance.now();
  renderReplay();
}

/** Space plays or pauses; arrows move 10 s (1 min with Shift); Home and End jump. */
function onReplayKey(event) {
  const target = event.target;
  const typing = target instanceof HTMLSelectElement || target instanceof HTMLInputElement;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const clock = page.clock;
  const step = event.shiftKey ? 60000 : 10000;
  if (event.key === " " && !(target instanceof HTMLButtonElement) && !typing) togglePlay();
  else if (event.key === "ArrowLeft" && !typing) seek(clock.t - step);
  else if (event.key === "ArrowRight" && !typing) seek(clock.t + step);
  else if (event.key === "Home" && !typing) seek(clock.start);
  else if (event.key === "End" && !typing) seek(clock.end);
  else return;
  event.preventDefault();
}

function setUpReplay() {
  const tracks = page.tracks;
  if (tracks.empty) {
    setText($("replay-note"), "No position was recorded: there is nothing to replay.");
    return;
  }
  page.clock = new ReplayClock(tracks.start, tracks.end);
  page.clock.setSpeed(Number($("speed").value));
  $("replay-controls").hidden = false;
  $("replay-keys").hidden = false;
  $("play").addEventListener("click", togglePlay);
  $("speed").addEventListener("change", (event) => {
    page.clock.setSpeed(Number(event.target.value));
    if (page.clock.playing) page.clock.lastTick = performance.now();
  });
  $("scrub").addEventListener("input", (event) => {
    const scrub = event.target;
    const { start, end } = page.clock;
    seek(start + (Number(scrub.value) / Number(scrub.max)) * (end - start));
  });
  document.querySelector(".replay-panel").addEventListener("keydown", onReplayKey);
  const every = tracks.stepS === 1 ? "every second" : `every ${tracks.stepS} s`;
  setText(
    $("replay-note"),
    `Positions ${every}, in between as if riding steadily; greyed: no position for a while.`,
  );
  renderReplay();
}

// -- start --------------------------------------------------------------------------

async function load() {
  localizeTimes(root);
  page.view = new CourseView($("replay-map"), $("replay-profile"), {
    label: "Course map with every rider where they were at the replay's moment",
  });
  const [race, results] = await Promise.all([
    api(`/api/races/${raceId}`),
    api(`/api/races/${raceId}/results`),
  ]);
  page.view.setCourse(race.course);
  page.results = results;
  page.byRider = new Map(results.map((r) => [r.rider_id, r]));
  page.compared = results.slice(0, COMPARE_FIRST).map((r) => r.rider_id);
  renderResults();
  renderPicker();
  const [stats, summary, track] = await Promise.allSettled([
    api(`/api/races/${raceId}/stats`),
    api(`/api/races/${raceId}/summary`),
    api(`/api/races/${raceId}/track?step_s=${TRACK_STEP_S}`),
  ]);
  if (summary.status === "fulfilled") renderSummary(summary.value);
  else setText($("summary-note"), `The summary is not available: ${summary.reason.message}.`);
  if (stats.status === "fulfilled") {
    page.stats = stats.value;
    renderStats();
    renderSplits();
  } else {
    setText($("stats-note"), `The statistics are not available: ${stats.reason.message}.`);
    setText($("splits-note"), "");
  }
  if (track.status === "fulfilled") {
    page.tracks = new RaceTracks(track.value);
    setUpReplay();
  } else {
    setText($("replay-note"), `The replay is not available: ${track.reason.message}.`);
  }
  renderCharts();
  let width = $("gap-chart").clientWidth;
  new ResizeObserver(() => {
    const now = $("gap-chart").clientWidth;
    if (now !== width) {
      width = now;
      renderCharts(); // the charts are drawn at their box's width
    }
  }).observe($("gap-chart"));
}

load().catch((error) => {
  setText($("results-note"), `The race could not be loaded: ${error.message}.`);
});
