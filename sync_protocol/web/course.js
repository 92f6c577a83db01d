// The course as the page draws it: distances along it, elevation at a race distance,
// and a flat projection of its points into a drawing box (no tiles, no internet).
//
// Race distance is as in sync_protocol/course.py: 0 at the start, `finish` at the line,
// counted across laps; distances along the course are haversine with the same radius.

const EARTH_RADIUS_M = 6371008.8;
const RAD = Math.PI / 180;

export function haversineM(lat1, lon1, lat2, lon2) {
  const p1 = lat1 * RAD;
  const p2 = lat2 * RAD;
  const dp = p2 - p1;
  const dl = (lon2 - lon1) * RAD;
  const a = Math.sin(dp / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** A longitude difference brought into -180..180. */
export function wrapLon(delta) {
  return ((((delta + 180) % 360) + 360) % 360) - 180;
}

function firstAtLeast(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class CourseGeometry {
  /** `course` is `Course.to_dict()`: `{points: [[lat, lon, ele|null]...], laps, checkpoints}`. */
  constructor(course) {
    this.name = course.name || "";
    this.laps = course.laps || 1;
    this.checkpoints = course.checkpoints || [];
    const points = course.points;
    const n = points.length;
    this.lat = new Float64Array(n);
    this.lon = new Float64Array(n); // unwrapped: continuous across the antimeridian
    this.cum = new Float64Array(n);
    const ele = new Float64Array(n).fill(NaN);
    for (let i = 0; i < n; i++) {
      const [lat, lon, e] = points[i];
      this.lat[i] = lat;
      this.lon[i] = i ? this.lon[i - 1] + wrapLon(lon - this.lon[i - 1]) : lon;
      if (e !== null && e !== undefined) ele[i] = e;
      if (i) {
        this.cum[i] = this.cum[i - 1] + haversineM(points[i - 1][0], points[i - 1][1], lat, lon);
      }
    }
    this.hasElevation = ele.some((e) => !Number.isNaN(e));
    this.ele = fillGaps(ele);
    this.lapLength = n ? this.cum[n - 1] : 0;
    this.finish = this.lapLength * this.laps;
  }

  /** Where along the lap a race distance falls: [segment index, fraction]. */
  locate(distance) {
    const lap = this.lapLength;
    if (!(lap > 0)) return [0, 0];
    const d = Math.min(Math.max(distance, 0), this.finish);
    const along = d >= this.finish ? lap : d - Math.min(Math.floor(d / lap), this.laps - 1) * lap;
    const i = Math.min(Math.max(firstAtLeast(this.cum, along) - 1, 0), this.cum.length - 2);
    const length = this.cum[i + 1] - this.cum[i];
    const f = length > 0 ? Math.min(Math.max((along - this.cum[i]) / length, 0), 1) : 0;
    return [i, f];
  }

  /** [lat, lon] at a race distance (clamped to the course). */
  pointAt(distance) {
    if (this.lat.length < 2) return [this.lat[0], this.lon[0]];
    const [i, f] = this.locate(distance);
    return [
      this.lat[i] + f * (this.lat[i + 1] - this.lat[i]),
      this.lon[i] + f * (this.lon[i + 1] - this.lon[i]),
    ];
  }

  /** Elevation in metres at a race distance, or null when the course has none. */
  elevationAt(distance) {
    if (!this.hasElevation) return null;
    if (this.ele.length < 2) return this.ele[0];
    const [i, f] = this.locate(distance);
    return this.ele[i] + f * (this.ele[i + 1] - this.ele[i]);
  }

  /** `count` + 1 evenly spaced [distance, elevation] samples from start to finish. */
  profile(count) {
    const out = [];
    for (let k = 0; k <= count; k++) {
      const d = (this.finish * k) / count;
      out.push([d, this.elevationAt(d) ?? 0]);
    }
    return out;
  }

  /** Indexes of at most `limit` points of one lap, evenly picked, ends kept. */
  drawnIndexes(limit) {
    const n = this.lat.length;
    const step = Math.max(1, Math.ceil(n / limit));
    const out = [];
    for (let i = 0; i < n; i += step) out.push(i);
    if (out[out.length - 1] !== n - 1) out.push(n - 1);
    return out;
  }
}

function fillGaps(values) {
  // Unknown elevations take their known neighbours' (linear between two, else nearest).
  const n = values.length;
  const out = Float64Array.from(values);
  let previous = -1;
  for (let i = 0; i <= n; i++) {
    if (i < n && Number.isNaN(out[i])) continue;
    for (let j = previous + 1; j < i; j++) {
      if (previous < 0 && i >= n) out[j] = 0;
      else if (previous < 0) out[j] = out[i];
      else if (i >= n) out[j] = out[previous];
      else out[j] = out[previous] + ((j - previous) / (i - previous)) * (out[i] - out[previous]);
    }
    previous = i;
  }
  return out;
}

/**
 * A flat (equirectangular) projection of the course into a box `width` wide, its height
 * chosen from the course's shape (between half and the full width), with a margin.
 * `project(lat, lon)` gives [x, y] in that box.
 */
export function fitProjection(geometry, width, margin) {
  let south = Infinity;
  let north = -Infinity;
  let west = Infinity;
  let east = -Infinity;
  for (let i = 0; i < geometry.lat.length; i++) {
    south = Math.min(south, geometry.lat[i]);
    north = Math.max(north, geometry.lat[i]);
    west = Math.min(west, geometry.lon[i]);
    east = Math.max(east, geometry.lon[i]);
  }
  const kx = Math.cos(((south + north) / 2) * RAD);
  const spanX = Math.max((east - west) * kx, 1e-9);
  const spanY = Math.max(north - south, 1e-9);
  const height = Math.round(Math.min(Math.max((width * spanY) / spanX, width / 2), width));
  const scale = Math.min((width - 2 * margin) / spanX, (height - 2 * margin) / spanY);
  const x0 = (width - spanX * scale) / 2;
  const y0 = (height - spanY * scale) / 2;
  const lon0 = geometry.lon[0];
  return {
    width,
    height,
    project(lat, lon) {
      const unwrapped = lon0 + wrapLon(lon - lon0);
      return [x0 + (unwrapped - west) * kx * scale, y0 + (north - lat) * scale];
    },
  };
}
