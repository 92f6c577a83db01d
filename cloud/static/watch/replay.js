// The replay's model: every rider's track from GET /api/races/{id}/track, positions at
// any moment by interpolating between samples, and a clock that plays at 1× to 60×.
// No DOM here: past-race.js draws what `positionsAt` says.

/** Samples of one rider further apart than this are a hole: the rider is held, greyed. */
export const HOLE_MS = 60000;
export const SPEEDS = [1, 2, 5, 10, 30, 60];

function lastAtOrBefore(times, t) {
  let lo = 0;
  let hi = times.length - 1;
  if (hi < 0 || t < times[0]) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * One rider's track: `{rider_id, bib, t_ms, lat_e7, lon_e7, progress_m}` (lists, oldest
 * first). `at(t)` is `{lat_e7, lon_e7, progress_m, hole, ended}` at time `t`, or null
 * before the rider's first sample; after the last one the rider stays there (`ended`).
 */
export class RiderTrack {
  constructor(track, holeMs = HOLE_MS) {
    this.riderId = track.rider_id;
    this.bib = track.bib;
    this.t = track.t_ms;
    this.lat = track.lat_e7;
    this.lon = track.lon_e7;
    this.progress = track.progress_m;
    this.holeMs = holeMs;
  }

  get first() {
    return this.t.length ? this.t[0] : null;
  }

  get last() {
    return this.t.length ? this.t[this.t.length - 1] : null;
  }

  at(t) {
    const i = lastAtOrBefore(this.t, t);
    if (i < 0) return null;
    const here = {
      lat_e7: this.lat[i],
      lon_e7: this.lon[i],
      progress_m: this.progress[i],
      hole: false,
      ended: i === this.t.length - 1,
    };
    if (here.ended) return here;
    const span = this.t[i + 1] - this.t[i];
    if (span > this.holeMs) return { ...here, hole: true }; // no news: held where last seen
    const f = span > 0 ? (t - this.t[i]) / span : 0;
    return {
      ...here,
      lat_e7: here.lat_e7 + f * (this.lat[i + 1] - here.lat_e7),
      lon_e7: here.lon_e7 + f * (this.lon[i + 1] - here.lon_e7),
      progress_m: here.progress_m + f * (this.progress[i + 1] - here.progress_m),
    };
  }

  /** When the rider first reached `distance` (interpolated), or null if they never did. */
  timeAt(distance) {
    const p = this.progress;
    for (let i = 0; i < p.length; i++) {
      if (p[i] < distance) continue;
      if (i === 0) return p[0] === distance ? this.t[0] : null;
      const f = (distance - p[i - 1]) / (p[i] - p[i - 1]);
      return this.t[i - 1] + f * (this.t[i] - this.t[i - 1]);
    }
    return null;
  }
}

/** Everyone's tracks; `positionsAt(t)`: `[{bib, riderId, ...at(t)}]`, furthest first. */
export class RaceTracks {
  constructor(answer) {
    this.stepS = answer.step_s;
    this.start = answer.start_ms;
    this.end = answer.end_ms;
    const holeMs = Math.max(HOLE_MS, 3 * answer.step_s * 1000);
    this.riders = answer.riders.map((r) => new RiderTrack(r, holeMs));
  }

  get empty() {
    return this.start === null || !this.riders.length;
  }

  positionsAt(t) {
    const out = [];
    for (const rider of this.riders) {
      const at = rider.at(t);
      if (at) out.push({ bib: rider.bib, riderId: rider.riderId, ...at });
    }
    return out.sort((a, b) => b.progress_m - a.progress_m || a.bib - b.bib);
  }
}

/**
 * A replay clock between `start` and `end` (ms of race time). `tick(nowMs)` advances it
 * by the real time since the last tick times `speed` while playing, and stops at the end.
 * The clock is given the time (tests and the page's animation frames): it reads none.
 */
export class ReplayClock {
  constructor(start, end) {
    this.start = start;
    this.end = Math.max(end, start);
    this.t = start;
    this.speed = 10;
    this.playing = false;
    this.lastTick = null;
  }

  get fraction() {
    return this.end > this.start ? (this.t - this.start) / (this.end - this.start) : 0;
  }

  play(nowMs) {
    if (this.t >= this.end) this.t = this.start; // played to the end: from the start again
    this.playing = true;
    this.lastTick = nowMs;
  }

  pause() {
    this.playing = false;
    this.lastTick = null;
  }

  seek(t) {
    this.t = Math.min(Math.max(t, this.start), this.end);
  }

  seekFraction(f) {
    this.seek(this.start + f * (this.end - this.start));
  }

  setSpeed(speed) {
    this.speed = speed;
  }

  /** Advance; true while still playing. */
  tick(nowMs) {
    if (!this.playing) return false;
    if (this.lastTick !== null) this.seek(this.t + (nowMs - this.lastTick) * this.speed);
    this.lastTick = nowMs;
    if (this.t >= this.end) this.pause();
    return this.playing;
  }
}
