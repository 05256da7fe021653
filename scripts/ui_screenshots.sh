#!/usr/bin/env bash
# Refresh the screenshots in docs/images/ui: the browser tests (headless Chromium against
# `featurestore ui` on the example repo) save one PNG per page there instead of a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
export FEATURESTORE_UI_SHOTS="$PWD/docs/images/ui"
mkdir -p "$FEATURESTORE_UI_SHOTS"
.venv/bin/python -m pytest -q tests/test_ui_browser.py "$@"
ls -l "$FEATURESTORE_UI_SHOTS"
