"""One relay process: every part wired together on one asyncio loop.

:class:`Relay` owns the store's writer, the tracker ingest, the race configuration, live
scoring, the spectator fan-out, the UDP (aioquic) and TCP (Hypercorn) servers, the
uplink to the cloud, zeroconf, and certificate rotation. It is also the
:class:`~edge_relay.h3.Handler` that answers HTTP/3 requests and WebTransport sessions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_protocol.discovery import RelayAdvert
from sync_protocol.errors import IntegrityError, ProtocolError
from sync_protocol.fix import Fix
from sync_protocol.frames import LiveFrame
from sync_protocol.upload import (
    BATCHES_PATH,
    CONTENT_TYPE,
    HELLO_PATH,
    MAX_UPLOAD_BYTES,
    STATUS_PATH,
    encode_results,
)

from .commit import CommitFailed, GroupCommitter
from .control import ControlError, command, live_message, verify_official
from .device_status import AcceptedStatus, RelayStatuses
from .discovery import Advertiser
from .fanout import Fanout, TickPolicy
from .h3 import (
    Response,
    SessionTickets,
    WebTransportSession,
    grow_buffers,
    quic_configuration,
    serve_h3,
)
from .ingest import RelayIngest, UploadOutcome
from .live import LiveRaces
from .races import RelayConfig
from .settings import RelaySettings
from .store import Reads, connect
from .tls import RelayCertificate, ensure_certificate, load_certificate, needs_renewal
from .uplink import Uplink
from .workers import FanoutWorkers, reuse_port_socket

log = logging.getLogger("gruppetto.relay")

LIVE_PATH = re.compile(r"^/live/(\d{1,18})$")
BACKFILL_CHUNK = 200
"""Older fixes of a catch-up scored per turn of the event loop (~30 µs each)."""
ROTATION_CHECK_S = 3_600.0


class RelayNotConfigured(RuntimeError):
    """No race configuration yet and no cloud to fetch it from."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc, separators=(",", ":")).encode())


def _refusal(exc: ProtocolError) -> Response:
    """403 for what does not verify (signature, certificate, time), else 400, as the cloud."""
    status = 403 if isinstance(exc, IntegrityError) else 400
    return _json(status, {"error": exc.reason, "message": exc.message})


