"""Access tokens, web sessions and CSRF, the auth middleware, and the rate limiter: against a
real ``gruppetto cloud`` server on loopback, plus unit tests on an injected clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cloud.auth.accounts import Accounts
from cloud.auth.middleware import AuthMiddleware
from cloud.auth.principal import Principal, Role
from cloud.auth.ratelimit import RateLimiter
from cloud.auth.tokens import AUDIENCE, AccessTokens
from cloud.errors import ApiError
from cloud.keys import CloudKey, load_or_create
from cloud.settings import Settings
from cloud.store.base import Database
from cloud.store.users import UserStore
from tests.cloud.conftest import CloudServer
from tests.cloud.test_accounts import ISSUER, PASSWORD, bearer, error, login, register


class FakeClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def key_of(server: CloudServer) -> CloudKey:
    return load_or_create(server.data_dir)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# access tokens


def test_an_expired_token_is_refused_with_a_clear_reason(cloud_server: CloudServer) -> None:
    with cloud_server.client() as client:
        name = register(client)
        user = login(client, name)["user"]
        past = FakeClock(time.time() - 3_600)
        token = AccessTokens(key_of(cloud_server), ISSUER, 900, past).issue(
            Principal(user["id"], name, Role.RACER)
        )
        r = client.get("/api/me", headers=bearer(token))
    assert r.status_code == 401
    assert error(r)["code"] == "token-expired"
    assert error(r)["message"] == "access token expired: refresh it or log in again"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_tokens_with_another_algorithm_are_refused(cloud_server: CloudServer) -> None:
    key = key_of(cloud_server)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "1",
        "name": "root",
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
    }
    unsigned = jwt.encode(claims, "", algorithm="none")
    pem = key.public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{head}.{body}.{b64(mac)}"
    with cloud_server.client() as client:
        for token, alg in ((unsigned, "none"), (confused, "HS256")):
            r = client.get("/api/users", headers=bearer(token))
            assert r.status_code == 401
            assert error(r)["code"] == "invalid-token"
            assert f"algorithm '{alg}' is not accepted (only EdDSA)" in error(r)["message"]


def test_a_tampered_token_is_refused(cloud_server: CloudServer) -> None:
    with cloud_server.client() as client:
        name = register(client)
        token = login(client, name)["access_token"]
        head, body, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        claims["role"] = "admin"
        promoted = f"{head}.{b64(json.dumps(claims).encode())}.{signature}"
        r = client.get("/api/users", headers=bearer(promoted))
        assert r.status_code == 401
        assert error(r)["message"] == "access token refused: the signature does not verify"
        flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
        r = client.get("/api/me", headers=bearer(f"{head}.{body}.{flipped}"))
        assert r.status_code == 401
        for header in ("Bearer", "Bearer not-a-jwt", "Basic cm9vdDpyb290", "Token abc"):
            r = client.get("/healthz/live", headers={"Authorization": header})
            assert r.status_code == 401, header
        r = client.get("/healthz/live", headers={"Authorization": "Relay grr_999_nope"})
        assert error(r)["code"] == "invalid-relay-credential"


def test_the_verifier_names_what_is_wrong_with_a_token() -> None:
    key = CloudKey(Ed25519PrivateKey.generate())
    clock = FakeClock(time.time())
    who = Principal(7, "ana", Role.RACER)
    ours = AccessTokens(key, ISSUER, 900, clock)
    assert ours.verify(ours.issue(who)) == who
    foreign = AccessTokens(key, "someone-else", 900, clock).issue(who)
    with pytest.raises(ApiError, match="not issued by 'gruppetto-cloud'"):
        ours.verify(foreign)
    claims = {
        "iss": ISSUER,
        "aud": "other",
        "sub": "7",
        "name": "ana",
        "role": "racer",
        "iat": int(clock.t),
        "exp": int(clock.t) + 60,
        "jti": "j",
    }
    with pytest.raises(ApiError, match="audience is not 'gruppetto'"):
        ours.verify(jwt.encode(claims, key.private, algorithm="EdDSA"))
    del claims["jti"]
    claims["aud"] = AUDIENCE
    with pytest.raises(ApiError, match="'jti' claim is missing"):
        ours.verify(jwt.encode(claims, key.private, algorithm="EdDSA"))
    claims["jti"], claims["role"] = "j", "relay"
    with pytest.raises(ApiError, match="not a person's role"):
        ours.verify(jwt.encode(claims, key.private, algorithm="EdDSA"))
    other_key = CloudKey(Ed25519PrivateKey.generate())
    with pytest.raises(ApiError, match="unknown key"):
        ours.verify(AccessTokens(other_key, ISSUER, 900, clock).issue(who))


# web sessions


def test_a_cookie_session_needs_the_csrf_token_for_unsafe_methods(
    cloud_server: CloudServer,
) -> None:
    with cloud_server.client() as browser:
        name = register(browser)
        r = browser.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD, "session": True}
        )
        assert r.status_code == 200
        csrf = r.json()["csrf_token"]
        assert "access_token" not in r.json()
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("gruppetto_session=")
        lowered = cookie.lower()
        assert "httponly" in lowered
        assert "samesite=lax" in lowered
        assert "path=/" in lowered
        assert "secure" not in lowered  # this test server speaks plain HTTP

        me = browser.get("/api/me")
        assert me.status_code == 200
        assert me.json()["csrf_token"] == csrf
        assert me.json()["user"]["username"] == name

        change = {"current_password": PASSWORD, "new_password": "another fine password"}
        r = browser.post("/api/auth/password", json=change)
        assert r.status_code == 403
        assert error(r)["code"] == "csrf"
        r = browser.post("/api/auth/password", json=change, headers={"X-CSRF-Token": "guess"})
        assert error(r)["code"] == "csrf"
        r = browser.post("/api/auth/password", json=change, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert browser.get("/api/me").status_code == 200  # this session survives the change

        assert browser.post("/api/auth/logout").status_code == 403  # logout needs CSRF too
        r = browser.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
        assert 'gruppetto_session=""' in r.headers["set-cookie"]
        assert browser.get("/api/me").status_code == 401


def test_a_refusal_keeps_the_connection_usable_for_the_next_request(
    cloud_server: CloudServer,
) -> None:
    # the 401 is decided before the body arrives; the server must still read it, or
    # Hypercorn drops the keep-alive connection and the next request on it fails
    host, port = cloud_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n"
        )
        time.sleep(0.2)  # let the app answer before the body is sent
        sock.sendall(b"{}GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 ") < 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 401 ")
    assert b"HTTP/1.1 200 " in received


class FakeRelays:
    def authenticate(self, credential: str) -> Principal | None:
        return Principal(3, "col-du-galibier", Role.RELAY) if credential == "grr_3_ok" else None


async def unreachable(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def test_relay_credentials_are_checked_by_the_relay_store_when_there_is_one(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path)
    db = Database(tmp_path / "gruppetto.db")
    try:
        service = Accounts(settings, UserStore(db), load_or_create(tmp_path))

        def scope(authorization: str) -> dict[str, Any]:
            headers = [(b"authorization", authorization.encode())]
            return {"type": "http", "method": "POST", "headers": headers}

        relays = SimpleNamespace(relays=FakeRelays())
        with_relays = AuthMiddleware(unreachable, accounts=service, stores=relays)
        who, session = with_relays.authenticate(scope("Relay grr_3_ok"))
        assert who == Principal(3, "col-du-galibier", Role.RELAY)
        assert session is None  # machine credentials need no CSRF token
        with pytest.raises(ApiError, match="unknown, wrong or disabled"):
            with_relays.authenticate(scope("Relay grr_3_bad"))
        without = AuthMiddleware(unreachable, accounts=service, stores=SimpleNamespace())
        with pytest.raises(ApiError, match="not accepted yet"):
            without.authenticate(scope("relay grr_3_ok"))
    finally:
        db.close()


# rate limiter


def test_the_rate_limiter_slides_its_window_on_an_injected_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 10, what="tries", clock=clock)
    for _ in range(3):
        limiter.hit("a")
        clock.t += 1
    with pytest.raises(ApiError) as refused:
        limiter.hit("a")
    assert refused.value.status == 429
    assert refused.value.code == "rate-limited"
    assert refused.value.fields == {"retry_after_s": "7"}
    assert refused.value.message == "too many tries: at most 3 in 10 s; try again in 7 s"
    limiter.hit("b")  # keys are independent
    clock.t = 1_010.0  # the first hit leaves the window
    limiter.hit("a")
    with pytest.raises(ApiError):
        limiter.hit("a")
    assert limiter.remaining("a") == 0
    limiter.reset("a")
    assert limiter.remaining("a") == 3


def test_check_and_record_limit_failures_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 60, clock=clock)
    for _ in range(5):
        limiter.check("ip")  # successes are never recorded
    limiter.record("ip")
    limiter.record("ip")
    with pytest.raises(ApiError):
        limiter.check("ip")
    clock.t += 60
    limiter.check("ip")
    with pytest.raises(ValueError, match="limit >= 1"):
        RateLimiter(0, 1)
