#!/usr/bin/env bash
# Set up everything the demo and the tests need on a fresh Debian 12 machine
# (Python >= 3.11, Java 17, root or sudo): Debian's redis-server and
# postgresql, and a virtualenv in .venv with featurestore and all its extras installed.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: '$*' needs root; run as root or install sudo." >&2; exit 1; fi
}

# Debian packages: redis-server for the online store, postgresql for the
# shared-registry tests, chromium for the web UI's browser tests (driven by
# Playwright for Python; Playwright never downloads a browser here). We start our own servers on our own ports, so the
# distribution's services are stopped and disabled.
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  for svc in redis-server postgresql; do
    as_root systemctl disable --now "$svc" >/dev/null 2>&1 || as_root service "$svc" stop >/dev/null 2>&1 || true
  done
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: featurestore needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11." >&2
  exit 1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "warning: java not found; Spark jobs need Java 17 (apt-get install openjdk-17-jre-headless)." >&2
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependency list changed.
stamp=.venv/.featurestore-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing featurestore and its dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c 'import featurestore, pyspark, kafka, duckdb, great_expectations' \
    || { echo "error: installing dependencies failed; see pip's output above." >&2; exit 1; }
  echo "$want" > "$stamp"
fi
log "setup done: .venv/bin/featurestore is ready"
