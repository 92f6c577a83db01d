"""Administrative actions on a data directory, run from the command line (no server needed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .auth.passwords import Passwords
from .auth.principal import Role
from .errors import ApiError
from .store.base import Database
from .store.credentials import validate_email, validate_password, validate_username
from .store.users import User, UserStore


class AdminError(Exception):
    """An administrative action failed; the message is one line saying what to do."""


def read_password_file(path: Path) -> str:
    """The password in a file (or ``-`` for stdin); one trailing newline is dropped."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"cannot read the password file {path}: {exc}") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise AdminError(f"the password file {path} is empty")
    return password


def create_admin(data_dir: Path, username: str, password: str, email: str | None = None) -> User:
    """Create an admin account in ``data_dir``'s system of record (a server may be running)."""
    try:
        name = validate_username(username)
        validate_password(password, name)
        validate_email(email)
    except ApiError as exc:
        raise AdminError(exc.message) from None
    db = Database(data_dir / "gruppetto.db")  # the path Stores.open uses
    try:
        users = UserStore(db)
        if users.by_username(name) is not None:
            raise AdminError(f"the user {name} already exists: choose another username")
        password_hash = Passwords().hash(password)
        try:
            return users.create(name, password_hash, Role.ADMIN, int(time.time() * 1000), email)
        except ApiError as exc:
            raise AdminError(exc.message) from None
    finally:
        db.close()
