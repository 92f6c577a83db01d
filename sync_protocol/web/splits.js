// Checkpoint splits: who crossed each line of the course (a checkpoint, a climb's top), in
// order of arrival, with the gap to the first rider across.
//
// The data is the relay's `GET /api/races/{id}/splits`:
//   {race_id, status, start_ms, course, checkpoints: [{name, kind, distance_m, top,
//    arrivals: [{position, rider_id, bib, name, t_ms, gap_ms, elapsed_ms}]}]}
// `splitsFromStats` builds the same shape from the cloud's per-rider statistics
// (`GET /api/races/{id}/stats`, whose `splits` time each checkpoint), so one rendering
// serves the relay's page and the cloud's.

import { NO_FIX_S, formatDistance, formatGap } from "./board.js";

export const SPLITS_SHOWN = 10; // arrivals listed per line until "Show all" is pressed

export const KIND_LABEL = {
  sprint: "Sprint",
  climb: "Climb",
  feed: "Feed zone",
  intermediate: "Intermediate",
  finish: "Finish",
};

/** "14:03:12": a UTC ms instant as the reader's wall-clock time. */
export function formatClock(ms) {
  return new Date(ms).toLocaleTimeString(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
}

/** "1:02:03" or "2:03" for a duration in ms (whole seconds); "−" before a negative one. */
export function formatDuration(ms) {
  const total = Math.round(Math.abs(ms) / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  const sign = ms < 0 ? "−" : "";
  return h ? `${sign}${h}:${String(m).padStart(2, "0")}:${s}` : `${sign}${m}:${s}`;
}

/**
 * The relay's shape from the cloud's per-rider stats (`[{rider_id, bib, splits: [{name,
 * kind, distance_m, t_ms, elapsed_ms}]}]`) and the course's checkpoints; `names` maps
 * bib to name. The cloud times each checkpoint (a climb's foot), not climbs' tops.
 */
export function splitsFromStats(stats, checkpoints, names = new Map()) {
  const lines = [...checkpoints].sort((a, b) => a.distance_m - b.distance_m);
  return {
    course: true,
    checkpoints: lines.map((cp) => {
      const crossed = [];
      for (const rider of stats) {
        const split = (rider.splits || []).find((s) => s.name === cp.name);
        if (split && split.t_ms !== null && split.t_ms !== undefined) {
          crossed.push({ rider, split });
        }
      }
      crossed.sort((a, b) => a.split.t_ms - b.split.t_ms || a.rider.bib - b.rider.bib);
      const first = crossed.length ? crossed[0].split.t_ms : 0;
      return {
        name: cp.name,
        kind: cp.kind,
        distance_m: cp.distance_m,
        top: false,
        arrivals: crossed.map(({ rider, split }, i) => ({
          position: i + 1,
          rider_id: rider.rider_id,
          bib: rider.bib,
          name: names.get(rider.bib) || "",
          t_ms: split.t_ms,
          gap_ms: split.t_ms - first,
          elapsed_ms: split.elapsed_ms ?? null,
        })),
      };
    }),
  };
}

/**
 * How many (rider, line) pairs a frame shows behind the riders: when it grows, someone
 * has crossed a line and the splits are worth fetching again. A rider counts a line once
 * a metre past it (frames round progress to the metre; the relay times a line from the
 * first fix beyond it).
 */
export function linesPassed(frame, distances) {
  let passed = 0;
  for (const rider of frame.riders) {
    if (rider.fix_age_s >= NO_FIX_S) continue;
    for (const distance of distances) if (rider.progress_m >= distance + 1) passed += 1;
  }
  return passed;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function lineKey(line) {
  return `${line.name}|${line.top ? "top" : "line"}`;
}

/**
 * Draw `splits` into `box`: one section a line, in course order. `riders` (optional) is
 * how many riders are in the race, for "3 of 12 riders through"; `expanded` is a Set of
 * the lines whose every arrival is shown (kept by the caller across redraws, changed by
 * each line's "Show all" button, which then calls `onToggle`). Keyboard focus on a
 * button survives the redraw.
 */
export function renderSplits(box, splits, { riders = null, expanded = new Set(), onToggle } = {}) {
  const focused = box.contains(document.activeElement) ? document.activeElement : null;
  const focusKey = focused && focused.dataset ? focused.dataset.line : undefined;
  let headingIds = 0;
  const sections = splits.checkpoints.map((line) => {
    const key = lineKey(line);
    const section = el("section", "split");
    section.dataset.line = key;
    const heading = el("h3", "", line.top ? `${line.name} — top` : line.name);
    heading.id = `${box.id || "splits"}-line-${headingIds++}`;
    section.setAttribute("aria-labelledby", heading.id);
    const kind = KIND_LABEL[line.kind] || line.kind;
    const what = line.top ? `${kind} top` : kind;
    heading.append(el("span", "kind", `${what} · ${formatDistance(line.distance_m)}`));
    section.append(heading);
    const count = line.arrivals.length;
    const through = riders ? `${count} of ${riders} riders through` : `${count} through`;
    section.append(el("p", "note through", count ? through : "Nobody has passed yet."));
    if (!count) return section;
    const open = expanded.has(key);
    const list = el("ol", "passages");
    for (const a of open ? line.arrivals : line.arrivals.slice(0, SPLITS_SHOWN)) {
      const item = el("li");
      item.dataset.bib = String(a.bib);
      item.append(el("span", "pos", `${a.position}.`), el("span", "bib-label", `#${a.bib}`));
      item.append(el("span", "who", a.name || "—"));
      const first = a.position === 1;
      const time = el("span", "time", first ? formatClock(a.t_ms) : formatGap(a.gap_ms / 100));
      const elapsed = a.elapsed_ms ?? -1;
      const raceTime = elapsed >= 0 ? `, race time ${formatDuration(elapsed)}` : "";
      time.title = `crossed at ${formatClock(a.t_ms)}${raceTime}`;
      item.append(time);
      list.append(item);
    }
    section.append(list);
    if (count > SPLITS_SHOWN) {
      const label = open ? `Show the first ${SPLITS_SHOWN}` : `Show all ${count}`;
      const button = el("button", "more", label);
      button.type = "button";
      button.dataset.line = key;
      button.setAttribute("aria-describedby", heading.id);
      button.setAttribute("aria-expanded", String(open));
      button.addEventListener("click", () => {
        if (expanded.has(key)) expanded.delete(key);
        else expanded.add(key);
        if (onToggle) onToggle(key);
      });
      section.append(button);
    }
    return section;
  });
  box.replaceChildren(...sections);
  if (focusKey !== undefined) {
    const again = box.querySelector(`button[data-line="${CSS.escape(focusKey)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}
