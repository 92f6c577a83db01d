// The spectator page: the relay's races, then one race live — the course with every
// rider on it, the leaderboard, the groups, the elevation profile, the checkpoint splits
// and how fresh it is.

import {
  NO_FIX_S,
  RIDER_STATUS_LABEL,
  formatAge,
  formatDistance,
  formatGap,
  formatSpeed,
  leaderboard,
  raceStatusLabel,
  riderStatusName,
  roadGroups,
} from "/static/shared/board.js";
import { CourseGeometry, fitProjection } from "/static/shared/course.js";
import { LiveFeed, WEBSOCKET, WEBTRANSPORT, relayTarget } from "/static/shared/live.js";
import { linesPassed, renderSplits } from "/static/shared/splits.js";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const MAP_WIDTH = 1000;
const MAP_MARGIN = 40;
const PROFILE_W = 1000;
const PROFILE_H = 200;
const STANDINGS_EVERY_MS = 5000;
// Splits are fetched when a frame shows a rider past a line they were not past at the last
// fetch (at most every SPLITS_MIN_MS, spread over up to SPLITS_JITTER_MS so a crowd of
// pages does not ask at the same instant), and every SPLITS_EVERY_MS for late passages.
const SPLITS_EVERY_MS = 15000;
const SPLITS_MIN_MS = 2000;
const SPLITS_JITTER_MS = 1000;
const RACES_EVERY_MS = 15000;
const LATE_S = 5; // no frame for this long: say so
const GROUP_BIBS_SHOWN = 12;
const TRANSPORT_LABEL = { [WEBTRANSPORT]: "WebTransport", [WEBSOCKET]: "WebSocket" };
const OUT = new Set(["dnf", "dsq", "dns"]);

const app = {
  info: null,
  racesKey: null,
  raceId: null,
  courseKey: null,
  geometry: null,
  projection: null,
  elevation: null, // {min, max} of the drawn profile
  frame: null,
  frameAt: 0,
  names: new Map(),
  standingsGroups: [],
  splits: null, // the last GET /api/races/{id}/splits
  splitsJson: "", // its lines as JSON
  splitsKey: "", // what the splits panel shows (skip redraws that change nothing)
  splitsSeen: -1, // linesPassed() of the frame current when they were asked for
  splitsAt: -Infinity, // performance.now() of the last request
  splitsPending: false,
  splitsOpen: new Set(), // lines whose every arrival is shown
  feed: null,
  timers: [],
  selected: null,
  rows: new Map(),
  mapDots: new Map(),
  profileDots: new Map(),
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

async function fetchJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response.json();
}

async function fetchInfo() {
  app.info = await fetchJson("/api/info");
  const uplink = app.info.uplink === "none" ? "" : ` · cloud uplink ${app.info.uplink}`;
  setText($("relay"), `Relay: ${app.info.name}${uplink}`);
  return app.info;
}

// -- routing ------------------------------------------------------------------------

function route() {
  leaveRace();
  const match = /^#race\/(\d+)$/.exec(location.hash);
  if (match) openRace(Number(match[1]));
  else showRaces();
}

async function showRaces() {
  $("race-view").hidden = true;
  $("races-view").hidden = false;
  document.title = "Gruppetto live";
  const note = $("races-note");
  try {
    const info = await fetchInfo();
    const list = $("race-list");
    const summary = info.races.map((r) => [r.id, r.name, r.state, r.riders, r.starts_at_ms]);
    const key = JSON.stringify(summary);
    app.timers.push(setTimeout(showRaces, RACES_EVERY_MS)); // races come and go
    if (key === app.racesKey) return; // unchanged: keep the list (and the focus in it)
    app.racesKey = key;
    list.replaceChildren();
    for (const race of info.races) {
      const link = el("a");
      link.href = `#race/${race.id}`;
      link.append(el("strong", "", race.name || `Race ${race.id}`));
      const starts = race.starts_at_ms ? new Date(race.starts_at_ms).toLocaleString() : "";
      const details = [race.state, `${race.riders} riders`, starts].filter(Boolean).join(" · ");
      link.append(el("span", "details", details));
      const item = el("li");
      item.append(link);
      list.append(item);
    }
    note.textContent = info.races.length ? "Pick a race to watch it live." : "No races yet.";
  } catch (error) {
    note.textContent = `The relay did not answer (${error.message}); trying again…`;
    app.racesKey = null;
    app.timers.push(setTimeout(showRaces, 3000));
  }
}

