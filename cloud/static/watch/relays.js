// Which relay to watch a race on, from GET /api/races/{id}/relays: pure functions.
//
// A relay reports its addresses to the cloud about every 15 s; one that has not reported
// for a minute is `stale` and not used. The freshest of the others comes first; a caller
// that failed to get frames from one moves on to the next.

/** `scheme://host:port` of a URL, or null. */
export function originOf(url, scheme = null) {
  try {
    const parsed = new URL(url);
    return `${scheme || parsed.protocol.slice(0, -1)}://${parsed.host}`;
  } catch {
    return null;
  }
}

/** The relays worth trying, freshest report first: not stale, with an address. */
export function usableRelays(relays) {
  return relays
    .filter((r) => !r.stale && (r.webtransport_url || r.page_url))
    .sort((a, b) => (b.reported_ms || 0) - (a.reported_ms || 0) || a.id - b.id);
}

/**
 * The `LiveFeed` target of a relay for a race: WebTransport at `webtransport_url` + the
 * race id (with the certificate hash when the certificate is self-signed), the WebSocket
 * beside the relay's page (`ws://` for an `http://` page, `wss://` for `https://`).
 */
export function relayTarget(relay, raceId) {
  let websocketUrl = null;
  if (relay.page_url) {
    const page = new URL(relay.page_url);
    const scheme = page.protocol === "https:" ? "wss:" : "ws:";
    websocketUrl = `${scheme}//${page.host}/live/${raceId}`;
  }
  let webtransportUrl = null;
  if (relay.webtransport_url) {
    const base = relay.webtransport_url.endsWith("/")
      ? relay.webtransport_url
      : `${relay.webtransport_url}/`;
    webtransportUrl = `${base}${raceId}`;
  }
  return {
    webtransportUrl,
    websocketUrl,
    certSha256: relay.cert_sha256 || "",
    selfSigned: Boolean(relay.self_signed),
    name: relay.name || `relay ${relay.id}`,
    relayId: relay.id,
  };
}

/** The origins a target connects to (for the page's Content Security Policy). */
export function targetOrigins(target) {
  return [target.webtransportUrl, target.websocketUrl].filter(Boolean).map((u) => originOf(u));
}

/**
 * The relay to try after `failures` connections in a row that delivered nothing: the
 * freshest first, then each of the others in turn. Null when none is usable.
 */
export function pickRelay(relays, failures) {
  const usable = usableRelays(relays);
  if (!usable.length) return null;
  return usable[failures % usable.length];
}
