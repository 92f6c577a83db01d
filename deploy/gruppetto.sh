#!/usr/bin/env bash
# Set Gruppetto up on this machine (idempotent) and run it.
#
#   bash deploy/gruppetto.sh demo      # the main job (see README)
#   bash deploy/gruppetto.sh test      # lint, type-check and the whole test suite
#   bash deploy/gruppetto.sh ARGS...   # any other `gruppetto` command, e.g. `cost --help`
#
# Needs only Python >= 3.11 (and root for the apt packages later parts need).
# The virtual environment lives in .venv (override with GRUPPETTO_VENV); packages are
# pinned by deploy/constraints.txt. A second run reinstalls nothing unless those change.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="${GRUPPETTO_VENV:-$here/.venv}"
say() { printf '[gruppetto] %s\n' "$*" >&2; }

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    say "Python 3.11 or newer is required; install it (apt-get install python3) and retry."
    exit 1
}

ensure_venv() {
    local extra="$1" stamp want
    if [ ! -x "$venv/bin/python" ]; then
        say "creating virtual environment in $venv"
        "$(find_python)" -m venv "$venv"
    fi
    want="$(cat pyproject.toml deploy/constraints.txt | sha256sum | cut -c1-16)-$extra"
    stamp="$venv/.gruppetto-installed"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing packages ($extra) - first run takes a minute"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -c deploy/constraints.txt -e ".[$extra]"
        echo "$want" >"$stamp"
    fi
}

cmd="${1:-demo}"
case "$cmd" in
test)
    shift || true
    ensure_venv test
    export PATH="$venv/bin:$PATH"
    say "ruff (lint and format)"
    ruff check .
    ruff format --check .
    say "mypy (strict)"
    mypy
    say "pytest"
    exec pytest "$@"
    ;;
*)
    ensure_venv test
    exec "$venv/bin/gruppetto" "$@"
    ;;
esac
