// Live frames (docs/live-frames.md): the decoder of snapshots and deltas.
//
// The same checks, in the same order, as sync_protocol/frames.py, so a frame the Python
// decoder rejects is rejected here with the same reason. Varints are decoded with
// arithmetic, never with << or | (values go past 2^31); every value is at most
// 2^53 - 1, exact in a Number.

export const MAGIC_0 = 0x47; // "G"
export const MAGIC_1 = 0x4c; // "L"
export const VERSION = 2;
export const SNAPSHOT = 1;
export const DELTA = 2;

export const MAX_FRAME_BYTES = 64 * 1024;
export const MAX_RIDERS = 255;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53 - 1
export const T_MS_MAX = 2 ** 51 - 1;
export const U32_MAX = 2 ** 32 - 1;
const MAX_VARINT_BYTES = 10;

/** Wire values of the race status byte, by name and back. */
export const RACE_STATUS = Object.freeze([
  "scheduled",
  "live",
  "neutralised",
  "finished",
  "results_published",
]);

/** Wire values of a rider's status. */
export const RIDER_STATUS = Object.freeze([
  "racing",
  "finished",
  "dnf",
  "dns",
  "dsq",
  "stopped",
  "no_signal",
]);

// Per-rider fields after the bib: column order of a snapshot, bit order of a delta mask.
const CHAIN = 0;
const DESC = 1;
const PLAIN = 2;
const SPARSE = 3;
const SPARSE_CHAIN = 4;
const FIELDS = [
  ["lat_e7", CHAIN],
  ["lon_e7", CHAIN],
  ["progress_m", DESC],
  ["speed_cms", CHAIN],
  ["gap", CHAIN], // 0 = unknown, else gap_ds + 1
  ["fix_age_s", PLAIN],
  ["group", SPARSE_CHAIN],
  ["status", SPARSE],
  ["penalty_s", SPARSE],
  ["battery", PLAIN], // 0 = unknown, else battery_pct + 1
  ["charging", SPARSE], // 1 = on external power
];
const ALL_FIELDS = 2 ** FIELDS.length - 1;

// Ranges of the decoded values (sync_protocol/frame_types.py), checked in this order.
const RANGES = [
  ["bib", 1, 65535],
  ["lat_e7", -900000000, 900000000],
  ["lon_e7", -1800000000, 1800000000],
  ["progress_m", -10000000, 10000000],
  ["speed_cms", 0, 65535],
  ["gap_ds", 0, 2 ** 31 - 1],
  ["fix_age_s", 0, 65535],
  ["group", 0, 255],
  ["penalty_s", 0, 2 ** 31 - 1],
  ["battery_pct", 0, 100],
];

/** A frame that cannot be decoded; `reason` is the short code of docs/live-frames.md. */
export class DecodeError extends Error {
  constructor(message, reason = "malformed") {
    super(message);
    this.name = "DecodeError";
    this.reason = reason;
  }
}

function oversized(message) {
  return new DecodeError(message, "oversized");
}

function outOfRange(message) {
  return new DecodeError(`live frame: ${message}`, "out-of-range");
}

/** Map a signed integer's zigzag form back: 0, 1, 2, 3 -> 0, -1, 1, -2. */
export function unzigzag(n) {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

class Reader {
  constructor(bytes) {
    this.data = bytes;
    this.pos = 0;
  }

  get remaining() {
    return this.data.length - this.pos;
  }

  bytes(count) {
    if (count > this.remaining) {
      throw new DecodeError(
        `live frame is truncated: needed ${count} more bytes at offset ${this.pos}, ` +
          `only ${this.remaining} left`,
        "truncated",
      );
    }
    const chunk = this.data.subarray(this.pos, this.pos + count);
    this.pos += count;
    return chunk;
  }

  u8() {
    return this.bytes(1)[0];
  }

  /** An unsigned LEB128 varint of at most 10 bytes, refused above `limit`. */
  uvarint(limit, field) {
    const data = this.data;
    const start = this.pos;
    let value = 0;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (start + i >= data.length) {
        throw new DecodeError(
          `live frame is truncated inside ${field} at offset ${start}`,
          "truncated",
        );
      }
      const byte = data[start + i];
      // Exact below 2^53; anything larger stays larger than every limit (<= 2^53 - 1).
      value += (byte & 0x7f) * 2 ** (7 * i);
      if (byte < 0x80) {
        this.pos = start + i + 1;
        if (value > limit) {
          throw oversized(`live frame: ${field} is ${value}, above the limit of ${limit}`);
        }
        return value;
      }
    }
    throw new DecodeError(`live frame: ${field} varint is longer than 10 bytes at ${start}`);
  }

  expectEnd() {
    if (this.remaining) {
      throw new DecodeError(
        `live frame has ${this.remaining} unexpected trailing bytes`,
        "trailing",
      );
    }
  }
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  if (Array.isArray(data)) return Uint8Array.from(data);
  throw new TypeError("a live frame is a Uint8Array, an ArrayBuffer or a byte view");
}

