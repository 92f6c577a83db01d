// The live feed of one race: WebTransport to the relay, WebSocket when that is not
// possible, reconnecting with backoff, and a state the page shows.
//
// WebTransport (docs/spectator.md): the relay's first frame, a snapshot, arrives on a
// bidirectional stream it opens; then one datagram a tick, a snapshot or a delta against
// the last snapshot. A delta whose base we lack is answered by writing "resync" on a
// stream of ours, and the relay sends its current snapshot. The WebSocket sends
// snapshots only, one binary message each.

import { DecodeError, SNAPSHOT, decodeFrame } from "./frames.js";

export const WEBTRANSPORT = "webtransport";
export const WEBSOCKET = "websocket";

const OPEN_TIMEOUT_MS = 6000; // a WebTransport handshake that takes longer: use WebSocket
const SILENCE_MS = 20000; // no frame for this long: the connection is dead (ticks are 1 s)
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const WEBTRANSPORT_RETRY_MS = 60000; // after WebTransport failed, WebSocket only for a while
const RESYNC_EVERY_MS = 2000;

function hexBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function withTimeout(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function readAll(readable) {
  const reader = readable.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Whether this browser can open WebTransport here (it needs a secure context). */
export function webTransportAvailable() {
  return typeof globalThis.WebTransport === "function";
}

/**
 * A race's frames, from whichever transport works.
 *
 * `getInfo()` returns the relay's /api/info (fetched again before each connection: the
 * certificate hash changes when the relay rotates its certificate). `onFrame(frame)`
 * gets each decoded frame in tick order; `onState(state)` gets
 * `{phase: "connecting"|"live"|"reconnecting"|"stopped", transport, attempt, retryAt,
 * detail}`.
 */
export class LiveFeed {
  constructor({ raceId, getInfo, onFrame, onState, location = globalThis.location }) {
    this.raceId = raceId;
    this.getInfo = getInfo;
    this.onFrame = onFrame;
    this.onState = onState;
    this.location = location;
    this.stopped = false;
    this.attempt = 0;
    this.webTransportFailedAt = -Infinity;
    this.webTransportError = "";
    this.connection = null;
    this.retryTimer = null;
    this.wake = null;
    this.stats = { frames: 0, stale: 0, resyncs: 0, errors: 0 };
  }

  start() {
    this.run();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.wake) this.wake();
    if (this.connection) this.connection.close();
    this.setState({ phase: "stopped", transport: null });
  }

  /** Skip the wait before the next reconnection attempt. */
  retryNow() {
    if (this.wake) this.wake();
  }

  setState(state) {
    this.state = { attempt: this.attempt, retryAt: null, detail: "", ...state };
    this.onState(this.state);
  }

  async run() {
    while (!this.stopped) {
      let delivered = false;
      let detail = "";
      try {
        this.setState({ phase: "connecting", transport: null });
        const info = await this.getInfo();
        if (this.stopped) return;
        delivered = await this.connectOnce(info);
      } catch (error) {
        detail = error && error.message ? error.message : String(error);
      }
      if (this.stopped) return;
      this.attempt = delivered ? 1 : this.attempt + 1;
      const base = BACKOFF_MS[Math.min(this.attempt - 1, BACKOFF_MS.length - 1)];
      const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
      this.setState({
        phase: "reconnecting",
        transport: null,
        retryAt: Date.now() + delay,
        detail,
      });
      await new Promise((resolve) => {
        this.wake = resolve;
        this.retryTimer = setTimeout(resolve, delay);
      });
      this.wake = null;
    }
  }

  /** One connection, WebTransport first when possible; true if it delivered frames. */
  async connectOnce(info) {
    let why = "";
    const recent = performance.now() - this.webTransportFailedAt < WEBTRANSPORT_RETRY_MS;
    if (!webTransportAvailable()) {
      why = "this browser has no WebTransport here (it needs a secure context)";
    } else if (!info.quic_port) {
      why = "the relay offers no WebTransport";
    } else if (recent) {
      why = this.webTransportError;
    } else {
      const session = new WebTransportSession(this, info);
      try {
        await this.watch(session);
        return true;
      } catch (error) {
        if (this.stopped) return false;
        this.webTransportFailedAt = performance.now();
        this.webTransportError = `WebTransport failed: ${error.message || error}`;
        why = this.webTransportError;
        // fall through to the WebSocket
      }
    }
    await this.watch(new SocketSession(this), why);
    return true;
  }

  /** Open a session and run it until it ends; throws if it opened or delivered nothing. */
  async watch(session, detail = "") {
    this.lastTick = -1;
    this.base = null;
    this.connection = session;
    try {
      await session.open();
      this.setState({ phase: "live", transport: session.transport, detail });
      await session.closed;
    } finally {
      this.connection = null;
      session.close();
    }
    if (session.frames === 0) throw new Error(`the ${session.transport} sent no frame`);
  }

  /** A frame's bytes from any transport. */
  receive(session, bytes) {
    if (session !== this.connection) return; // a session being closed
    let frame;
    try {
      frame = decodeFrame(bytes, this.base);
    } catch (error) {
      if (!(error instanceof DecodeError)) throw error;
      if (error.reason === "stale-base") {
        this.stats.stale += 1;
        session.resync();
      } else {
        this.stats.errors += 1;
        console.warn("live frame refused:", error.reason, error.message);
      }
      return;
    }
    session.frames += 1;
    session.lastFrameAt = performance.now();
    if (frame.kind === SNAPSHOT && (this.base === null || frame.tick >= this.base.tick)) {
      this.base = frame;
    }
    if (frame.tick < this.lastTick) return; // a datagram overtaken by a newer one
    this.lastTick = frame.tick;
    this.stats.frames += 1;
    this.onFrame(frame);
  }
}

class Session {
  constructor(feed, transport) {
    this.feed = feed;
    this.transport = transport;
    this.frames = 0;
    this.lastFrameAt = performance.now();
    this.closed = new Promise((resolve) => {
      this.end = resolve;
    });
    this.watchdog = null;
  }

  startWatchdog() {
    this.watchdog = setInterval(() => {
      if (performance.now() - this.lastFrameAt > SILENCE_MS) this.end();
    }, 1000);
  }

  close() {
    clearInterval(this.watchdog);
    this.end();
  }

  resync() {}
}

class WebTransportSession extends Session {
  constructor(feed, info) {
    super(feed, WEBTRANSPORT);
    this.info = info;
    this.lastResync = -Infinity;
  }

  async open() {
    const loc = this.feed.location;
    const url = `https://${loc.hostname}:${this.info.quic_port}/live/${this.feed.raceId}`;
    const options = {};
    if (this.info.self_signed && this.info.cert_sha256) {
      options.serverCertificateHashes = [
        { algorithm: "sha-256", value: hexBytes(this.info.cert_sha256) },
      ];
    }
    this.wt = new WebTransport(url, options);
    this.wt.ready.catch(() => {}); // handled below; a late rejection is not an error
    this.wt.closed.then(
      () => this.end(),
      () => this.end(),
    );
    await withTimeout(this.wt.ready, OPEN_TIMEOUT_MS, "the WebTransport handshake");
    this.startWatchdog();
    this.readStreams(this.wt.incomingBidirectionalStreams, (s) => s.readable);
    this.readStreams(this.wt.incomingUnidirectionalStreams, (s) => s);
    this.readDatagrams();
  }

  async readStreams(streams, readableOf) {
    try {
      const reader = streams.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        readAll(readableOf(value)).then(
          (bytes) => this.feed.receive(this, bytes),
          () => {},
        );
      }
    } catch {
      this.end();
    }
  }

  async readDatagrams() {
    try {
      const reader = this.wt.datagrams.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.feed.receive(this, value);
      }
    } catch {
      this.end();
    }
  }

  /** Ask the relay for its current snapshot (at most every couple of seconds). */
  async resync() {
    const now = performance.now();
    if (now - this.lastResync < RESYNC_EVERY_MS) return;
    this.lastResync = now;
    this.feed.stats.resyncs += 1;
    try {
      const stream = await this.wt.createUnidirectionalStream();
      const writer = stream.getWriter();
      await writer.write(new TextEncoder().encode("resync"));
      await writer.close();
    } catch {
      // the session is going away; the reconnection will bring a snapshot
    }
  }

  close() {
    super.close();
    try {
      this.wt.close();
    } catch {
      // already closed
    }
  }
}

class SocketSession extends Session {
  constructor(feed) {
    super(feed, WEBSOCKET);
  }

  open() {
    const loc = this.feed.location;
    const scheme = loc.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${loc.host}/live/${this.feed.raceId}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.addEventListener("message", (event) => {
      if (event.data instanceof ArrayBuffer) this.feed.receive(this, new Uint8Array(event.data));
    });
    ws.addEventListener("close", () => this.end());
    return withTimeout(
      new Promise((resolve, reject) => {
        ws.addEventListener("open", () => resolve());
        ws.addEventListener("error", () => reject(new Error("the WebSocket did not open")));
      }),
      OPEN_TIMEOUT_MS,
      "opening the WebSocket",
    ).then(() => this.startWatchdog());
  }

  close() {
    super.close();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
  }
}