class Relay:
    """The edge relay."""

    max_body = MAX_UPLOAD_BYTES

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.request_timeout_s = settings.request_timeout_s
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.committer = GroupCommitter(settings.db_path)
        self.reads = Reads(connect(settings.db_path, writer=False))
        self.uplink_reads = Reads(connect(settings.db_path, writer=False))
        saved = self.reads.config("relay")
        self.config: RelayConfig | None = RelayConfig.from_document(saved) if saved else None
        self.live = LiveRaces()
        self.fanout = Fanout(self._frame, TickPolicy(interval_ms=settings.tick_ms))
        self.ingest: RelayIngest | None = None
        self.workers: FanoutWorkers | None = None
        """Fan-out worker processes (``--fanout-workers``), once started."""
        self.statuses = RelayStatuses(_now_ms)
        if self.config is not None:
            self._apply(self.config)
        self.certificate = self._certificate()
        self.quic_config = quic_configuration(
            str(self.certificate.cert_path), str(self.certificate.key_path)
        )
        self.tickets = SessionTickets()
        self.uplink: Uplink | None = None
        if settings.cloud_url and settings.credential:
            self.uplink = Uplink(
                settings.cloud_url,
                settings.credential,
                self.committer,
                self.uplink_reads,
                on_config=self._on_config_doc,
                on_live=self._on_cloud_live,
                report=self.status_report,
                verify=settings.cloud_verify,
                config_every_s=settings.config_every_s,
            )
        self.advertiser: Advertiser | None = None
        self.quic_port = 0
        self.spectator_port = 0
        """Where spectators open WebTransport: the QUIC port, or the workers' port."""
        self.http_port = 0
        self.connections = 0
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self._advert_lock = asyncio.Lock()
        self.token_issuer: str | None = None
        """``iss`` of the cloud's access tokens, when its configuration says."""

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the servers and start every loop."""
        if self.config is None and self.uplink is None:
            raise RelayNotConfigured(
                "this relay has no race configuration yet: start it once with --cloud URL "
                "and --credential FILE while the cloud is reachable"
            )
        shared = None  # the workers join the tracker port: its socket allows it
        if self.settings.fanout_workers:
            shared = reuse_port_socket(self.settings.quic_host, self.settings.quic_port)
        server = await serve_h3(
            self.settings.quic_host,
            self.settings.quic_port,
            self.quic_config,
            self,
            self.tickets,
            on_protocol=self._connection_made,
            sock=shared,
        )
        self._quic_server = server
        transport = server._transport
        if transport is None:
            raise OSError("the QUIC server did not bind")
        self.quic_port = int(transport.get_extra_info("sockname")[1])
        grow_buffers(transport.get_extra_info("socket"))
        self.spectator_port = self.quic_port
        if self.settings.fanout_workers:
            self.workers = FanoutWorkers(
                self.settings.fanout_workers,
                self.settings.quic_host,
                self.settings.spectator_port,
                (str(self.certificate.cert_path), str(self.certificate.key_path)),
                self.config.race_ids if self.config else (),
                self._frames_now,
                tracker_port=self.quic_port,
                requests=self.request,
                request_timeout_s=self.settings.request_timeout_s,
            )
            self.spectator_port = await self.workers.start()
            self.fanout.workers = self.workers
        from .web import serve_http  # heavy imports only when serving

        self.http_port, self._http_task = await serve_http(self)
        self.fanout.start()
        if self.uplink is not None:
            self._tasks.append(asyncio.create_task(self.uplink.run()))
            if self.config is not None:
                self.uplink.follow(set(self.config.race_ids))
        self._tasks.append(asyncio.create_task(self._rotate_loop()))
        if self.settings.advertise:
            advertiser = Advertiser()
            await advertiser.start(self.advert(), self.settings.interfaces)
            self.advertiser = advertiser
            await self._readvertise()  # the races may have changed meanwhile

    async def stop(self) -> None:
        """Close everything; queued writes are committed first."""
        if self.advertiser is not None:
            await self.advertiser.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fanout.stop()
        if self.workers is not None:
            await self.workers.stop()
        self._quic_server.close()
        self._http_task.cancel()
        await asyncio.gather(self._http_task, return_exceptions=True)
        await asyncio.to_thread(self.committer.close)
        self.reads.conn.close()
        self.uplink_reads.conn.close()

    def advert(self) -> RelayAdvert:
        """How zeroconf describes this relay."""
        races = tuple(self.config.race_ids) if self.config else ()
        return RelayAdvert(
            name=self.settings.name,
            addresses=(self.settings.quic_host,),
            quic_port=self.quic_port,
            http_port=self.http_port,
            race_ids=races,
            cert_sha256=self.certificate.sha256_hex if self.certificate.self_signed else "",
        )

    def info(self) -> dict[str, Any]:
        """What ``/api/info`` says (the spectator page and the console read it)."""
        races = []
        for race in self.config.races.values() if self.config else ():
            races.append(
                {
                    "id": race.race_id,
                    "name": race.name,
                    "state": race.state,
                    "starts_at_ms": race.starts_at_ms,
                    "riders": len(race.riders),
                    "course": race.course.to_dict() if race.course else None,
                }
            )
        return {
            "name": self.settings.name,
            "relay_id": self.config.relay_id if self.config else None,
            "quic_port": self.quic_port,
            "spectator_port": self.spectator_port,
            "http_port": self.http_port,
            "cert_sha256": self.certificate.sha256_hex,
            "self_signed": self.certificate.self_signed,
            "races": races,
            "cloud_url": self.settings.cloud_url,
            "uplink": self.uplink.status.state if self.uplink else "none",
            "uplink_error": self.uplink.status.last_error if self.uplink else "",
            "trackers": len(self.ingest.inbox.receivers) if self.ingest else 0,
            "spectators": self.spectator_sessions + self.fanout.socket_count,
            "backlog_fixes": self.reads.backlog()[1],
        }

    def status_report(self) -> dict[str, Any]:
        """What the relay tells the cloud about itself."""
        host = self.settings.public_host or self.settings.quic_host
        shown = f"[{host}]" if ":" in host else host
        info = self.info()
        return {
            "name": self.settings.name,
            "page_url": f"http://{shown}:{self.http_port}/",
            "webtransport_url": f"https://{shown}:{self.spectator_port}/live/",
            "cert_sha256": info["cert_sha256"],
            "self_signed": info["self_signed"],
            "cert_not_after_ms": int(self.certificate.not_after.timestamp() * 1000),
            "trackers": info["trackers"],
            "spectators": info["spectators"],
            "backlog_fixes": info["backlog_fixes"],
            "uplink": info["uplink"],
            "races": [r["id"] for r in info["races"]],
            "devices": self.statuses.report(_now_ms()),
        }

    # -- configuration ------------------------------------------------------------------

    def _apply(self, config: RelayConfig) -> None:
        self.config = config
        self.token_issuer = config.token_issuer
        if self.ingest is None:
            self.ingest = RelayIngest(self.committer, config.issuer, config.race_ids, _now_ms)
        else:
            self.ingest.serve(config.race_ids, config.issuer)
        self.live.configure(config)
        if self.workers is not None:
            self.workers.races(config.race_ids)

    @property
    def spectator_sessions(self) -> int:
        """WebTransport sessions, on this process and its fan-out workers."""
        workers = self.workers.sessions if self.workers is not None else 0
        return self.fanout.session_count + workers

    def _frames_now(self) -> list[tuple[int, bytes, bytes]]:
        """Each race's current base and newest frame (for a fan-out worker starting)."""
        return [
            (race_id, c.base_bytes, c.last_bytes)
            for race_id, c in self.fanout.channels.items()
            if c.base_bytes
        ]

    def _on_config_doc(self, doc: dict[str, Any]) -> None:
        try:
            config = RelayConfig.from_document(doc)
        except ValueError as exc:
            log.error("unusable configuration from the cloud", extra={"detail": str(exc)})
            return
        changed = self.config is None or self.config.race_ids != config.race_ids
        self._apply(config)
        if self.uplink is not None:
            self.uplink.follow(set(config.race_ids))
        if changed:
            self._tasks.append(asyncio.create_task(self._readvertise()))

    def _on_cloud_live(self, race_id: int, message: dict[str, Any]) -> None:
        if message.get("type") == "fixes":  # every fix of an upload: passages in backfill
            changed = self.live.cloud_fixes(race_id, message)
        else:
            changed = self.live.cloud_message(race_id, message)
        if changed:
            self.fanout.news(race_id)

    async def _readvertise(self) -> None:
        """Announce the current races and certificate hash, if they changed."""
        async with self._advert_lock:
            if self.advertiser is None:
                return
            wanted = replace(self.advert(), name=self.advertiser.advert.name)
            if self.advertiser.advert == wanted:
                return
            try:
                await self.advertiser.update(wanted)
            except Exception:
                log.exception("zeroconf update failed")

    # -- certificates -------------------------------------------------------------------

    def _certificate(self) -> RelayCertificate:
        s = self.settings
        if s.cert_file is not None and s.key_file is not None:
            return load_certificate(s.cert_file, s.key_file)
        return ensure_certificate(s.data_dir, s.cert_hosts, datetime.now(UTC))

    async def _rotate_loop(self) -> None:
        while True:
            await asyncio.sleep(ROTATION_CHECK_S)
            self.rotate_if_due(datetime.now(UTC))

    def rotate_if_due(self, now: datetime) -> bool:
        """Replace the self-signed certificate when it nears expiry (new connections)."""
        if not needs_renewal(self.certificate, now):
            return False
        self.certificate = ensure_certificate(
            self.settings.data_dir, self.settings.cert_hosts, now + timedelta(seconds=1)
        )
        self.quic_config.load_cert_chain(
            str(self.certificate.cert_path), str(self.certificate.key_path)
        )
        if self.workers is not None:
            self.workers.certificate(
                str(self.certificate.cert_path), str(self.certificate.key_path)
            )
        log.info("certificate rotated", extra={"sha256": self.certificate.sha256_hex})
        if self.advertiser is not None:
            self._tasks.append(asyncio.create_task(self._readvertise()))
        return True

    # -- HTTP/3 and WebTransport (the h3.Handler protocol) ---------------------------------

    def _connection_made(self, _protocol: object) -> None:
        self.connections += 1

    async def request(self, method: str, path: str, body: bytes) -> Response:
        """Answer a tracker's HTTP/3 request."""
        if path == "/v1/info" and method == "GET":
            return _json(200, self.info())
        if path not in (HELLO_PATH, BATCHES_PATH, STATUS_PATH):
            return _json(404, {"error": "not-found", "message": f"no such path {path}"})
        if method != "POST":
            return _json(405, {"error": "method", "message": f"use POST for {path}"})
        if self.ingest is None:
            return _json(503, {"error": "not-ready", "message": "no race configuration yet"})
        try:
            if path == HELLO_PATH:
                reply = await self.ingest.hello(body)
                return Response(200, reply.encode(), CONTENT_TYPE)
            if path == STATUS_PATH:
                self._after_status(self.statuses.receive(self.ingest.inbox, body))
                return Response(204, b"", CONTENT_TYPE)
            arrived = time.monotonic() * 1000
            outcome = await self.ingest.upload(body, preview=lambda o: self._show(o, arrived))
        except ProtocolError as exc:
            return _refusal(exc)
        except CommitFailed as exc:
            return _json(503, {"error": "storage", "message": str(exc)})
        if self.uplink is not None and outcome.fixes:
            self.uplink.wake()
        return Response(200, encode_results(outcome.results), CONTENT_TYPE)

    def _show(self, outcome: UploadOutcome, arrived_ms: float) -> None:
        """Verified fixes onto the live view, while their commit is still going to disk:
        a position shown is not an ack (should the commit fail, the tracker sends the
        fix again and it is shown again)."""
        if self.config is None:
            return
        for live in outcome.live:
            race = self.config.race_for(live.racer_id, live.race_ids, live.fix.t_ms)
            if race is None:
                continue
            if self.live.local_fix(race.race_id, live.racer_id, live.fix):
                self.fanout.news(race.race_id, arrived_ms)
            if live.history:
                self._backfill(race.race_id, live.racer_id, live.history)

    def _backfill(self, race_id: int, racer_id: int, fixes: Sequence[Fix]) -> None:
        """Score a catch-up's older fixes (passages made out of coverage), a chunk per turn
        of the loop so a long catch-up never holds up uploads and frames."""
        changed = False
        for fix in fixes[:BACKFILL_CHUNK]:
            changed |= self.live.local_fix(race_id, racer_id, fix)
        if changed:
            self.fanout.news(race_id)
        if len(fixes) > BACKFILL_CHUNK:
            rest = fixes[BACKFILL_CHUNK:]
            asyncio.get_running_loop().call_soon(self._backfill, race_id, racer_id, rest)

    def _after_status(self, accepted: AcceptedStatus) -> None:
        """A verified battery status: onto the rider in the race it belongs to."""
        if self.config is None or not accepted.newest:
            return
        status = accepted.status
        race = self.config.race_for(accepted.racer_id, accepted.race_ids, status.t_ms)
        if race is not None and self.live.local_status(race.race_id, accepted.racer_id, status):
            self.fanout.news(race.race_id)

    def session_opened(self, path: str, session: WebTransportSession) -> bool:
        """A spectator's WebTransport CONNECT to ``/live/RACE``."""
        match = LIVE_PATH.match(path)
        if match is None or self.config is None or int(match[1]) not in self.config.races:
            return False
        race_id = int(match[1])
        asyncio.get_running_loop().call_soon(self.fanout.join, race_id, session)
        return True

    def session_closed(self, session: WebTransportSession) -> None:
        """A spectator left."""
        self.fanout.leave(session)

    def session_message(self, session: WebTransportSession, data: bytes) -> None:
        """The page asks for a fresh base with ``resync``."""
        if data.strip() == b"resync":
            self.fanout.resync(session)

    # -- race control through the relay ------------------------------------------------

    async def submit_command(
        self, race_id: int, kind: str, body: Any, authorization: str
    ) -> dict[str, Any]:
        """An official's command: verify, store once, apply to the frames, forward later."""
        if self.config is None:
            raise ControlError(503, "not-ready", "this relay has no race configuration yet")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ControlError(401, "unauthenticated", "send Authorization: Bearer <token>")
        jwks = self.uplink.jwks if self.uplink is not None else self.reads.config("jwks")
        official = verify_official(token.strip(), jwks, self.token_issuer, time.time())
        cmd = command(self.config, race_id, kind, body, official, _now_ms())
        new = await self.committer.run(lambda w: w.queue_command(cmd.to_row()))
        if new:
            log.info(
                "race control queued",
                extra={"race": race_id, "action_id": cmd.action_id, "official": official.name},
            )
            if self.live.cloud_message(race_id, live_message(cmd)):
                self.fanout.news(race_id)
            if self.uplink is not None:
                self.uplink.wake()
        return {"queued": True, "new": new, "action_id": cmd.action_id, "forwarded": False}

    def command_log(self, race_id: int) -> list[dict[str, Any]]:
        """Commands taken here for a race (reads its own connection: call in a thread)."""
        reads = Reads(connect(self.settings.db_path, writer=False))
        try:
            return reads.commands(race_id)
        finally:
            reads.conn.close()

    def _frame(self, race_id: int, now_ms: int) -> LiveFrame | None:
        return self.live.frame(race_id, now_ms)
