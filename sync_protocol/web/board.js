// What the leaderboard and the groups panel show, from a decoded frame: pure functions.
//
// The order is the relay's (edge_relay/standings.py): finishers by time at the line plus
// penalties, then everyone else by distance along the course, then DNF, DSQ, DNS.

import { RACE_STATUS, RIDER_STATUS } from "./frames.js";

export const STALE_S = 10; // a rider whose last fix is older than this is greyed
export const NO_FIX_S = 65535; // fix_age_s saturates here: no fix yet, or a very old one

const FINISHED = RIDER_STATUS.indexOf("finished");
const ON_ROAD = new Set([RIDER_STATUS.indexOf("racing"), RIDER_STATUS.indexOf("stopped")]);
const UNCLASSIFIED = ["dnf", "dsq", "dns"].map((name) => RIDER_STATUS.indexOf(name));

export const RIDER_STATUS_LABEL = {
  racing: "Racing",
  finished: "Finished",
  dnf: "DNF",
  dns: "DNS",
  dsq: "DSQ",
  stopped: "Stopped",
  no_signal: "No signal",
};

export const RACE_STATUS_LABEL = {
  scheduled: "Scheduled",
  live: "Live",
  neutralised: "Neutralised",
  finished: "Finished",
  results_published: "Results published",
};

export const GROUP_ROLE_LABEL = {
  "head of race": "Head of race",
  breakaway: "Breakaway",
  chase: "Chase",
  peloton: "Peloton",
  group: "Group",
  straggler: "Straggler",
};

export function riderStatusName(rider) {
  return RIDER_STATUS[rider.status];
}

export function raceStatusLabel(frame) {
  return RACE_STATUS_LABEL[RACE_STATUS[frame.race_status]] || "";
}

function rank(rider) {
  if (rider.status === FINISHED) {
    const time = rider.gap_ds === null ? Infinity : rider.gap_ds * 100 + rider.penalty_s * 1000;
    return [0, time, rider.bib];
  }
  const out = UNCLASSIFIED.indexOf(rider.status);
  if (out >= 0) return [2 + out, -rider.progress_m, rider.bib];
  return [1, -rider.progress_m, rider.bib];
}

function compareRanks(a, b) {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

/** Seconds since the rider's last fix, now: the frame's age plus the time since it came. */
export function fixAge(rider, sinceFrameS) {
  if (rider.fix_age_s >= NO_FIX_S) return null;
  return rider.fix_age_s + Math.max(0, Math.floor(sinceFrameS));
}

/** Leaderboard lines `{position, rider, toGo, age, stale}`, position 1 first. */
export function leaderboard(frame, finishM, sinceFrameS) {
  const keyed = frame.riders.map((rider) => [rank(rider), rider]);
  keyed.sort((a, b) => compareRanks(a[0], b[0]));
  return keyed.map(([, rider], i) => {
    const age = fixAge(rider, sinceFrameS);
    const inRace = !UNCLASSIFIED.includes(rider.status) && rider.status !== FINISHED;
    return {
      position: i + 1,
      rider,
      toGo: finishM > 0 && inRace ? Math.max(0, finishM - rider.progress_m) : null,
      age,
      stale: age === null || age > STALE_S,
    };
  });
}

/**
 * Groups on the road, front first: `{index, role, riders, gapDs}`. Membership and gaps
 * come from the frame. The role (breakaway, peloton, ...) comes from the relay's
 * standings when given (an array: a group there holding this group's front rider), else
 * it is worked out here the way the relay does (`inferRoles`).
 */
export function roadGroups(frame, standingsGroups = null) {
  const road = frame.riders
    .filter((r) => ON_ROAD.has(r.status))
    .sort((a, b) => b.progress_m - a.progress_m || a.bib - b.bib);
  const groups = [];
  for (const rider of road) {
    let group = groups[groups.length - 1];
    if (!group || group.index !== rider.group) {
      group = { index: rider.group, riders: [], role: null, gapDs: null };
      groups.push(group);
    }
    group.riders.push(rider);
  }
  const frontGap = groups.length ? groups[0].riders[0].gap_ds : null;
  for (const group of groups) {
    const head = group.riders[0];
    if (head.gap_ds !== null && frontGap !== null) {
      group.gapDs = Math.max(0, head.gap_ds - frontGap);
    }
    if (standingsGroups) {
      const known = standingsGroups.find((g) => (g.bibs || []).includes(head.bib));
      group.role = known ? GROUP_ROLE_LABEL[known.role] || known.role : null;
    }
  }
  if (!standingsGroups) inferRoles(groups);
  return groups;
}

export const PELOTON_MIN_RIDERS = 3; // sync_protocol/race/settings.py peloton_min_riders

/**
 * Name groups (front first) as sync_protocol/race/groups.py does: the largest group of
 * at least PELOTON_MIN_RIDERS is the peloton (the front-most of equals); the front group
 * is the breakaway ahead of it, else the head of race; groups between them chase; behind
 * the peloton come further groups and lone stragglers.
 */
export function inferRoles(groups) {
  let biggest = -1;
  groups.forEach((group, i) => {
    if (biggest < 0 || group.riders.length > groups[biggest].riders.length) biggest = i;
  });
  const peloton =
    biggest >= 0 && groups[biggest].riders.length >= PELOTON_MIN_RIDERS ? biggest : null;
  groups.forEach((group, i) => {
    let role = "group";
    if (i === peloton) role = "peloton";
    else if (i === 0) role = peloton === null ? "head of race" : "breakaway";
    else if (peloton !== null && i < peloton) role = "chase";
    else if (group.riders.length < 2) role = "straggler";
    group.role = GROUP_ROLE_LABEL[role];
  });
  return groups;
}

/** "+1:23" for a gap in tenths of a second; "–" when unknown. */
export function formatGap(ds) {
  if (ds === null || ds === undefined) return "–";
  const total = Math.round(ds / 10);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `+${h}:${String(m).padStart(2, "0")}:${s}` : `+${m}:${s}`;
}

export function formatSpeed(cms) {
  return (cms * 0.036).toFixed(1);
}

export function formatDistance(m) {
  if (m === null || m === undefined) return "–";
  return m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${Math.round(m)} m`;
}

export function formatAge(seconds) {
  if (seconds === null) return "no fix";
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  const h = Math.floor(seconds / 3600);
  return `${h} h ${Math.round((seconds % 3600) / 60)} min`;
}
