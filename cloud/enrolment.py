"""Enrolment: device keys get certificates; relays get credentials and race definitions."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import PUBLIC_KEY_LEN, device_id

from .auth.principal import Principal
from .errors import ApiError, bad_request, not_found
from .keys import CloudKey
from .races import now_ms
from .store.actions import ActionStore
from .store.audit import AuditLog
from .store.devices import DeviceStore
from .store.races import RaceStore
from .store.relays import RelayStore
from .validation import boolean, integer, text

CLOCK_SKEW_MS = 5 * 60_000


def decode_key(value: Any) -> bytes:
    """A raw Ed25519 public key from base64 (standard or URL-safe) or hex."""
    if not isinstance(value, str):
        raise bad_request("public_key is required", public_key="base64 or hex of 32 bytes")
    raw: bytes | None = None
    for decode in (bytes.fromhex, base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(value + ("=" * (-len(value) % 4) if decode is not bytes.fromhex else ""))
        except (ValueError, binascii.Error):
            continue
        if len(raw) == PUBLIC_KEY_LEN:
            return raw
    raise bad_request(
        "public_key must be a 32-byte Ed25519 key in base64 or hex",
        public_key="base64 or hex of 32 bytes",
    )


class Enrolment:
    """Issues device certificates and relay credentials."""

    def __init__(
        self,
        key: CloudKey,
        races: RaceStore,
        devices: DeviceStore,
        relays: RelayStore,
        actions: ActionStore,
        audit: AuditLog,
        cert_ttl_s: int,
        token_issuer: str,
    ) -> None:
        self.key, self.races, self.devices, self.relays = key, races, devices, relays
        self.token_issuer = token_issuer
        self.actions, self.audit = actions, audit
        self.cert_ttl_ms = cert_ttl_s * 1000

    def enrol_device(self, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        """Certify a racer's device key for the races they are registered in."""
        public = decode_key(data.get("public_key"))
        device = device_id(public)
        existing = self.devices.get(device)
        if existing is not None and existing["user_id"] != who.id:
            raise ApiError(409, "device-taken", "this device key is enrolled by another racer")
        t = now_ms()
        race_ids = tuple(self.races.races_of(who.id))
        cert = DeviceCertificate.issue(
            self.key.private, public, who.id, race_ids, t - CLOCK_SKEW_MS, t + self.cert_ttl_ms
        )
        encoded = cert.encode()
        self.devices.save(device, who.id, public, encoded, cert.not_after_ms, t)
        return {
            "device_id": device.hex(),
            "racer_id": who.id,
            "race_ids": list(race_ids),
            "not_before_ms": cert.not_before_ms,
            "not_after_ms": cert.not_after_ms,
            "certificate": base64.b64encode(encoded).decode(),
            "issuer_public_key": base64.b64encode(self.key.public_raw).decode(),
        }

    def enrol_relay(self, who: Principal, data: dict[str, Any]) -> dict[str, Any]:
        """Create a relay for some races; the credential is returned this once only."""
        name = text(data, "name", min_len=2, max_len=64) or ""
        race_ids = self._race_ids(data)
        if any(r["name"] == name for r in self.relays.overview()):
            raise ApiError(409, "name-taken", f"a relay named {name!r} exists", {"name": "taken"})
        t = now_ms()
        with self.relays.transaction() as conn:
            relay_id, credential = self.relays.create(name, race_ids, t)
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "relay.create",
                "relay",
                relay_id,
                name=name,
                race_ids=race_ids,
            )
        relay = self.relays.get(relay_id)
        assert relay is not None
        return {**relay, "credential": credential}

    def update_relay(self, who: Principal, relay_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a relay's races or disable it: all of it, or nothing on a bad field."""
        if self.relays.get(relay_id) is None:
            raise not_found(f"relay {relay_id}")
        unknown = set(data) - {"race_ids", "disabled"}
        if unknown or not data:
            raise bad_request("nothing to change", **{k: "unknown field" for k in unknown})
        race_ids = self._race_ids(data) if "race_ids" in data else None
        disabled = boolean(data, "disabled", False) if "disabled" in data else None
        t = now_ms()
        with self.relays.transaction() as conn:
            if race_ids is not None:
                self.relays.set_races(relay_id, race_ids)
            if disabled is not None:
                self.relays.set_disabled(relay_id, disabled)
            changes = {"race_ids": race_ids, "disabled": disabled}
            self.audit.record(
                conn,
                t,
                who.id,
                who.name,
                "relay.update",
                "relay",
                relay_id,
                **{k: v for k, v in changes.items() if v is not None},
            )
        relay = self.relays.get(relay_id)
        assert relay is not None
        return relay

    def _race_ids(self, data: dict[str, Any]) -> list[int]:
        ids = data.get("race_ids")
        if not isinstance(ids, list) or not ids or len(ids) > 100:
            raise bad_request("race_ids must list 1..100 races", race_ids="list of race ids")
        out = []
        for value in ids:
            race_id = integer({"race_ids": value}, "race_ids", low=1, high=2**62) or 0
            if self.races.get(race_id) is None:
                raise bad_request(f"race {race_id} does not exist", race_ids=f"no race {race_id}")
            out.append(race_id)
        return out

    def relay_config(self, who: Principal) -> dict[str, Any]:
        """Everything a relay needs to run its races with no uplink."""
        races = []
        for race_id in self.relays.race_ids(who.id):
            race = self.races.get(race_id)
            if race is not None:
                riders = self.races.start_list(race_id)
                actions = self.actions.of_race(race_id)
                races.append({**race, "riders": riders, "actions": actions})
        return {
            "relay": {"id": who.id, "name": who.name},
            "issuer_public_key": base64.b64encode(self.key.public_raw).decode(),
            "issuer_kid": self.key.kid,
            "token_issuer": self.token_issuer,
            "races": races,
        }