function open(data) {
  const bytes = asBytes(data);
  if (bytes.length > MAX_FRAME_BYTES) {
    throw oversized(`live frame is ${bytes.length} bytes, above the limit of ${MAX_FRAME_BYTES}`);
  }
  const r = new Reader(bytes);
  const magic = r.bytes(2);
  if (magic[0] !== MAGIC_0 || magic[1] !== MAGIC_1) {
    throw new DecodeError("live frame: bad magic", "bad-magic");
  }
  const version = r.u8();
  if (version !== VERSION) {
    throw new DecodeError(
      `live frame: version ${version} is unknown (this page speaks ${VERSION})`,
      "bad-version",
    );
  }
  const kind = r.u8();
  if (kind !== SNAPSHOT && kind !== DELTA) {
    throw new DecodeError(`live frame: kind ${kind} is unknown`, "bad-kind");
  }
  return [r, kind];
}

/** Whether `data` is a snapshot (1) or a delta (2), reading only the header. */
export function peekKind(data) {
  return open(data)[1];
}

function raceStatus(r) {
  const value = r.u8();
  if (value >= RACE_STATUS.length) {
    throw new DecodeError(`live frame: race status ${value} is unknown`);
  }
  return value;
}

function readColumn(r, coding, count, field) {
  let column;
  if (coding === DESC) {
    column = count ? [unzigzag(r.uvarint(MAX_SAFE, field))] : [];
    for (let i = 1; i < count; i++) column.push(column[i - 1] - r.uvarint(MAX_SAFE, field));
    return column;
  }
  if (coding === CHAIN || coding === PLAIN) {
    column = [];
    for (let i = 0; i < count; i++) column.push(r.uvarint(MAX_SAFE, field));
  } else {
    column = new Array(count).fill(0);
    let i = -1;
    const nonzero = r.uvarint(count, `${field} count`);
    for (let k = 0; k < nonzero; k++) {
      i += r.uvarint(MAX_SAFE, `${field} skip`) + 1;
      const value = r.uvarint(MAX_SAFE, field);
      if (i >= count || value === 0) {
        throw new DecodeError(`live frame: sparse column ${field} is malformed`);
      }
      column[i] = value;
    }
  }
  if (coding === CHAIN || coding === SPARSE_CHAIN) {
    for (let i = 0; i < count; i++) column[i] = unzigzag(column[i]) + (i ? column[i - 1] : 0);
  }
  return column;
}

/** The wire values of a rider's fields, in column order (gap as 0 / gap_ds + 1). */
function wireValues(rider) {
  return [
    rider.lat_e7,
    rider.lon_e7,
    rider.progress_m,
    rider.speed_cms,
    rider.gap_ds === null ? 0 : rider.gap_ds + 1,
    rider.fix_age_s,
    rider.group,
    rider.status,
    rider.penalty_s,
    rider.battery_pct === null ? 0 : rider.battery_pct + 1,
    rider.charging ? 1 : 0,
  ];
}

function riderFromWire(bib, v) {
  if (!Number.isInteger(v[7]) || v[7] < 0 || v[7] >= RIDER_STATUS.length) {
    throw new DecodeError(`live frame: rider ${bib} has unknown status ${v[7]}`);
  }
  if (v[10] !== 0 && v[10] !== 1) {
    throw outOfRange(`rider ${bib}: charging must be 0 or 1, got ${v[10]}`);
  }
  const rider = {
    bib,
    status: v[7],
    lat_e7: v[0],
    lon_e7: v[1],
    progress_m: v[2],
    speed_cms: v[3],
    gap_ds: v[4] === 0 ? null : v[4] - 1,
    fix_age_s: v[5],
    group: v[6],
    penalty_s: v[8],
    battery_pct: v[9] === 0 ? null : v[9] - 1,
    charging: v[10] === 1,
  };
  for (const [name, low, high] of RANGES) {
    const value = rider[name];
    if ((name === "gap_ds" || name === "battery_pct") && value === null) continue;
    if (!(value >= low && value <= high)) {
      throw outOfRange(`rider ${bib}: ${name} must be an integer in ${low}..${high}, got ${value}`);
    }
  }
  if (rider.charging && rider.battery_pct === null) {
    throw outOfRange(`rider ${bib}: charging needs a known battery_pct`);
  }
  return rider;
}

