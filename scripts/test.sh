#!/usr/bin/env bash
# Set up and run the whole test suite. The tests start their own Redis and
# Kafka-protocol broker on free ports (and Spark in local mode), so nothing
# needs to be running first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy  # files and strictness: [tool.mypy] in pyproject.toml
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
