"""The racer's account on the tracker: log in, enrol the device key, keep the certificate.

``login`` signs in to the cloud (``POST /api/auth/login``), creates the device's Ed25519
key on first use (a PEM file only its owner may read), enrols it (``POST /api/devices``)
and saves the device certificate, the cloud's public key, the cloud's address (and its
HTTP/3 port, from ``Alt-Svc``) and the courses of the racer's races in the data directory.
The tokens are revoked again at once: the tracker needs only its certificate to upload.

The command line runs this before anything is tracked; ``check_race`` refuses a race the
certificate does not cover, or an expired certificate, with what to do.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync_protocol.certificate import DeviceCertificate
from sync_protocol.chain import load_public_key, public_key_bytes
from sync_protocol.course import Course
from sync_protocol.errors import CertificateError, ProtocolError

from .errors import AccountError, NotAllowed, NotLoggedIn

KEY_FILE = "device-ed25519.pem"
ACCOUNT_FILE = "account.json"
CA_FILE = "cloud-ca.pem"
RACES_DIR = "races"
_ALT_SVC_H3 = re.compile(r'\bh3="[^":]*:(\d{1,5})"')


@dataclass(frozen=True, slots=True)
class Account:
    """What a logged-in tracker keeps (see the module docstring)."""

    server: str
    """The cloud's base URL, ``https://host:port`` (or ``http://`` for a local cloud)."""
    username: str
    """The racer's username."""
    racer_id: int
    """The racer's account id (the certificate names it too)."""
    h3_port: int | None
    """The cloud's HTTP/3 (UDP) port from its ``Alt-Svc`` header; None: no direct uploads."""
    certificate: DeviceCertificate
    """The device certificate the cloud issued."""
    issuer_public_key: bytes
    """The cloud's raw Ed25519 public key (checks the certificate offline)."""
    key: Ed25519PrivateKey
    """The device key that signs fixes and hellos."""
    cafile: Path | None
    """Certificates trusted for the cloud's TLS (a private or self-signed cloud), else None."""

    @property
    def host(self) -> str:
        """The cloud's host name or address."""
        return urlsplit(self.server).hostname or "localhost"


def login(
    server: str,
    username: str,
    password: str,
    data_dir: Path,
    *,
    cafile: Path | None = None,
    timeout_s: float = 20.0,
) -> Account:
    """Log in, enrol this device and save everything in ``data_dir``; see the module doc."""
    server = normalise_server(server)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    saved_ca: Path | None = None
    if cafile is not None:
        try:
            pem = cafile.read_bytes()
        except OSError as exc:
            raise AccountError(f"cannot read --cafile {cafile}: {exc.strerror}") from None
        saved_ca = data_dir / CA_FILE
        _write_atomic(saved_ca, pem, 0o644)
    http = _Http(server, saved_ca, timeout_s)
    tokens, _ = http.call("POST", "/api/auth/login", {"username": username, "password": password})
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    try:
        key = load_or_create_key(data_dir)
        public = base64.b64encode(public_key_bytes(key)).decode()
        enrolled, headers = http.call("POST", "/api/devices", {"public_key": public}, bearer)
        for race_id in enrolled["race_ids"]:
            race, _ = http.call("GET", f"/api/races/{int(race_id)}", None, bearer)
            _write_atomic(data_dir / RACES_DIR / f"{int(race_id)}.json", _json(race), 0o644)
    finally:
        http.revoke(tokens.get("refresh_token"), bearer)
    try:
        cert = DeviceCertificate.decode(base64.b64decode(enrolled["certificate"]))
        issuer = base64.b64decode(enrolled["issuer_public_key"])
        cert.verify(load_public_key(issuer), cert.not_before_ms)
    except (KeyError, ValueError, ProtocolError) as exc:
        raise AccountError(f"the cloud at {server} sent an unusable certificate: {exc}") from None
    if cert.device_public_key != public_key_bytes(key):
        raise AccountError(f"the cloud at {server} certified another key; log in again")
    port = _alt_svc_h3(headers.get("alt-svc", ""))
    record = {
        "format": 1,
        "server": server,
        "username": username,
        "racer_id": cert.racer_id,
        "h3_port": port,
        "certificate": base64.b64encode(cert.encode()).decode(),
        "issuer_public_key": base64.b64encode(issuer).decode(),
        "cafile": CA_FILE if saved_ca else None,
    }
    _write_atomic(data_dir / ACCOUNT_FILE, _json(record), 0o600)
    return Account(server, username, cert.racer_id, port, cert, issuer, key, saved_ca)


