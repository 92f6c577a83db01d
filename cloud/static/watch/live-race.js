// A race as it happens: the course with every rider on it, the leaderboard, the groups,
// the elevation profile and the checkpoint splits, live from a relay of the race.
//
// The cloud says where the race is relayed (GET /api/races/{id}/relays); LiveFeed
// (/static/shared/live.js, the relay page's own) connects to the freshest relay over
// WebTransport with its certificate hash, falls back to the WebSocket, and reconnects
// with backoff, moving on to another relay when one delivers nothing. Names come from
// the start list, splits from the cloud's history (both refreshed while the page shows).

import { api } from "/static/common/api.js";
import { $, every, formatDuration, formatTime } from "/static/common/ui.js";
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
import { RACE_STATUS } from "/static/shared/frames.js";
import { LiveFeed, WEBSOCKET, WEBTRANSPORT } from "/static/shared/live.js";
import { CourseView } from "./course-view.js";
import { pickRelay, relayTarget, targetOrigins } from "./relays.js";
import { localizeTimes } from "./times.js";

const NAMES_EVERY_MS = 60000;
const SPLITS_EVERY_MS = 30000;
const LATE_S = 5; // no frame for this long: say so
const GROUP_BIBS_SHOWN = 12;
const SPLITS_SHOWN = 10;
const RELOAD_GUARD_MS = 60000;
const TRANSPORT_LABEL = { [WEBTRANSPORT]: "WebTransport", [WEBSOCKET]: "WebSocket" };
const OUT = new Set(["dnf", "dsq", "dns"]);
const OVER = new Set(["finished", "results_published"]);
const STATE_LABEL = {
  scheduled: "Scheduled",
  live: "Live",
  neutralised: "Neutralised",
  finished: "Finished",
  published: "Results published",
};
const KIND_LABEL = {
  sprint: "Sprint",
  climb: "Climb",
  feed: "Feed zone",
  intermediate: "Intermediate",
  finish: "Finish",
};

