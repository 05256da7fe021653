"""The example deployments in infra/ stay consistent with the CLI and the example repo."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from featurestore.cli import app

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"


def commands() -> list[list[str]]:
    """Every `featurestore ...` argument list in the compose file and the manifests."""
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if (
                    key in ("command", "args")
                    and isinstance(value, list)
                    and value[:1] == ["featurestore"]
                ):
                    found.append([str(v) for v in value[1:]])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in [INFRA / "docker-compose.yml", *sorted((INFRA / "k8s").glob("*.yaml"))]:
        for doc in yaml.safe_load_all(path.read_text()):
            walk(doc)
    cmd = re.search(r"CMD \[(.*)\]", (INFRA / "Dockerfile").read_text())
    assert cmd is not None
    found.append([a.strip().strip('"') for a in cmd.group(1).split(",")][1:])
    return found


@pytest.mark.parametrize("args", commands(), ids=lambda a: " ".join(a))
def test_every_command_in_the_deployments_exists_with_its_options(args: list[str]) -> None:
    """Each command parses (its verbs and options exist): run with --help appended after
    the options, which typer checks before acting."""
    verbs = [a for a in args if not a.startswith("-")]
    assert verbs, args
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"featurestore {' '.join(args)}: {result.output}"


def test_the_deployments_set_what_the_example_repo_reads() -> None:
    read = set(
        re.findall(
            r"\$\{(FEATURESTORE_[A-Z_]+)", (ROOT / "feature_repo" / "featurestore.yaml").read_text()
        )
    )
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    env = compose["x-featurestore"]["environment"]
    assert read <= set(env), read - set(env)
    k8s = {}
    for doc in yaml.safe_load_all((INFRA / "k8s" / "config.yaml").read_text()):
        k8s.update(doc.get("data", {}) or {})
        k8s.update(doc.get("stringData", {}) or {})
    assert read <= set(k8s), read - set(k8s)