async function openRace(raceId) {
  app.raceId = raceId;
  $("races-view").hidden = true;
  $("race-view").hidden = false;
  const title = $("race-title");
  title.textContent = `Race ${raceId}`;
  title.tabIndex = -1;
  title.focus({ preventScroll: true });
  app.feed = new LiveFeed({
    raceId,
    getTarget: async () => {
      const info = await fetchInfo();
      const race = info.races.find((r) => r.id === raceId);
      if (!race) {
        setText($("race-title"), `Race ${raceId} is not on this relay`);
        throw new Error(`this relay does not serve race ${raceId}`);
      }
      showRace(race);
      return relayTarget(info, raceId);
    },
    onFrame: (frame) => {
      app.frame = frame;
      app.frameAt = performance.now();
      render();
      if (app.splits && linesPassed(frame, splitDistances()) !== app.splitsSeen) {
        requestSplits(raceId);
      }
    },
    onState: renderConnection,
  });
  app.feed.start();
  app.timers.push(setInterval(render, 1000));
  pollStandings(raceId);
  pollSplits(raceId);
}

function leaveRace() {
  if (app.feed) app.feed.stop();
  app.feed = null;
  for (const timer of app.timers) clearTimeout(timer);
  app.timers = [];
  Object.assign(app, { raceId: null, frame: null, courseKey: null, selected: null });
  app.names = new Map();
  app.standingsGroups = [];
  Object.assign(app, { splits: null, splitsJson: "", splitsKey: "", splitsSeen: -1 });
  Object.assign(app, { splitsAt: -Infinity, splitsPending: false, splitsOpen: new Set() });
  $("splits").replaceChildren();
  setText($("splits-note"), "Loading the splits…");
  for (const map of [app.rows, app.mapDots, app.profileDots]) {
    for (const node of map.values()) node.remove();
    map.clear();
  }
}

async function pollStandings(raceId) {
  if (app.raceId !== raceId) return;
  try {
    const standings = await fetchJson(`/api/races/${raceId}/standings`);
    if (app.raceId !== raceId) return;
    app.names = new Map(standings.riders.map((r) => [r.bib, r.name]));
    app.standingsGroups = standings.groups || [];
    setText($("board-note"), "");
    render();
  } catch (error) {
    setText($("board-note"), `Names are not available right now (${error.message}).`);
  }
  app.timers.push(setTimeout(() => pollStandings(raceId), STANDINGS_EVERY_MS));
}

// -- checkpoint splits --------------------------------------------------------------

function splitDistances() {
  return app.splits ? app.splits.checkpoints.map((line) => line.distance_m) : [];
}

function pollSplits(raceId) {
  if (app.raceId !== raceId) return;
  loadSplits(raceId);
  app.timers.push(setTimeout(() => pollSplits(raceId), SPLITS_EVERY_MS));
}

/** A fetch soon: after SPLITS_MIN_MS since the last one, plus jitter; one at a time. */
function requestSplits(raceId) {
  if (app.splitsPending) return;
  app.splitsPending = true;
  const wait = Math.max(0, app.splitsAt + SPLITS_MIN_MS - performance.now());
  app.timers.push(setTimeout(() => loadSplits(raceId), wait + Math.random() * SPLITS_JITTER_MS));
}

async function loadSplits(raceId) {
  if (app.raceId !== raceId) return;
  app.splitsPending = true;
  app.splitsAt = performance.now();
  const frame = app.frame; // what the answer will be compared with
  try {
    const splits = await fetchJson(`/api/races/${raceId}/splits`);
    if (app.raceId !== raceId) return;
    app.splits = splits;
    app.splitsJson = JSON.stringify(splits.checkpoints);
    app.splitsSeen = frame ? linesPassed(frame, splitDistances()) : -1;
    drawSplits();
  } catch (error) {
    if (app.raceId !== raceId) return;
    setText($("splits-note"), `The splits are not available right now (${error.message}).`);
  } finally {
    if (app.raceId === raceId) app.splitsPending = false;
  }
}

