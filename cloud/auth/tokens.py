"""Access tokens (EdDSA JWTs that relays verify offline), refresh tokens and web sessions.

Access tokens are short-lived and verified with the cloud's public key alone: nothing is
looked up, so a disabled account's access token works until it expires (at most
``Settings.access_token_ttl_s``). Disabled accounts are refused when they log in, refresh
or present a web session. Refresh tokens and session tokens are opaque random strings of
which only SHA-256 digests are stored; a refresh token is rotated on every use.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from ..errors import ApiError
from ..keys import CloudKey
from ..store.users import Refresh, User, UserStore
from .principal import Principal, Role
from .ratelimit import Clock

AUDIENCE = "gruppetto"
ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "name", "role", "iat", "exp", "jti")
LEEWAY_S = 10
"""Clock skew tolerated on ``exp`` and ``iat`` (relays verify on their own clocks)."""


class WallClock:
    """``time.time``: token lifetimes are wall-clock times."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


def digest(token: str) -> str:
    """SHA-256 hex of an opaque token: what the database keeps."""
    return hashlib.sha256(token.encode()).hexdigest()


def jwks(key: CloudKey) -> dict[str, list[dict[str, str]]]:
    """The JSON Web Key Set that verifies access tokens."""
    return {"keys": [key.jwk()]}


def invalid_token(reason: str) -> ApiError:
    """401 ``invalid-token`` with the reason."""
    return ApiError(401, "invalid-token", f"access token refused: {reason}")


class AccessTokens:
    """Issue and verify EdDSA access tokens signed by the cloud key."""

    def __init__(self, key: CloudKey, issuer: str, ttl_s: int, clock: Clock | None = None) -> None:
        self.key = key
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.clock: Clock = clock or WallClock()

    def issue(self, who: Principal) -> str:
        """A signed token for a person (``kid`` header names the cloud key)."""
        now = int(self.clock.now())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": str(who.id),
            "name": who.name,
            "role": who.role.value,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(
            claims, self.key.private, algorithm=ALGORITHM, headers={"kid": self.key.kid}
        )

    def verify(self, token: str) -> Principal:
        """The token's person, or 401 (``token-expired`` / ``invalid-token``) saying why."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise invalid_token("it is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise invalid_token(f"algorithm {alg!r} is not accepted (only {ALGORITHM})")
        if header.get("kid", self.key.kid) != self.key.kid:
            raise invalid_token(f"it was signed by an unknown key {header.get('kid')!r}")
        try:
            claims = jwt.decode(
                token,
                self.key.public,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(
                401, "token-expired", "access token expired: refresh it or log in again"
            ) from None
        except jwt.InvalidSignatureError:
            raise invalid_token("the signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid_token(f"the {exc.claim!r} claim is missing") from None
        except jwt.InvalidIssuerError:
            raise invalid_token(f"it was not issued by {self.issuer!r}") from None
        except jwt.InvalidAudienceError:
            raise invalid_token(f"its audience is not {AUDIENCE!r}") from None
        except jwt.ImmatureSignatureError:
            raise invalid_token("it was issued in the future") from None
        except jwt.InvalidTokenError as exc:
            raise invalid_token(str(exc) or "it is malformed") from None
        return self._principal(claims)

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        sub, name, role = claims["sub"], claims["name"], claims["role"]
        if not isinstance(sub, str) or not sub.isdigit():
            raise invalid_token("the 'sub' claim is not a user id")
        if not isinstance(name, str):
            raise invalid_token("the 'name' claim is not a string")
        if role not in {r.value for r in Role} or role == Role.RELAY.value:
            raise invalid_token(f"the 'role' claim {role!r} is not a person's role")
        return Principal(int(sub), name, Role(role))


class RefreshTokens:
    """Opaque refresh tokens, rotated on every use, with reuse detection."""

    def __init__(self, users: UserStore, ttl_s: int, clock: Clock | None = None) -> None:
        self.users = users
        self.ttl_s = ttl_s
        self.clock: Clock = clock or WallClock()

    def issue(self, user_id: int) -> str:
        """A new refresh token (only its digest is stored)."""
        token = secrets.token_urlsafe(32)
        now = self._now_ms()
        self.users.create_refresh_token(user_id, digest(token), now, now + self.ttl_s * 1000)
        return token

    def rotate(self, token: str) -> tuple[User, str]:
        """Spend ``token``: its user and a new token, or 401/403 saying why not."""
        new = secrets.token_urlsafe(32)
        now = self._now_ms()
        outcome, user = self.users.rotate_refresh_token(
            digest(token), digest(new), now, now + self.ttl_s * 1000
        )
        if outcome is Refresh.ROTATED and user is not None:
            return user, new
        if outcome is Refresh.REUSED:
            raise ApiError(
                401,
                "refresh-token-reused",
                "this refresh token was already used: as a precaution every refresh token"
                " of the account is now revoked; log in again",
            )
        if outcome is Refresh.EXPIRED:
            raise ApiError(401, "refresh-token-expired", "refresh token expired: log in again")
        if outcome is Refresh.DISABLED:
            raise ApiError(403, "account-disabled", "this account is disabled: ask an admin")
        raise ApiError(401, "invalid-refresh-token", "unknown refresh token: log in again")

    def revoke(self, token: str) -> None:
        """Revoke a refresh token (logout)."""
        self.users.revoke_refresh_token(digest(token), self._now_ms())

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)


@dataclass(frozen=True, slots=True)
class WebSession:
    """A live browser session (from the ``gruppetto_session`` cookie)."""

    user: User
    """Whose session it is (looked up, so role changes and disabling apply at once)."""
    csrf_token: str
    """Unsafe methods must echo it in ``X-CSRF-Token``."""
    token_sha256: str
    """Digest of the cookie value (identifies the session to revoke)."""


class WebSessions:
    """Server-side browser sessions: the cookie holds a random token, the database its digest."""

    def __init__(self, users: UserStore, ttl_s: int, clock: Clock | None = None) -> None:
        self.users = users
        self.ttl_s = ttl_s
        self.clock: Clock = clock or WallClock()

    def create(self, user_id: int) -> tuple[str, str]:
        """A new session: (cookie value, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._now_ms()
        self.users.create_session(user_id, digest(token), csrf, now, now + self.ttl_s * 1000)
        return token, csrf

    def lookup(self, token: str) -> WebSession | None:
        """The live session for a cookie value (None when unknown, expired, revoked, disabled)."""
        sha = digest(token)
        found = self.users.session(sha, self._now_ms())
        return None if found is None else WebSession(found[0], found[1], sha)

    def revoke(self, token: str) -> None:
        """End the session of a cookie value."""
        self.users.revoke_session(digest(token), self._now_ms())

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)
