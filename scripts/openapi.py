"""Write docs/openapi.json: the feature server's OpenAPI schema (docs/api.md links it).

.venv/bin/python scripts/openapi.py      # tests/test_serving.py checks it is current
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "openapi.json"


def schema() -> dict:
    """The schema of a server on a minimal repo (the routes do not depend on the repo)."""
    from featurestore.serving.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "featurestore.yaml").write_text("project: api\nregistry: data/registry.db\n")
        return create_app(repo).openapi()


def render() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