def load(data_dir: Path) -> Account:
    """The saved account; NotLoggedIn when there is none."""
    path = data_dir / ACCOUNT_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotLoggedIn(
            f"no racer is logged in on this tracker ({data_dir}); run "
            "`gruppetto tracker login --server URL` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise AccountError(f"{path} cannot be read ({exc}); log in again") from None
    key_path = data_dir / KEY_FILE
    if not key_path.exists():
        raise AccountError(f"the device key {key_path} is missing; log in again")
    try:
        cert = DeviceCertificate.decode(base64.b64decode(record["certificate"]))
        issuer = base64.b64decode(record["issuer_public_key"])
        ca = data_dir / record["cafile"] if record.get("cafile") else None
        account = Account(
            record["server"],
            record["username"],
            int(record["racer_id"]),
            int(record["h3_port"]) if record.get("h3_port") else None,
            cert,
            issuer,
            load_or_create_key(data_dir),
            ca,
        )
    except (KeyError, TypeError, ValueError, ProtocolError) as exc:
        raise AccountError(f"{path} is damaged ({exc}); log in again") from None
    if cert.device_public_key != public_key_bytes(account.key):
        raise AccountError(f"the device key {key_path} does not match the certificate; log in")
    return account


def check_race(account: Account, race_id: int, now_ms: int) -> None:
    """Refuse (NotAllowed) unless the certificate is valid now and names ``race_id``."""
    again = f"`gruppetto tracker login --server {account.server}`"
    try:
        account.certificate.verify(load_public_key(account.issuer_public_key), now_ms, race_id)
    except CertificateError as exc:
        cert = account.certificate
        if exc.reason == "expired":
            message = (
                f"the device certificate expired on {_utc(cert.not_after_ms)}: log in again "
                f"with {again} to get a new one"
            )
        elif exc.reason == "wrong-race":
            races = ", ".join(map(str, cert.race_ids)) or "none"
            message = (
                f"{account.username} is not registered for race {race_id} on this device "
                f"(its certificate covers races: {races}); register for race {race_id}, then "
                f"log in again with {again}"
            )
        elif exc.reason == "not-yet-valid":
            message = (
                f"the device certificate is valid only from {_utc(cert.not_before_ms)}: check "
                "this device's clock"
            )
        else:
            message = f"the device certificate cannot be used ({exc.message}); log in again"
        raise NotAllowed(message) from None


def race_course(data_dir: Path, race_id: int) -> Course | None:
    """The race's course as saved at login, or None (no course yet, or not saved)."""
    try:
        race = json.loads((data_dir / RACES_DIR / f"{race_id}.json").read_text())
        return Course.from_dict(race["course"]) if race.get("course") else None
    except (OSError, ValueError, KeyError, TypeError, ProtocolError):
        return None


def load_or_create_key(data_dir: Path) -> Ed25519PrivateKey:
    """The device's Ed25519 key, created (owner-only permissions) on first use."""
    path = data_dir / KEY_FILE
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(data_dir)  # another process made it first
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        _fsync_dir(data_dir)
        return key
    if path.stat().st_mode & 0o077:
        raise AccountError(f"the device key {path} is readable by others: run chmod 600 {path}")
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise AccountError(f"the device key {path} cannot be loaded: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AccountError(f"the device key {path} is not an Ed25519 key")
    return loaded


def normalise_server(server: str) -> str:
    """``https://host:port`` without a trailing slash; AccountError for anything else."""
    parts = urlsplit(server.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AccountError(f"--server must be a URL like https://cloud.example.org, not {server!r}")
    return f"{parts.scheme}://{parts.netloc}"


class _Http:
    """JSON requests to the cloud over HTTP/1.1 (urllib), errors turned into AccountError."""

    def __init__(self, server: str, cafile: Path | None, timeout_s: float) -> None:
        self.server = server
        self.timeout_s = timeout_s
        self.context = ssl.create_default_context(cafile=str(cafile) if cafile else None)

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked: http or https)
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout_s, context=self.context
            ) as response:
                raw = response.read()
                reply_headers = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            raise AccountError(self._refusal(path, exc)) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise AccountError(
                    f"the cloud at {self.server} has a TLS certificate this tracker does not "
                    f"trust ({reason.verify_message}); pass --cafile with its certificate"
                ) from None
            raise AccountError(
                f"cannot reach the cloud at {self.server} ({reason}); check --server and the "
                "connection"
            ) from None
        except (TimeoutError, OSError) as exc:
            raise AccountError(f"the cloud at {self.server} did not answer ({exc})") from None
        if not raw:
            return {}, reply_headers
        try:
            value = json.loads(raw)
        except ValueError:
            raise AccountError(f"the cloud at {self.server} answered {path} with junk") from None
        if not isinstance(value, dict):
            raise AccountError(f"the cloud at {self.server} answered {path} unexpectedly")
        return value, reply_headers

    def revoke(self, refresh_token: object, bearer: dict[str, str]) -> None:
        """Log out again (best effort: the tokens lapse on their own anyway)."""
        with contextlib.suppress(AccountError):
            self.call("POST", "/api/auth/logout", {"refresh_token": refresh_token}, bearer)

    def _refusal(self, path: str, exc: urllib.error.HTTPError) -> str:
        try:
            error = json.loads(exc.read())["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError, OSError):
            code, message = "", exc.reason
        if path == "/api/auth/login" and exc.code == 401:
            return f"wrong username or password for {self.server}; check them and try again"
        if exc.code == 429:
            wait = exc.headers.get("Retry-After", "a few minutes")
            return f"{message}; try again in {wait} s" if wait.isdigit() else message
        if path == "/api/devices" and exc.code == 403:
            return "this account is not a racer's: only registered racers can track"
        return f"the cloud refused {path} ({exc.code} {code}): {message}"


def _alt_svc_h3(value: str) -> int | None:
    match = _ALT_SVC_H3.search(value)
    return int(match.group(1)) if match and 0 < int(match.group(1)) < 65_536 else None


def _utc(t_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(t_ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` so a crash leaves the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