function drawSplits() {
  const splits = app.splits;
  if (!splits) return;
  // "N of M riders through": M is everyone in the race but non-starters.
  const frame = app.frame;
  const riders = frame ? frame.riders.filter((r) => riderStatusName(r) !== "dns").length : null;
  const key = `${riders}|${[...app.splitsOpen].join("\n")}|${app.splitsJson}`;
  if (key === app.splitsKey) return;
  app.splitsKey = key;
  const box = $("splits");
  renderSplits(box, splits, { riders, expanded: app.splitsOpen, onToggle: drawSplits });
  box.hidden = !splits.checkpoints.length;
  let note = "";
  if (!splits.course) note = "This race has no course yet, so there is nothing to time.";
  else if (!splits.checkpoints.length) note = "This course has no checkpoints.";
  setText($("splits-note"), note);
}

// -- the course ---------------------------------------------------------------------

function showRace(race) {
  setText($("race-title"), race.name || `Race ${race.id}`);
  document.title = `${race.name || `Race ${race.id}`} — Gruppetto live`;
  const key = race.course ? JSON.stringify(race.course) : "";
  if (key === app.courseKey) return;
  app.courseKey = key;
  app.geometry = race.course ? new CourseGeometry(race.course) : null;
  drawMap();
  drawProfile();
  for (const map of [app.mapDots, app.profileDots]) {
    for (const node of map.values()) node.remove();
    map.clear();
  }
  render();
}

