// The live feed of one race: WebTransport to a relay, WebSocket when that is not
// possible, reconnecting with backoff, and a state the page shows.
//
// Both the relay's own page and the cloud's spectator app use it: they differ only in
// where the relay is (`getTarget`): the relay's page asks its own /api/info, the cloud's
// app asks GET /api/races/{id}/relays and picks a relay.
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

/**
 * Where to watch a race, the way `LiveFeed` wants it: `{webtransportUrl (or null),
 * websocketUrl, certSha256, selfSigned, name}`. This one is for a page the relay serves
 * itself: the relay's /api/info, on the page's own host.
 */
export function relayTarget(info, raceId, location = globalThis.location) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const port = info.spectator_port || info.quic_port; // fan-out workers have their own
  return {
    webtransportUrl: port ? `https://${location.hostname}:${port}/live/${raceId}` : null,
    websocketUrl: `${scheme}://${location.host}/live/${raceId}`,
    certSha256: info.cert_sha256 || "",
    selfSigned: Boolean(info.self_signed),
    name: info.name || "",
  };
}

/** Whether this browser can open WebTransport here (it needs a secure context). */
export function webTransportAvailable() {
  return typeof globalThis.WebTransport === "function";
}

/**
 * A race's frames, from whichever transport works.
 *
 * `getTarget({failures})` says where to connect (see `relayTarget`); it is called again
 * before each connection (a relay's certificate hash changes when it rotates its
 * certificate; `failures` counts the connections in a row that delivered nothing, so a
 * caller with several relays can try another). `onFrame(frame)` gets each decoded frame
 * in tick order; `onState(state)` gets `{phase: "connecting"|"live"|"reconnecting"|
 * "stopped", transport, attempt, retryAt, detail, target}`.
 */
export class LiveFeed {
  constructor({ raceId, getTarget, onFrame, onState }) {
    this.raceId = raceId;
    this.getTarget = getTarget;
    this.onFrame = onFrame;
    this.onState = onState;
    this.stopped = false;
    this.attempt = 0;
    this.failures = 0;
    this.webTransportFailed = { url: null, at: -Infinity, error: "" };
    this.connection = null;
    this.target = null;
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
    const target = this.target;
    this.state = { attempt: this.attempt, retryAt: null, detail: "", target, ...state };
    this.onState(this.state);
  }

  async run() {
    while (!this.stopped) {
      let delivered = false;
      let detail = "";
      try {
        this.setState({ phase: "connecting", transport: null });
        this.target = await this.getTarget({ failures: this.failures });
        if (this.stopped) return;
        delivered = await this.connectOnce(this.target);
      } catch (error) {
        detail = error && error.message ? error.message : String(error);
      }
      if (this.stopped) return;
      this.attempt = delivered ? 1 : this.attempt + 1;
      this.failures = delivered ? 0 : this.failures + 1;
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
  async connectOnce(target) {
    let why = "";
    const failed = this.webTransportFailed;
    const recent =
      failed.url === target.webtransportUrl &&
      performance.now() - failed.at < WEBTRANSPORT_RETRY_MS;
    if (!webTransportAvailable()) {
      why = "this browser has no WebTransport here (it needs a secure context)";
    } else if (!target.webtransportUrl) {
      why = "the relay offers no WebTransport";
    } else if (recent) {
      why = failed.error;
    } else {
      const session = new WebTransportSession(this, target);
      try {
        await this.watch(session);
        return true;
      } catch (error) {
        if (this.stopped) return false;
        why = `WebTransport failed: ${error.message || error}`;
        const at = performance.now();
        this.webTransportFailed = { url: target.webtransportUrl, at, error: why };
        // fall through to the WebSocket
      }
    }
    if (!target.websocketUrl) throw new Error(why || "the relay offers no WebSocket");
    await this.watch(new SocketSession(this, target), why);
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
  constructor(feed, target) {
    super(feed, WEBTRANSPORT);
    this.target = target;
    this.lastResync = -Infinity;
  }

  async open() {
    const options = {};
    if (this.target.selfSigned && this.target.certSha256) {
      options.serverCertificateHashes = [
        { algorithm: "sha-256", value: hexBytes(this.target.certSha256) },
      ];
    }
    this.wt = new WebTransport(this.target.webtransportUrl, options);
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
  constructor(feed, target) {
    super(feed, WEBSOCKET);
    this.target = target;
  }

  open() {
    const ws = new WebSocket(this.target.websocketUrl);
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