const root = $("race");
const raceId = Number(root.dataset.raceId);
const allowedOrigins = new Set(JSON.parse(root.dataset.relayOrigins || "[]"));
const view = new CourseView($("map"), $("profile"));
const app = {
  race: null,
  frame: null,
  frameAt: 0,
  names: new Map(),
  selected: null,
  rows: new Map(),
  stats: null,
  feed: null,
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// -- the race and where to watch it -------------------------------------------------

function showRace(race) {
  app.race = race;
  setText($("race-title"), race.name);
  document.title = `${race.name} live · Gruppetto`;
  const badge = $("race-state");
  badge.className = `badge state-${race.state}`;
  setText(badge, STATE_LABEL[race.state] || race.state);
  const before = view.geometry;
  if (view.setCourse(race.course) !== before) {
    render();
    if (app.stats) renderSplits();
  }
  $("over").hidden = !(race.state === "finished" || race.state === "published");
}

/** Reload once (not more than once a minute) so the page may connect to a new address. */
function reloadForNewAddress() {
  const key = `gruppetto-watch-reload-${raceId}`;
  const last = Number(sessionStorage.getItem(key) || 0);
  if (Date.now() - last < RELOAD_GUARD_MS) return false;
  sessionStorage.setItem(key, String(Date.now()));
  location.reload();
  return true;
}

async function getTarget({ failures }) {
  const [race, relays] = await Promise.all([
    api(`/api/races/${raceId}`),
    api(`/api/races/${raceId}/relays`),
  ]);
  showRace(race);
  const relay = pickRelay(relays, failures);
  if (!relay) {
    throw new Error(
      relays.length
        ? "no relay of this race has reported to the cloud in the last minute"
        : "no relay serves this race yet",
    );
  }
  const target = relayTarget(relay, raceId);
  if (targetOrigins(target).some((origin) => !allowedOrigins.has(origin))) {
    // The page's Content Security Policy names the relays' addresses it was served with.
    const reloading = reloadForNewAddress();
    throw new Error(
      `${target.name} has an address this page did not know` +
        (reloading ? ": reloading the page" : ": reload the page to watch it"),
    );
  }
  return target;
}

async function loadNames() {
  const riders = await api(`/api/races/${raceId}/riders`);
  app.names = new Map(riders.map((r) => [r.bib, r.name]));
  render();
}

async function loadSplits() {
  try {
    app.stats = await api(`/api/races/${raceId}/stats`);
    renderSplits();
  } catch (error) {
    setText($("splits-note"), `The splits are not available right now (${error.message}).`);
  }
}

// -- drawing ------------------------------------------------------------------------

function render() {
  if (app.feed) renderConnection(app.feed.state);
  const frame = app.frame;
  if (!frame) return;
  const since = (performance.now() - app.frameAt) / 1000;
  setText($("board-note"), `${raceStatusLabel(frame)}: ${frame.riders.length} riders.`);
  const finish = view.geometry ? view.geometry.finish : 0;
  const lines = leaderboard(frame, finish, since);
  renderBoard(lines);
  renderMarkers(lines);
  renderGroups(frame);
  if (OVER.has(RACE_STATUS[frame.race_status])) $("over").hidden = false;
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
  let via = "";
  if (state.phase === "live" && state.target) via = `from relay ${state.target.name}`;
  else if (state.phase === "reconnecting" && state.detail) via = state.detail;
  setText($("via"), via);
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
    const stale = line.stale && !OUT.has(status);
    setText(cells[0], String(line.position));
    setText(cells[2].firstChild, app.names.get(r.bib) || "—");
    setText(cells[3], line.position === 1 && r.gap_ds === 0 ? "Leader" : formatGap(r.gap_ds));
    // A stale rider's speed is not their speed now: no figure rather than an old one.
    setText(cells[4], stale || r.fix_age_s >= NO_FIX_S ? "–" : formatSpeed(r.speed_cms));
    setText(cells[5], formatDistance(line.toGo));
    const parts = [RIDER_STATUS_LABEL[status]];
    if (stale) parts.push(line.age === null ? "no fix yet" : `last fix ${formatAge(line.age)} ago`);
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

function renderMarkers(lines) {
  const riders = [];
  for (const line of lines) {
    const r = line.rider;
    const status = riderStatusName(r);
    if (r.fix_age_s >= NO_FIX_S || status === "dns") continue; // never located: not drawn
    const onRoad = status === "racing" || status === "stopped";
    riders.push({
      ...r,
      title: `${r.bib} ${app.names.get(r.bib) || ""}`.trim(),
      classes: {
        front: r.group === 0 && onRoad,
        stale: line.stale,
        out: OUT.has(status),
        finished: status === "finished",
        selected: app.selected === r.bib,
      },
    });
  }
  view.show(riders);
}

function renderGroups(frame) {
  const items = roadGroups(frame).map((group, i) => {
    const item = el("li");
    item.append(el("strong", "", group.role || (i === 0 ? "Front group" : `Group ${i + 1}`)));
    const count = group.riders.length;
    item.append(el("span", "size", `${count} ${count === 1 ? "rider" : "riders"}`));
    item.append(el("span", "gap", i === 0 ? "" : formatGap(group.gapDs)));
    const bibs = group.riders.slice(0, GROUP_BIBS_SHOWN).map((r) => r.bib);
    const more = count > GROUP_BIBS_SHOWN ? ` and ${count - GROUP_BIBS_SHOWN} more` : "";
    item.append(el("span", "bibs", `Bibs ${bibs.join(", ")}${more}`));
    return item;
  });
  if (!items.length) items.push(el("li", "note", "Nobody is on the road."));
  $("groups").replaceChildren(...items);
}

function renderSplits() {
  const box = $("checkpoint-splits");
  const geometry = view.geometry;
  const checkpoints = geometry ? [...geometry.checkpoints] : [];
  checkpoints.sort((a, b) => a.distance_m - b.distance_m);
  if (!checkpoints.length) {
    box.replaceChildren();
    setText($("splits-note"), geometry ? "This course has no checkpoints." : "");
    return;
  }
  const riders = app.stats || [];
  const sections = checkpoints.map((cp) => {
    const passages = [];
    for (const rider of riders) {
      const split = rider.splits.find((s) => s.name === cp.name);
      if (split && split.t_ms !== null) passages.push({ bib: rider.bib, ...split });
    }
    passages.sort((a, b) => a.t_ms - b.t_ms || a.bib - b.bib);
    const section = el("section", "split");
    const heading = el("h3", "", cp.name);
    const kind = KIND_LABEL[cp.kind] || cp.kind;
    heading.append(el("span", "kind", `${kind} · ${formatDistance(cp.distance_m)}`));
    section.append(heading);
    const through = `${passages.length} of ${riders.length} riders through`;
    section.append(el("p", "note", passages.length ? through : "Nobody has passed yet."));
    if (passages.length) {
      const list = el("ol", "passages");
      for (const [i, p] of passages.slice(0, SPLITS_SHOWN).entries()) {
        const item = el("li");
        item.dataset.bib = String(p.bib);
        const who = app.names.get(p.bib) || "—";
        item.append(el("span", "bib-label", `#${p.bib}`), el("span", "who", who));
        const first = passages[0];
        const time = i ? `+${formatDuration(p.t_ms - first.t_ms)}` : formatDuration(p.elapsed_ms);
        const at = el("span", "time", time);
        at.title = `at ${formatTime(p.t_ms)}`;
        item.append(at);
        list.append(item);
      }
      section.append(list);
    }
    return section;
  });
  box.replaceChildren(...sections);
  setText($("splits-note"), `From the cloud's record of every fix, at ${formatTime(Date.now())}.`);
}

// -- start --------------------------------------------------------------------------

localizeTimes(root);
$("retry").addEventListener("click", () => app.feed && app.feed.retryNow());
window.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && app.selected !== null) {
    app.selected = null;
    render();
  }
});
app.feed = new LiveFeed({
  raceId,
  getTarget,
  onFrame: (frame) => {
    app.frame = frame;
    app.frameAt = performance.now();
    render();
  },
  onState: renderConnection,
});
app.feed.start();
setInterval(render, 1000);
every(NAMES_EVERY_MS, loadNames);
every(SPLITS_EVERY_MS, loadSplits);