function drawMap() {
  const layer = $("course-layer");
  layer.replaceChildren();
  const geometry = app.geometry;
  if (!geometry || geometry.lat.length < 2) {
    app.projection = null;
    $("map").hidden = true;
    return;
  }
  $("map").hidden = false;
  const projection = fitProjection(geometry, MAP_WIDTH, MAP_MARGIN);
  app.projection = projection;
  $("map-svg").setAttribute("viewBox", `0 0 ${projection.width} ${projection.height}`);
  $("map").style.aspectRatio = `${projection.width} / ${projection.height}`;
  const d = geometry
    .drawnIndexes(4000)
    .map((i, k) => {
      const [x, y] = projection.project(geometry.lat[i], geometry.lon[i]);
      return `${k ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
    })
    .join("");
  layer.append(svg("path", { d, class: "course-casing" }));
  layer.append(svg("path", { d, class: "course-line" }));
  for (const cp of geometry.checkpoints) {
    const [x, y] = projection.project(...geometry.pointAt(cp.distance_m));
    const mark = svg("circle", { cx: x, cy: y, r: 7, class: "checkpoint" });
    mark.append(svg("title", {}));
    mark.firstChild.textContent = `${cp.name} (${formatDistance(cp.distance_m)})`;
    layer.append(mark);
  }
  const [sx, sy] = projection.project(...geometry.pointAt(0));
  const [fx, fy] = projection.project(...geometry.pointAt(geometry.finish));
  layer.append(svg("rect", { x: fx - 9, y: fy - 9, width: 18, height: 18, class: "finish" }));
  layer.append(svg("circle", { cx: sx, cy: sy, r: 8, class: "start" }));
}

function elevationY(ele) {
  const { min, max } = app.elevation;
  return PROFILE_H - 12 - ((ele - min) / (max - min)) * (PROFILE_H - 30);
}

function drawProfile() {
  const layer = $("profile-layer");
  const axis = $("profile-axis");
  layer.replaceChildren();
  axis.replaceChildren();
  const geometry = app.geometry;
  $("profile").hidden = !geometry;
  if (!geometry) {
    setText($("profile-note"), "This race has no course yet.");
    return;
  }
  const samples = geometry.profile(500);
  let min = Math.min(...samples.map((s) => s[1]));
  let max = Math.max(...samples.map((s) => s[1]));
  if (max - min < 20) [min, max] = [(min + max) / 2 - 10, (min + max) / 2 + 10];
  app.elevation = { min, max };
  const x = (dist) => (geometry.finish > 0 ? (dist / geometry.finish) * PROFILE_W : 0);
  const line = samples.map(([dist, ele], k) => {
    return `${k ? "L" : "M"}${x(dist).toFixed(1)} ${elevationY(ele).toFixed(1)}`;
  });
  layer.append(
    svg("path", {
      d: `${line.join("")}L${PROFILE_W} ${PROFILE_H}L0 ${PROFILE_H}Z`,
      class: "terrain",
    }),
  );
  layer.append(
    svg("path", { d: line.join(""), class: "ridge", "vector-effect": "non-scaling-stroke" }),
  );
  for (const cp of geometry.checkpoints) {
    const at = x(cp.distance_m);
    layer.append(
      svg("line", {
        x1: at,
        x2: at,
        y1: 0,
        y2: PROFILE_H,
        class: "cp-line",
        "vector-effect": "non-scaling-stroke",
      }),
    );
  }
  const labels = [
    ["top left", `${Math.round(max)} m`],
    ["bottom left", `${Math.round(min)} m`],
    ["bottom right", formatDistance(geometry.finish)],
  ];
  for (const [where, text] of labels) axis.append(el("span", where, text));
  setText(
    $("profile-note"),
    geometry.hasElevation ? "" : "The course has no elevation data: the profile is flat.",
  );
}

// -- live rendering -----------------------------------------------------------------

function render() {
  if (app.feed) renderConnection(app.feed.state);
  const frame = app.frame;
  if (!frame) return;
  const since = (performance.now() - app.frameAt) / 1000;
  setText($("race-status"), raceStatusLabel(frame));
  const finish = app.geometry ? app.geometry.finish : 0;
  const lines = leaderboard(frame, finish, since);
  renderBoard(lines);
  renderMarkers(lines);
  renderGroups(frame);
  drawSplits();
}

function renderConnection(state) {
  if (!state) return;
  const box = $("connection");
  box.dataset.phase = state.phase;
  box.dataset.transport = state.transport || "";
  box.title = state.detail || "";
  let text = "Connecting…";
  if (state.phase === "live") text = `Live over ${TRANSPORT_LABEL[state.transport]}`;
  if (state.phase === "stopped") text = "Disconnected";
  if (state.phase === "reconnecting") {
    const wait = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    text = `Connection lost — reconnecting in ${wait} s (attempt ${state.attempt})`;
  }
  setText($("connection-text"), text);
  $("retry").hidden = state.phase !== "reconnecting";
  const fresh = $("freshness");
  if (!app.frame) {
    setText(fresh, "");
    return;
  }
  const age = Math.floor((performance.now() - app.frameAt) / 1000);
  fresh.classList.toggle("late", age >= LATE_S);
  setText(fresh, age >= LATE_S ? `No update for ${formatAge(age)}` : `Updated ${age} s ago`);
}

function boardRow(bib) {
  let row = app.rows.get(bib);
  if (row) return row;
  row = el("tr");
  row.dataset.bib = String(bib);
  const cells = ["num pos", "num bib-cell", "name", "num gap", "num speed", "num to-go", "status"];
  for (const cls of cells) row.append(el("td", cls));
  row.children[2].append(el("span", "who"), el("span", "sub")); // sub: status on phones
  const button = el("button", "bib", String(bib));
  button.type = "button";
  button.setAttribute("aria-pressed", "false");
  button.setAttribute("aria-label", `Rider ${bib}: show on the map`);
  button.addEventListener("click", () => {
    app.selected = app.selected === bib ? null : bib;
    render();
  });
  row.children[1].append(button);
  app.rows.set(bib, row);
  return row;
}

function renderBoard(lines) {
  const body = $("board-rows");
  const focused = document.activeElement;
  const seen = new Set();
  lines.forEach((line, i) => {
    const r = line.rider;
    seen.add(r.bib);
    const row = boardRow(r.bib);
    const cells = row.children;
    const status = riderStatusName(r);
    setText(cells[0], String(line.position));
    const stale = line.stale && !OUT.has(status);
    setText(cells[2].firstChild, app.names.get(r.bib) || "—");
    setText(cells[3], line.position === 1 && r.gap_ds === 0 ? "Leader" : formatGap(r.gap_ds));
    // A stale rider's speed is not their speed now: no figure rather than an old one.
    setText(cells[4], stale || r.fix_age_s >= NO_FIX_S ? "–" : formatSpeed(r.speed_cms));
    setText(cells[5], formatDistance(line.toGo));
    const parts = [RIDER_STATUS_LABEL[status]];
    if (stale) {
      parts.push(line.age === null ? "no fix yet" : `last fix ${formatAge(line.age)} ago`);
    }
    if (r.penalty_s) parts.push(`+${r.penalty_s} s penalty`);
    setText(cells[6], parts.join(" · "));
    setText(cells[2].lastChild, parts.join(" · "));
    row.className = `s-${status}`;
    row.classList.toggle("stale", stale);
    row.classList.toggle("selected", app.selected === r.bib);
    cells[1].firstChild.setAttribute("aria-pressed", String(app.selected === r.bib));
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  for (const [bib, row] of app.rows) {
    if (!seen.has(bib)) {
      row.remove();
      app.rows.delete(bib);
    }
  }
  if (focused && focused !== document.activeElement && body.contains(focused)) {
    focused.focus({ preventScroll: true });
  }
}

function marker(map, container, bib) {
  let dot = map.get(bib);
  if (!dot) {
    dot = el("div", "dot", String(bib));
    dot.dataset.bib = String(bib);
    container.append(dot);
    map.set(bib, dot);
  }
  return dot;
}

function place(dot, xPct, yPct) {
  const left = `${Math.min(Math.max(xPct, 0), 100).toFixed(3)}%`;
  const top = `${Math.min(Math.max(yPct, 0), 100).toFixed(3)}%`;
  if (dot.style.left !== left) dot.style.left = left;
  if (dot.style.top !== top) dot.style.top = top;
}

function renderMarkers(lines) {
  const geometry = app.geometry;
  const projection = app.projection;
  const shown = new Set();
  for (const line of [...lines].reverse()) {
    const r = line.rider;
    const status = riderStatusName(r);
    if (r.fix_age_s >= NO_FIX_S || status === "dns" || !geometry) continue;
    shown.add(r.bib);
    const classes = (dot) => {
      dot.classList.toggle("front", r.group === 0 && (status === "racing" || status === "stopped"));
      dot.classList.toggle("stale", line.stale);
      dot.classList.toggle("out", OUT.has(status));
      dot.classList.toggle("selected", app.selected === r.bib);
      dot.title = `${r.bib} ${app.names.get(r.bib) || ""}`.trim();
    };
    if (projection) {
      const dot = marker(app.mapDots, $("map-riders"), r.bib);
      const [x, y] = projection.project(r.lat_e7 / 1e7, r.lon_e7 / 1e7);
      place(dot, (x / projection.width) * 100, (y / projection.height) * 100);
      classes(dot);
    }
    const onProfile = marker(app.profileDots, $("profile-riders"), r.bib);
    const along = Math.min(Math.max(r.progress_m, 0), geometry.finish);
    const ele = geometry.elevationAt(along) ?? (app.elevation.min + app.elevation.max) / 2;
    place(onProfile, (along / geometry.finish) * 100, (elevationY(ele) / PROFILE_H) * 100);
    classes(onProfile);
  }
  for (const map of [app.mapDots, app.profileDots]) {
    for (const [bib, dot] of map) {
      if (!shown.has(bib)) {
        dot.remove();
        map.delete(bib);
      }
    }
  }
}

function renderGroups(frame) {
  const list = $("groups");
  const items = roadGroups(frame, app.standingsGroups).map((group, i) => {
    const item = el("li");
    const role = group.role || (i === 0 ? "Front group" : `Group ${i + 1}`);
    item.append(el("strong", "", role));
    const count = group.riders.length;
    item.append(el("span", "size", `${count} ${count === 1 ? "rider" : "riders"}`));
    item.append(el("span", "gap", i === 0 ? "" : formatGap(group.gapDs)));
    const bibs = group.riders.slice(0, GROUP_BIBS_SHOWN).map((r) => r.bib);
    const more = count > GROUP_BIBS_SHOWN ? ` and ${count - GROUP_BIBS_SHOWN} more` : "";
    item.append(el("span", "bibs", `Bibs ${bibs.join(", ")}${more}`));
    return item;
  });
  if (!items.length) items.push(el("li", "note", "Nobody is on the road."));
  list.replaceChildren(...items);
}

// -- start --------------------------------------------------------------------------

$("retry").addEventListener("click", () => app.feed && app.feed.retryNow());
window.addEventListener("hashchange", route);
window.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && app.selected !== null) {
    app.selected = null;
    render();
  }
});
route();
