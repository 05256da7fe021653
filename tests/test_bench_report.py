"""The benchmark report: figures from the results JSON into docs tables and a plot, the
hand-written part of the page kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import run_all


def test_the_report_renders_ratios_and_keeps_the_written_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "stream.json").write_text(
        json.dumps(
            {
                "machine": {"cpus": 2, "load_average_at_start": [0.5, 0, 0]},
                "finished": "2026-11-26T10:00:00+00:00",
                "settings": {"events": 1000},
                "featurestore": {"events_per_s": 30000},
                "floor_consume_parse": {"events_per_s": 120000},
                "freshness": {"p99_ms": 400.0},
            }
        )
    )
    (results / "online_lookup.json").write_text(
        json.dumps(
            {
                "machine": {"cpus": 2},
                "in_process": {
                    "1_entities": {
                        "featurestore": {"p50_ms": 0.1},
                        "floor_redis_pipeline": {"p50_ms": 0.1},
                    }
                },
                "feast_sdk": {"1_entities": {"feast_sdk": {"p50_ms": 0.3}}},
                "http": {
                    "1_workers": {
                        "featurestore": {"8_connections": {"requests_per_s": 4000}},
                        "feast_serve": {"8_connections": {"requests_per_s": 1000}},
                        "bare_fastapi": {"8_connections": {"requests_per_s": 8000}},
                    }
                },
            }
        )
    )
    (results / "pit_join.json").write_text("{}")  # an unexpected shape is reported
    monkeypatch.setattr(run_all, "RESULTS", results)
    doc, png = tmp_path / "benchmarks.md", tmp_path / "benchmarks.png"
    doc.write_text("# Benchmarks\n\nIntro.\n\n## Hand-written analysis\n\nKept.\n")
    rows, lines = run_all.collect()
    run_all.write_report(rows, lines, doc, png)
    run_all.write_report(rows, lines, doc, png)  # twice: the section is replaced, not added
    text = doc.read_text()
    assert text.count(run_all.BEGIN) == 1
    assert "## Hand-written analysis\n\nKept." in text
    assert (
        "| Kafka stream, end to end | 1,000 events | 30,000 events/s | - | 120,000 | - | 0.25x |"
        in text
    )
    lookup = "| online lookup, in process (p50) | 1 entity x 5 features | 0.1 ms | 0.3 | 0.1 |"
    assert f"{lookup} 3.00x | 1.00x |" in text
    http = "| online lookup over HTTP (8 connections) | 1 workers | 4,000 req/s | 1,000 | 8,000 |"
    assert f"{http} 4.00x | 0.50x |" in text
    assert "`pit_join`" in text
    assert "unexpected shape" in text
    assert "`materialize`: no results" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
