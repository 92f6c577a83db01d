// The course as the back office draws it, from `Course.to_dict()` (`GET /api/races/{id}`
// `course`): distances along it, elevation at a race distance, climbing, and a flat
// projection into a drawing box (no tiles, no internet).
//
// Race distance is as in sync_protocol/course.py: 0 at the start, `finish` at the line,
// counted across laps; distances along the course are haversine with the same radius.

const EARTH_RADIUS_M = 6371008.8;
const RAD = Math.PI / 180;
const HYSTERESIS_M = 1.0; // sync_protocol/course_points.py ELEVATION_HYSTERESIS_M

export function haversineM(lat1, lon1, lat2, lon2) {
  const p1 = lat1 * RAD;
  const p2 = lat2 * RAD;
  const dl = (lon2 - lon1) * RAD;
  const a = Math.sin((p2 - p1) / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

const wrapLon = (delta) => ((((delta + 180) % 360) + 360) % 360) - 180;

export class CourseGeometry {
  constructor(course) {
    this.laps = course.laps || 1;
    this.checkpoints = course.checkpoints || [];
    const points = course.points;
    const n = points.length;
    this.lat = new Float64Array(n);
    this.lon = new Float64Array(n); // unwrapped across the antimeridian
    this.cum = new Float64Array(n);
    const ele = [];
    for (let i = 0; i < n; i++) {
      const [lat, lon, e] = points[i];
      this.lat[i] = lat;
      this.lon[i] = i ? this.lon[i - 1] + wrapLon(lon - this.lon[i - 1]) : lon;
      ele.push(e === null || e === undefined ? null : e);
      if (i) {
        const [lat0, lon0] = points[i - 1];
        this.cum[i] = this.cum[i - 1] + haversineM(lat0, lon0, lat, lon);
      }
    }
    this.hasElevation = ele.some((e) => e !== null);
    this.lapLength = n ? this.cum[n - 1] : 0;
    this.finish = this.lapLength * this.laps;
    this.climbing = this.hasElevation ? lapGain(ele) * this.laps : null;
    this.ele = Float64Array.from(fillGaps(ele));
    this.minEle = null;
    this.maxEle = null;
    for (const e of ele) {
      if (e === null) continue;
      this.minEle = this.minEle === null ? e : Math.min(this.minEle, e);
      this.maxEle = this.maxEle === null ? e : Math.max(this.maxEle, e);
    }
  }

  /** [segment index, fraction] of a race distance within the lap. */
  locate(distance) {
    const lap = this.lapLength;
    if (!(lap > 0) || this.cum.length < 2) return [0, 0];
    const d = Math.min(Math.max(distance, 0), this.finish);
    const along = d >= this.finish ? lap : d - Math.min(Math.floor(d / lap), this.laps - 1) * lap;
    let lo = 0;
    let hi = this.cum.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (this.cum[mid] <= along) lo = mid;
      else hi = mid;
    }
    const length = this.cum[lo + 1] - this.cum[lo];
    return [lo, length > 0 ? Math.min(Math.max((along - this.cum[lo]) / length, 0), 1) : 0];
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
}

function lapGain(elevations) {
  let gain = 0;
  let ref = null;
  for (const e of elevations) {
    if (e === null) continue;
    if (ref === null || e < ref - HYSTERESIS_M) ref = e;
    else if (e >= ref + HYSTERESIS_M) {
      gain += e - ref;
      ref = e;
    }
  }
  return gain;
}

function fillGaps(values) {
  // Unknown elevations take their known neighbours' (linear between two, else nearest).
  const out = values.slice();
  const n = out.length;
  let prev = -1;
  for (let i = 0; i <= n; i++) {
    if (i < n && values[i] === null) continue;
    for (let j = prev + 1; j < i; j++) {
      if (prev < 0 && i >= n) out[j] = 0;
      else if (prev < 0) out[j] = values[i];
      else if (i >= n) out[j] = values[prev];
      else out[j] = values[prev] + ((j - prev) / (i - prev)) * (values[i] - values[prev]);
    }
    prev = i;
  }
  return out;
}

/**
 * A flat (equirectangular) projection of the course into a box `width` wide, its height
 * from the course's shape (between half and the full width), with a margin.
 */
export function fitProjection(geometry, width, margin) {
  let [south, north, west, east] = [Infinity, -Infinity, Infinity, -Infinity];
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