function decodeSnapshot(r, raceId, tick) {
  const tMs = r.uvarint(T_MS_MAX, "t_ms");
  const status = raceStatus(r);
  const count = r.uvarint(MAX_RIDERS, "rider count");
  const bibs = readColumn(r, CHAIN, count, "bib");
  const columns = FIELDS.map(([name, coding]) => readColumn(r, coding, count, name));
  r.expectEnd();
  const valuesOf = (i) => columns.map((column) => column[i]);
  const riders = bibs.map((bib, i) => riderFromWire(bib, valuesOf(i)));
  riders.sort((a, b) => a.bib - b.bib);
  for (let i = 1; i < riders.length; i++) {
    if (riders[i].bib === riders[i - 1].bib) {
      throw new DecodeError(`live frame: bib ${riders[i].bib} appears twice`);
    }
  }
  return { kind: SNAPSHOT, race_id: raceId, tick, t_ms: tMs, race_status: status, riders };
}

function decodeDelta(r, raceId, tick, base) {
  const baseTick = tick - r.uvarint(tick, "base tick offset");
  const dtMs = unzigzag(r.uvarint(MAX_SAFE, "t_ms delta"));
  const status = raceStatus(r);
  const count = r.uvarint(MAX_RIDERS, "rider count");
  if (
    base === null ||
    base === undefined ||
    base.race_id !== raceId ||
    base.tick !== baseTick ||
    base.riders.length !== count
  ) {
    const have = base ? `tick ${base.tick} of race ${base.race_id}` : "no base";
    throw new DecodeError(
      `live frame is a delta against tick ${baseTick} of race ${raceId} (${count} riders) ` +
        `but the base is ${have}: wait for a snapshot`,
      "stale-base",
    );
  }
  const bitmap = r.bytes(Math.ceil(count / 8));
  if (count % 8 && bitmap[bitmap.length - 1] >> count % 8) {
    throw new DecodeError("live frame: delta bitmap has bits set past the last rider");
  }
  const riders = [];
  for (let i = 0; i < count; i++) {
    const old = base.riders[i];
    if (!((bitmap[i >> 3] >> (i & 7)) & 1)) {
      riders.push(old);
      continue;
    }
    const mask = r.uvarint(MAX_SAFE, "field mask");
    if (mask === 0 || mask > ALL_FIELDS) {
      throw new DecodeError(`live frame: rider ${old.bib} has a bad field mask ${mask}`);
    }
    const values = wireValues(old);
    for (let j = 0; j < FIELDS.length; j++) {
      if (Math.floor(mask / 2 ** j) % 2 === 1) {
        const change = unzigzag(r.uvarint(MAX_SAFE, FIELDS[j][0]));
        if (change === 0) {
          throw new DecodeError(`live frame: rider ${old.bib} ${FIELDS[j][0]} changed by 0`);
        }
        values[j] += change;
      }
    }
    riders.push(riderFromWire(old.bib, values));
  }
  r.expectEnd();
  const tMs = base.t_ms + dtMs;
  if (!(tMs >= 0 && tMs <= T_MS_MAX)) {
    throw outOfRange(`t_ms must be an integer in 0..${T_MS_MAX}, got ${tMs}`);
  }
  return { kind: DELTA, race_id: raceId, tick, t_ms: tMs, race_status: status, riders };
}

/**
 * Decode a snapshot, or a delta against `base` (the frame decoded from the snapshot it
 * names). Returns `{kind, race_id, tick, t_ms, race_status, riders}`, riders by ascending
 * bib, each `{bib, status, lat_e7, lon_e7, progress_m, speed_cms, gap_ds (null: unknown),
 * fix_age_s, group, penalty_s, battery_pct (null: unknown), charging}`. Throws only
 * DecodeError.
 */
export function decodeFrame(data, base = null) {
  const [r, kind] = open(data);
  const raceId = r.uvarint(U32_MAX, "race_id");
  const tick = r.uvarint(MAX_SAFE, "tick");
  return kind === SNAPSHOT ? decodeSnapshot(r, raceId, tick) : decodeDelta(r, raceId, tick, base);
}
