"""``gruppetto cloud``: serve the cloud, and its administrative commands."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

LIMITS = (
    (
        "--login-attempts",
        "login_attempts",
        "Failed logins within the login window that lock an account.",
    ),
    (
        "--login-window",
        "login_window_s",
        "Seconds in which failed logins (per account and per address) count.",
    ),
    (
        "--lockout",
        "lockout_s",
        "Seconds a locked account stays locked (an admin can unlock it sooner).",
    ),
    (
        "--address-login-failures",
        "address_login_failures",
        "Failed logins one client address may make per login window before a 429.",
    ),
    (
        "--registrations",
        "registrations_per_address",
        "Self-service registrations per client address per registration window.",
    ),
    (
        "--registration-window",
        "registration_window_s",
        "Seconds of the registration rate-limit window.",
    ),
    (
        "--temp-password-ttl",
        "temporary_password_ttl_s",
        "Seconds an admin's temporary password may be used to choose a new one.",
    ),
    ("--ingest-rate", "ingest_rate_per_s", "Uploads per second one relay may post to /api/ingest."),
    (
        "--tracker-uploads",
        "tracker_uploads",
        "Requests to /v1/hello and /v1/batches per client address per tracker window.",
    ),
    ("--tracker-window", "tracker_window_s", "Seconds of the tracker upload rate-limit window."),
)
"""Flags of the rate limits and the lock-out policy: flag, setting, help."""


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one ``--flag N`` per entry of :data:`LIMITS` (None when not given)."""
    from .settings import ENVIRONMENT, Settings

    defaults = {spec.name: spec.default for spec in dataclasses.fields(Settings)}
    for flag, name, text in reversed(LIMITS):
        command = click.option(
            flag,
            name,
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help=f"{text} [env {ENVIRONMENT[name]}; default {defaults[name]}]",
        )(command)
    return command


@click.group(invoke_without_command=True)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GRUPPETTO_DATA",
    default="gruppetto-data",
    show_default=True,
    help="Directory of the databases, keys and certificates (env GRUPPETTO_DATA).",
)
@click.option(
    "--bind",
    default="127.0.0.1:8000",
    show_default=True,
    envvar="GRUPPETTO_BIND",
    help="TCP HOST:PORT for HTTP/1.1 and HTTP/2.",
)
@click.option(
    "--quic-bind",
    default=None,
    envvar="GRUPPETTO_QUIC_BIND",
    help="UDP HOST:PORT for HTTP/3 (needs TLS; a self-signed certificate is made).",
)
@click.option(
    "--tls/--no-tls",
    default=False,
    show_default=True,
    help="Serve HTTPS (self-signed in DATA/tls unless --certfile/--keyfile).",
)
@click.option("--certfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--keyfile", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@limit_options
@click.pass_context
def cloud(
    ctx: click.Context,
    /,
    data_dir: Path,
    bind: str,
    quic_bind: str | None,
    tls: bool,
    certfile: Path | None,
    keyfile: Path | None,
    **limits: int | None,
) -> None:
    """Run the cloud service (API, ingest, history) until Ctrl-C.

    Plain HTTP by default for local use; --tls (or --certfile/--keyfile) adds HTTPS and
    HTTP/2, and --quic-bind adds HTTP/3. Subcommands administer the data directory.

    Every limit flag has an environment variable (a flag given wins). Also from the
    environment: GRUPPETTO_ACCESS_TTL (access-token lifetime, s, default 900),
    GRUPPETTO_DEVICE_CERT_TTL (device certificate validity, s, default 604800),
    GRUPPETTO_ISSUER, GRUPPETTO_SECURE_COOKIES (true behind a TLS-terminating proxy;
    default: Secure cookies exactly when this process serves TLS).

    Example:

        gruppetto cloud --data ./cloud-data --bind 127.0.0.1:8000
    """
    ctx.obj = data_dir
    if ctx.invoked_subcommand is not None:
        return
    from .serve import ensure_self_signed, hypercorn_config, run
    from .settings import Settings, SettingsError

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("give both --certfile and --keyfile, or neither")
    try:
        overrides: dict[str, Any] = {**limits, "data_dir": data_dir}
        settings = Settings.from_environ(None, **overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    if (tls or quic_bind) and certfile is None:
        certfile, keyfile = ensure_self_signed(data_dir)
    if "GRUPPETTO_SECURE_COOKIES" not in os.environ:  # behind a TLS proxy: set it to true
        settings = dataclasses.replace(settings, secure_cookies=certfile is not None)
    config = hypercorn_config(bind, quic_bind=quic_bind, certfile=certfile, keyfile=keyfile)
    scheme = "https" if certfile else "http"
    click.echo(f"gruppetto cloud: {scheme}://{bind}  data: {data_dir}", err=True)
    run(settings, config)


@cloud.command("create-admin")
@click.option("--username", required=True, help="The admin's username (3-32 of a-z 0-9 _ . -).")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Read the password from this file ('-' for stdin); without it, prompt twice.",
)
@click.option("--email", default=None, help="Contact address (optional).")
@click.pass_obj
def create_admin(
    data_dir: Path, username: str, password_file: Path | None, email: str | None
) -> None:
    """Create an administrator account in the data directory.

    The password comes from --password-file or, in a terminal, from a hidden prompt
    (asked twice). There is no default password. It must be at least 10 characters and
    not the username. Other accounts are then created by this admin through the API.

    \b
    Example:
        gruppetto cloud --data ./cloud-data create-admin --username root --password-file pw.txt
    """
    import sys

    from .admin import AdminError, read_password_file
    from .admin import create_admin as create

    try:
        if password_file is not None:
            password = read_password_file(password_file)
        elif sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            raise AdminError("no password: give --password-file FILE, or run in a terminal")
        user = create(data_dir, username, password, email)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created admin {user.username} (id {user.id}) in {data_dir}")
