"""Point-in-time join, side by side in one run: featurestore (DuckDB, Spark), the raw
DuckDB ASOF floor, and Feast 0.67 (file and DuckDB offline stores). Prints JSON.

One seeded data set per run: E entities x H hourly feature rows (5 float64 features,
TTL 1 day) with adversarial cases (ties on event time with different created times,
gaps longer than the TTL, late first and early last events, null feature values) and
N entity rows with adversarial cases too (before the first event, after the last, in
gaps, exactly on an event time, exactly on the TTL bound and 1 us either side,
duplicate rows, unknown entities). Every contender reads the same rows: featurestore
and the floor read the offline store's Parquet files, Feast reads one Parquet file
with the same rows.

Correctness: each contender's values are compared with featurestore DuckDB's (rows
matched by a passthrough ``row_id``), and featurestore DuckDB is checked against a
brute-force oracle on a subsample. Bounded memory: featurestore DuckDB with
``memory_limit`` on 10x the feature data, in a child process whose peak RSS is read.

    python benchmarks/pit_join.py                     # the full run (~15 min, 2 cores)
    python benchmarks/pit_join.py --entities 1000 --entity-rows 20000 --skip-memory
    python benchmarks/pit_join.py --profile           # also time engine variants

Feast runs in its own virtualenv (``--feast-python``), through ``_feast_pit.py``:

    python3 -m venv /tmp/feast-venv
    /tmp/feast-venv/bin/pip install 'feast[redis,duckdb]==0.67.*'
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent
FEATURES = [f"f{i}" for i in range(5)]
REFS = [f"stats:{f}" for f in FEATURES]
HOUR_US = 3_600_000_000
TTL_US = 24 * HOUR_US
START_US = 1_767_571_200_000_000  # 2026-01-05T00:00:00Z
UTC_US = pa.timestamp("us", tz="UTC")

FEATURE_REPO_YAML = """\
project: pitbench
registry: data/registry.db
offline_store:
  path: data/offline
"""

FEATURE_REPO_DEFS = """\
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource

entity = Entity(name="entity", join_key="entity_id", dtype=Int64)

# A placeholder: the benchmark writes the offline store directly.
stats_source = ParquetSource(
    name="stats_source",
    path="data/source",
    timestamp_field="event_timestamp",
    created_timestamp_field="created_timestamp",
)

stats = FeatureView(
    name="stats",
    entities=[entity],
    source=stats_source,
    schema=[Field(name=f"f{i}", dtype=Float64) for i in range(5)],
    ttl=timedelta(days=1),
)
"""

CATEGORIES = [
    "random",
    "on_event",
    "ttl_exact",
    "ttl_minus_1us",
    "ttl_plus_1us",
    "in_gap",
    "before_first",
    "after_last",
    "unknown_entity",
    "duplicate",
]


def log(message: str) -> None:
    print(f"[pit_join {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def generate_features(entities: int, hours: int, seed: int) -> tuple[pa.Table, dict[str, Any]]:
    """E x H hourly rows minus gaps, plus tie rows; returns the table and edge facts."""
    if hours < 24:
        raise SystemExit("--hours must be at least 24 (gaps longer than the TTL need room)")
    rng = np.random.default_rng(seed)
    n = entities * hours
    ent = np.repeat(np.arange(entities, dtype=np.int64), hours)
    hour = np.tile(np.arange(hours, dtype=np.int64), entities)
    phase = rng.integers(0, HOUR_US, entities)  # entities do not tick in step
    ev = START_US + hour * HOUR_US + phase[ent]
    keep = np.ones(n, dtype=bool)

    perm = rng.permutation(entities)
    k = max(1, entities // 20)
    gap_ents, late_ents, early_ents = perm[:k], perm[k : 2 * k], perm[2 * k : 3 * k]
    # Gaps of 25..48 missing hours: consecutive events 26..49 h apart, longer than the TTL.
    g0 = rng.integers(hours // 4, max(hours // 4 + 1, hours // 2), k)
    glen = rng.integers(25, 49, k)
    for e, s, ln in zip(gap_ents, g0, glen, strict=True):
        keep[e * hours + s : e * hours + min(hours - 1, s + ln)] = False
    # Late first events and early last events.
    for e, s in zip(late_ents, rng.integers(5, max(6, hours // 3), k), strict=True):
        keep[e * hours : e * hours + s] = False
    for e, s in zip(early_ents, rng.integers(2 * hours // 3, hours - 5, k), strict=True):
        keep[e * hours + s : (e + 1) * hours] = False

    ent, ev = ent[keep], ev[keep]
    base = len(ent)
    created = ev + rng.integers(1_000_000, 600_000_000, base)  # written 1 s..10 min later
    values = rng.standard_normal((base, len(FEATURES)))
    nulls = np.zeros((base, len(FEATURES)), dtype=bool)
    nulls[:, 0] = rng.random(base) < 0.005  # the latest row may carry a null: it wins anyway

    # Ties: 2% of rows get a second row at the same event time with another created
    # time (later or earlier), 0.5% a third one on the other side.
    tie1 = rng.choice(base, size=base // 50, replace=False)
    sign = np.where(rng.random(len(tie1)) < 0.5, -1, 1)
    d1 = sign * rng.integers(1_000_000, HOUR_US, len(tie1))
    tie2 = tie1[: base // 200]
    d2 = -sign[: len(tie2)] * rng.integers(1_000_000, HOUR_US, len(tie2))
    tie_idx = np.concatenate([tie1, tie2])
    all_ent = np.concatenate([ent, ent[tie_idx]])
    all_ev = np.concatenate([ev, ev[tie_idx]])
    all_created = np.concatenate([created, created[tie_idx] + np.concatenate([d1, d2])])
    all_values = np.concatenate([values, rng.standard_normal((len(tie_idx), len(FEATURES)))])
    all_nulls = np.concatenate([nulls, np.zeros((len(tie_idx), len(FEATURES)), dtype=bool)])

    columns: dict[str, Any] = {
        "entity_id": pa.array(all_ent, pa.int64()),
        "event_timestamp": pa.array(all_ev, pa.int64()).cast(UTC_US),
        "created_timestamp": pa.array(all_created, pa.int64()).cast(UTC_US),
    }
    for i, name in enumerate(FEATURES):
        columns[name] = pa.array(all_values[:, i], pa.float64(), mask=all_nulls[:, i])
    table = pa.table(columns)

    # Facts about the base rows (sorted by entity, then time) that entity rows aim at.
    same_next = np.zeros(base, dtype=bool)
    same_next[:-1] = ent[1:] == ent[:-1]
    next_ev = np.full(base, -1, dtype=np.int64)
    next_ev[:-1] = ev[1:]
    edge = ~same_next | (next_ev - ev > TTL_US)  # no event within the TTL after this one
    present, first_idx = np.unique(ent, return_index=True)
    last_idx = np.concatenate([first_idx[1:], [base]]) - 1
    facts = {
        "ev": ev,
        "ev_ent": ent,
        "edge_ent": ent[edge],
        "edge_ev": ev[edge],
        "edge_next": np.where(same_next[edge], next_ev[edge], -1),
        "present": present,
        "first_ev": ev[first_idx],
        "last_ev": ev[last_idx],
        "end_us": int(ev.max()),
        "rows": table.num_rows,
        "tie_rows": len(tie_idx),
        "gap_entities": k,
        "late_start_entities": k,
        "early_end_entities": k,
    }
    return table, facts


def generate_entities(
    n: int, entities: int, facts: dict[str, Any], seed: int
) -> tuple[pa.Table, np.ndarray]:
    """N entity rows (entity_id, event_timestamp, row_id) and each row's category."""
    rng = np.random.default_rng(seed)
    shares = {
        "on_event": 0.05,
        "ttl_exact": 0.04,
        "ttl_minus_1us": 0.01,
        "ttl_plus_1us": 0.02,
        "in_gap": 0.03,
        "before_first": 0.03,
        "after_last": 0.03,
        "unknown_entity": 0.03,
        "duplicate": 0.05,
    }
    counts = {c: int(n * s) for c, s in shares.items()}
    counts["random"] = n - sum(counts.values())
    ents, times, cats = [], [], []

    def add(cat: str, e: np.ndarray, t: np.ndarray) -> None:
        ents.append(e.astype(np.int64))
        times.append(t.astype(np.int64))
        cats.append(np.full(len(e), CATEGORIES.index(cat), dtype=np.int8))

    present, first_ev, last_ev = facts["present"], facts["first_ev"], facts["last_ev"]
    edge_ev, edge_next, edge_ent = facts["edge_ev"], facts["edge_next"], facts["edge_ent"]

    c = counts["random"]
    add(
        "random",
        present[rng.integers(0, len(present), c)],
        rng.integers(START_US - 6 * HOUR_US, facts["end_us"] + 30 * HOUR_US, c),
    )
    c = counts["on_event"]
    pick = rng.integers(0, len(facts["ev"]), c)
    add("on_event", facts["ev_ent"][pick], facts["ev"][pick])
    for cat, delta in (("ttl_exact", 0), ("ttl_minus_1us", -1), ("ttl_plus_1us", 1)):
        pick = rng.integers(0, len(edge_ev), counts[cat])
        add(cat, edge_ent[pick], edge_ev[pick] + TTL_US + delta)
    c = counts["in_gap"]
    pick = rng.integers(0, len(edge_ev), c)
    lo = edge_ev[pick] + TTL_US + 1
    hi = np.where(edge_next[pick] > 0, edge_next[pick], lo + 3 * TTL_US)
    add("in_gap", edge_ent[pick], lo + (rng.random(c) * (hi - lo)).astype(np.int64))
    c = counts["before_first"]
    pick = rng.integers(0, len(present), c)
    back = rng.integers(1, 2 * TTL_US, c)
    back[: c // 10] = 1  # 1 us before the first event
    add("before_first", present[pick], first_ev[pick] - back)
    c = counts["after_last"]
    pick = rng.integers(0, len(present), c)
    add("after_last", present[pick], last_ev[pick] + rng.integers(0, 2 * TTL_US, c))
    c = counts["unknown_entity"]
    unknown = rng.integers(entities, 2 * entities + 1, c)
    unknown[: c // 3] = -1 - rng.integers(0, 1000, c // 3)
    add("unknown_entity", unknown, rng.integers(START_US, facts["end_us"], c))
    e_all, t_all = np.concatenate(ents), np.concatenate(times)
    c = counts["duplicate"]
    pick = rng.integers(0, len(e_all), c)
    add("duplicate", e_all[pick], t_all[pick])

    e_all, t_all, c_all = np.concatenate(ents), np.concatenate(times), np.concatenate(cats)
    order = rng.permutation(n)
    table = pa.table(
        {
            "entity_id": pa.array(e_all[order], pa.int64()),
            "event_timestamp": pa.array(t_all[order], pa.int64()).cast(UTC_US),
            "row_id": pa.array(np.arange(n, dtype=np.int64)),
        }
    )
    return table, c_all[order]


# --------------------------------------------------------------------------- oracle


class Oracle:
    """Brute force: for each entity row, scan all rows of its entity."""

    def __init__(self, features: pa.Table) -> None:
        ent = features.column("entity_id").to_numpy()
        order = np.argsort(ent, kind="stable")
        self.ent = ent[order]
        self.ev = features.column("event_timestamp").cast(pa.int64()).to_numpy()[order]
        self.created = features.column("created_timestamp").cast(pa.int64()).to_numpy()[order]
        self.values = [features.column(f).to_pylist() for f in FEATURES]
        self.order = order

    def lookup(self, entity: int, t: int) -> list[float | None]:
        lo = int(np.searchsorted(self.ent, entity, "left"))
        hi = int(np.searchsorted(self.ent, entity, "right"))
        best, best_key = None, None
        for j in range(lo, hi):
            ev = int(self.ev[j])
            if t - TTL_US <= ev <= t:
                key = (ev, int(self.created[j]))
                if best_key is None or key > best_key:
                    best, best_key = j, key
        if best is None:
            return [None] * len(FEATURES)
        row = int(self.order[best])
        return [column[row] for column in self.values]


def check_oracle(
    features: pa.Table, entities: pa.Table, result: pa.Table, sample: int, seed: int
) -> dict[str, Any]:
    oracle = Oracle(features)
    rng = np.random.default_rng(seed)
    n = entities.num_rows
    rows = np.sort(rng.choice(n, size=min(sample, n), replace=False))
    ent = entities.column("entity_id").to_numpy()
    ts = entities.column("event_timestamp").cast(pa.int64()).to_numpy()
    got = result.sort_by("row_id")
    got_values = [got.column(f).to_pylist() for f in FEATURES]
    bad_rows, bad_cells, matched = 0, 0, 0
    examples = []
    for r in rows:
        want = oracle.lookup(int(ent[r]), int(ts[r]))
        have = [column[r] for column in got_values]
        matched += want[1] is not None
        diff = sum(w != h for w, h in zip(want, have, strict=True))
        if diff:
            bad_rows += 1
            bad_cells += diff
            if len(examples) < 5:
                examples.append({"row_id": int(r), "want": want, "have": have})
    return {
        "rows_checked": len(rows),
        "rows_with_a_match": matched,
        "mismatched_rows": bad_rows,
        "mismatched_values": bad_cells,
        "examples": examples,
    }


# --------------------------------------------------------------------------- comparison


def feature_matrix(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """row ids, values (n x 5, NaN for null) and a null mask."""
    rows = table.column("row_id").to_numpy()
    values = np.empty((table.num_rows, len(FEATURES)))
    nulls = np.empty((table.num_rows, len(FEATURES)), dtype=bool)
    for i, f in enumerate(FEATURES):
        column = table.column(f).cast(pa.float64())
        nulls[:, i] = column.is_null().to_numpy(zero_copy_only=False)
        values[:, i] = column.fill_null(np.nan).to_numpy()
    return rows, values, nulls


def compare(reference: pa.Table, other: pa.Table, categories: np.ndarray, n: int) -> dict[str, Any]:
    """Rows kept, and non-null values that differ from the reference (by row_id)."""
    ref_rows, ref_values, ref_nulls = feature_matrix(reference)
    if not np.array_equal(ref_rows, np.arange(n)):
        raise AssertionError("the reference must hold every row once, in input order")
    rows, values, nulls = feature_matrix(other)
    unique_rows = np.unique(rows)
    want_v, want_n = ref_values[rows], ref_nulls[rows]
    either = ~(want_n & nulls)  # a value on at least one side
    same = (want_n & nulls) | (~want_n & ~nulls & (want_v == values))
    differ = either & ~same
    lost = np.setdiff1d(np.arange(n), unique_rows)
    lost_by_cat = {
        CATEGORIES[c]: int(k)
        for c, k in zip(*np.unique(categories[lost], return_counts=True), strict=True)
    }
    return {
        "rows_out": len(rows),
        "rows_kept_fraction": round(len(unique_rows) / n, 6),
        "duplicated_rows": int(len(rows) - len(unique_rows)),
        "lost_rows_by_category": lost_by_cat,
        "nonnull_values": int(either.sum()),
        "differing_values": int(differ.sum()),
        "differing_fraction": round(float(differ.sum() / max(1, either.sum())), 6),
        "value_where_reference_null": int((differ & want_n).sum()),
        "null_where_reference_value": int((differ & nulls).sum()),
    }


def matched_by_category(reference: pa.Table, categories: np.ndarray) -> dict[str, float]:
    """Share of entity rows that got a feature row (f1 has no nulls), per category."""
    matched = reference.column("f1").is_valid().to_numpy(zero_copy_only=False)
    return {
        name: round(float(matched[categories == c].mean()), 4)
        for c, name in enumerate(CATEGORIES)
        if (categories == c).any()
    }


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> tuple[dict, Any]:
    if warmup:
        fn()
    samples, result = [], None
    for _ in range(repeats):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return {
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "runs": len(samples),
        "warmup": warmup,
    }, result


def interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    keep: Callable[[str, Any], Any] | None = None,
) -> tuple[dict[str, dict], dict[str, Any]]:
    """Time several functions in rounds (one run of each per round) after one warm-up
    of each, so load from other processes on a shared machine hits all of them alike.
    ``keep(name, warm-up result)`` says what to keep of each warm-up result."""
    kept = {}
    for name, fn in fns.items():
        result = fn()
        kept[name] = keep(name, result) if keep else None
        del result
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    stats = {
        name: {
            "median_s": round(statistics.median(s), 4),
            "min_s": round(min(s), 4),
            "runs": len(s),
            "warmup": True,
            "interleaved": True,
        }
        for name, s in samples.items()
    }
    return stats, kept


def proc_status_mb(field: str) -> float | None:
    """VmRSS / VmHWM of this process in MB (Linux). VmHWM is the peak of this address
    space only; ru_maxrss would also count the parent that forked this child."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    hwm = proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------- contenders


def make_repo(path: Path) -> Any:
    from featurestore import FeatureStore

    path.mkdir(parents=True)
    (path / "featurestore.yaml").write_text(FEATURE_REPO_YAML)
    (path / "stats.py").write_text(FEATURE_REPO_DEFS)
    store = FeatureStore(path)
    store.apply()
    return store


def write_offline(store: Any, features: pa.Table) -> tuple[float, list[str]]:
    view = store.snapshot().feature_view("stats", 1)
    start = time.perf_counter()
    store.offline_store().write(view, 1, features)
    seconds = time.perf_counter() - start
    table = store.offline_store().table("stats", 1)
    return seconds, [str(table.root / f.path) for f in table.manifest().files]


def floor_query(files: list[str]) -> str:
    """The simplest correct-ish query: ASOF + TTL, no dedupe of event-time ties."""
    paths = ", ".join(f"'{p}'" for p in files)
    cases = ", ".join(
        f"CASE WHEN epoch_us(f.ft) >= epoch_us(e.event_timestamp) - {TTL_US} THEN f.{c} END AS {c}"
        for c in FEATURES
    )
    return (
        f"SELECT e.entity_id, e.event_timestamp, e.row_id, {cases} FROM entities e "
        f"ASOF LEFT JOIN (SELECT entity_id, event_timestamp AS ft, {', '.join(FEATURES)} "
        f"FROM read_parquet([{paths}])) f "
        "ON e.entity_id = f.entity_id AND e.event_timestamp >= f.ft ORDER BY e.row_id"
    )


def run_floor(entities: pa.Table, files: list[str]) -> pa.Table:
    conn = duckdb.connect()
    try:
        conn.register("entities", entities)
        return conn.sql(floor_query(files)).to_arrow_table()
    finally:
        conn.close()


def run_feast(
    args: argparse.Namespace,
    store: str,
    features_file: Path,
    entities_file: Path,
    tmp: Path,
    warmup: bool,
) -> tuple[dict[str, Any], pa.Table | None]:
    out = tmp / f"feast-{store}-{entities_file.stem}.parquet"
    cmd = [
        args.feast_python,
        str(ROOT / "_feast_pit.py"),
        "--store",
        store,
        "--features",
        str(features_file),
        "--entities",
        str(entities_file),
        "--out",
        str(out),
        "--repeats",
        str(args.slow_repeats),
    ]
    if not warmup:
        cmd.append("--no-warmup")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.feast_timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        log(f"feast {store} failed:\n{proc.stderr[-3000:]}")
        return {"error": proc.stderr.strip().splitlines()[-1:], "wall_s": round(wall, 1)}, None
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_wall_s"] = round(wall, 1)
    return report, pq.read_table(out)


# --------------------------------------------------------------------------- profiling


def reduce_ties(features: pa.Table) -> pa.Table:
    """Keep, per (entity, event time), only the row with the largest created time.

    The prototype of a write-time reduction: the join's tie-break (largest created
    time, then latest write) is a max, so a row that loses a tie inside one write can
    never win later, and dropping it changes no join result.
    """
    ordered = features.sort_by(
        [
            ("entity_id", "ascending"),
            ("event_timestamp", "ascending"),
            ("created_timestamp", "ascending"),
        ]
    )
    ent = ordered.column("entity_id").to_numpy()
    ev = ordered.column("event_timestamp").cast(pa.int64()).to_numpy()
    last = np.ones(len(ent), dtype=bool)
    last[:-1] = (ent[1:] != ent[:-1]) | (ev[1:] != ev[:-1])
    return ordered.filter(pa.array(last))


def profile_variants(
    store: Any, features: pa.Table, entities: pa.Table, repeats: int, ref: pa.Table
) -> dict[str, Any]:
    """Where featurestore's DuckDB time goes, and prototypes of cheaper plans.

    Each variant runs on a fresh connection set up like the engine's and returns the
    features of every entity row to Arrow; ``equal_to_featurestore`` checks its values.
    """
    from featurestore.offline.duckdb_engine import DuckDBEngine, _join_sql, _q, _with_micros
    from featurestore.offline.join import ROW, TS, build_request, read_entities
    from featurestore.offline.training import fingerprint_table

    snapshot = store.snapshot()
    resolved = snapshot.resolve_all(REFS)
    out: dict[str, Any] = {}

    def request() -> Any:
        table = read_entities(entities, "event_timestamp")
        return build_request(table, resolved, snapshot, store.config.offline_store_path)

    req = request()
    view = req.views[0]
    files = [p for p, _ in view.files]
    out["build_request"], _ = timed(request, repeats)
    out["fingerprint_entities"], _ = timed(lambda: fingerprint_table(entities), repeats)

    # The same rows with ties reduced at write time, in the offline store layout
    # (written as version 2 of the view's table; the registry does not know it).
    reduced = reduce_ties(features)
    tie_free = store.offline_store().table("stats", 2)
    if not tie_free.manifest().files:  # once per run, whatever the entity-row sizes
        store.offline_store().write(snapshot.feature_view("stats", 1), 2, reduced)
    tie_free_files = [str(tie_free.root / f.path) for f in tie_free.manifest().files]

    def run_sql(sql: str, post: Callable[[pa.Table], pa.Table] | None = None) -> Callable:
        def go() -> pa.Table:
            conn = DuckDBEngine()._connect()
            try:
                conn.register("entities", _with_micros(req.entities.select([ROW, TS, "entity_id"])))
                table = conn.sql(sql).to_arrow_table()
            finally:
                conn.close()
            return post(table) if post else table

        return go

    feats = ", ".join(_q(f) for f in FEATURES)
    cases = ", ".join(
        f"CASE WHEN f.__t >= e.{_q(TS)} - {view.ttl_us} THEN f.{_q(c)} END AS {_q(c)}"
        for c in FEATURES
    )
    order = f" ORDER BY e.{_q(ROW)}"

    def scatter(table: pa.Table) -> pa.Table:
        # ROW is a permutation of 0..n-1: invert it in O(n) instead of sorting in SQL.
        rows = table.column(ROW).to_numpy()
        inverse = np.empty(len(rows), dtype=np.int64)
        inverse[rows] = np.arange(len(rows), dtype=np.int64)
        return table.combine_chunks().take(pa.array(inverse))

    def plain_asof(paths: list[str]) -> str:
        listed = ", ".join(f"'{p}'" for p in paths)
        src = (
            f"SELECT entity_id, epoch_us(event_timestamp) AS __t, {feats} "
            f"FROM read_parquet([{listed}])"
        )
        return (
            f"SELECT e.{_q(ROW)}, {cases} FROM entities e ASOF LEFT JOIN ({src}) f "
            f"ON e.entity_id = f.entity_id AND e.{_q(TS)} >= f.__t"
        )

    def composite_key_asof() -> str:
        # Ties broken inside the ASOF key, no window: one HUGEINT
        # (event us << 64) + (created us - base << 16) + write sequence. Null created
        # sorts lowest, as NULLS LAST does in the engine's descending row_number.
        # (A prototype: assumes created within 2^47 us of base, sequences < 2^16.)
        base = START_US - 365 * 24 * HOUR_US
        by_seq: dict[int, list[str]] = {}
        for path, seq in view.files:
            by_seq.setdefault(seq, []).append(path)
        union = " UNION ALL ".join(
            f"SELECT entity_id, event_timestamp, created_timestamp, {feats}, {seq} AS __seq "
            f"FROM read_parquet([{', '.join(repr(p) for p in ps)}])"
            for seq, ps in sorted(by_seq.items())
        )
        src = (
            "SELECT entity_id, epoch_us(event_timestamp) AS __t, "
            "(epoch_us(event_timestamp)::HUGEINT << 64) + "
            f"((coalesce(epoch_us(created_timestamp) - {base}, -1) + 1)::HUGEINT << 16) "
            f"+ __seq AS __k, {feats} FROM ({union})"
        )
        key = f"(e.{_q(TS)}::HUGEINT << 64) + ((1::HUGEINT << 64) - 1)"
        return (
            f"SELECT e.{_q(ROW)}, {cases} FROM entities e ASOF LEFT JOIN ({src}) f "
            f"ON e.entity_id = f.entity_id AND {key} >= f.__k"
        )

    engine_sql = _join_sql(req, [ROW])
    variants = {
        # What the engine runs today: QUALIFY dedupe, ASOF, ORDER BY row.
        "engine_sql": (engine_sql + order, None),
        # ... with the ORDER BY replaced by an O(n) scatter in Arrow.
        "engine_sql_scatter": (engine_sql, scatter),
        # Dedupe folded into the ASOF key (no window).
        "composite_key_asof": (composite_key_asof() + order, None),
        # No dedupe at all on the real files: the cost of the dedupe (wrong at ties).
        "no_dedupe": (plain_asof([p for p, _ in view.files]) + order, None),
        # Ties reduced at write time, so the read needs no dedupe (correct).
        "tie_free_write_no_dedupe": (plain_asof(tie_free_files) + order, None),
        "tie_free_write_no_dedupe_scatter": (plain_asof(tie_free_files), scatter),
    }
    # Many write sequences (hourly materialization: one append per hour of data), read
    # as today (one read_parquet per sequence, UNION ALL) and as one scan whose
    # sequence comes from a join on the file name.
    hourly = store.offline_store().table("stats", 3)
    if not hourly.manifest().files:
        ev = features.column("event_timestamp").cast(pa.int64()).to_numpy()
        hour = (ev - ev.min()) // HOUR_US
        for h in np.unique(hour):
            store.offline_store().write(
                snapshot.feature_view("stats", 1), 3, features.filter(pa.array(hour == h))
            )
    hourly_files = tuple((str(hourly.root / f.path), f.seq) for f in hourly.manifest().files)
    hourly_view = dataclasses.replace(view, files=hourly_files)
    hourly_req = dataclasses.replace(req, views=(hourly_view,))
    cols = ["entity_id", "event_timestamp", "created_timestamp", *FEATURES]
    select = ", ".join(_q(c) for c in cols)
    listed = ", ".join(f"'{p}'" for p, _ in hourly_files)
    seqs = ", ".join(f"('{p}', {q})" for p, q in hourly_files)
    single_scan_src = (
        f"SELECT {select}, epoch_us(event_timestamp) AS __t FROM (SELECT {select}, s.seq AS "
        f"__seq FROM read_parquet([{listed}], filename=true) r JOIN (VALUES {seqs}) "
        "s(fname, seq) ON r.filename = s.fname) QUALIFY row_number() OVER (PARTITION BY "
        "entity_id, event_timestamp ORDER BY created_timestamp DESC NULLS LAST, __seq DESC) = 1"
    )
    variants["hourly_writes_engine_sql"] = (_join_sql(hourly_req, [ROW]) + order, None)
    variants["hourly_writes_single_scan"] = (
        f"WITH f0 AS ({single_scan_src}) SELECT e.{_q(ROW)}, "
        + cases.replace("f.", "f0.")
        + f" FROM entities e ASOF LEFT JOIN f0 ON e.entity_id = f0.entity_id "
        f"AND e.{_q(TS)} >= f0.__t" + order,
        None,
    )

    ref_rows, ref_values, ref_nulls = feature_matrix(ref)

    def check(name: str, table: pa.Table) -> dict[str, bool]:
        if name in ("floor", "engine_join"):
            return {}
        t = table.select([ROW, *FEATURES]).rename_columns(["row_id", *FEATURES])
        ordered = bool(np.array_equal(t.column("row_id").to_numpy(), ref_rows))
        rows, values, nulls = feature_matrix(t.sort_by("row_id"))
        return {
            "in_input_order": ordered,
            "equal_to_featurestore": bool(
                np.array_equal(rows, ref_rows)
                and np.array_equal(nulls, ref_nulls)
                and np.array_equal(np.where(nulls, 0, values), np.where(ref_nulls, 0, ref_values))
            ),
        }

    fns: dict[str, Callable[[], Any]] = {
        "floor": lambda: run_floor(entities, files),
        "engine_join": lambda: DuckDBEngine().join(req),
    }
    fns.update({name: run_sql(sql, post) for name, (sql, post) in variants.items()})
    stats, checks = interleaved(fns, repeats, keep=check)
    for name in fns:
        out[name] = {**stats[name], **checks[name]}
        log(f"profile {name}: {out[name]['median_s']}s {checks[name]}")
    out["tie_free_rows_dropped_at_write"] = features.num_rows - reduced.num_rows
    out["hourly_write_sequences"] = len({q for _, q in hourly_files})
    return out


# --------------------------------------------------------------------------- memory


def child_memory_case(args: argparse.Namespace) -> None:
    """Child process: one engine configuration on a prepared repo; prints JSON."""
    from featurestore import FeatureStore
    from featurestore.offline.duckdb_engine import DuckDBEngine

    entities = pq.read_table(args.child_entities)
    store = FeatureStore(args.child_repo)
    engine = DuckDBEngine(memory_limit=args.child_limit) if args.child_limit else "duckdb"
    store.snapshot()
    before = proc_status_mb("VmRSS")
    before_peak = peak_rss_mb()
    samples = []
    rows = 0
    for _ in range(args.child_repeats):
        start = time.perf_counter()
        result = store.get_training_data(entities, features=REFS, engine=engine)
        samples.append(time.perf_counter() - start)
        rows = result.rows
        del result
        gc.collect()
    print(
        json.dumps(
            {
                "memory_limit": args.child_limit,
                "seconds": [round(s, 3) for s in samples],
                "median_s": round(statistics.median(samples), 3),
                "rows_out": rows,
                "rss_before_join_mb": before,
                "peak_rss_before_join_mb": before_peak,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def memory_case(
    args: argparse.Namespace, repo: Path, entities_file: Path, limit: str | None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-memory-case",
        "--child-repo",
        str(repo),
        "--child-entities",
        str(entities_file),
        "--child-repeats",
        str(args.slow_repeats),
    ]
    if limit:
        cmd += ["--child-limit", limit]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"memory case failed:\n{proc.stderr[-3000:]}")
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "../featurestore"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info["featurestore_commit"] = head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or "median_s" not in a or "median_s" not in b:
        return None
    return round(a["median_s"] / b["median_s"], 2)


def size_mb(text: str) -> float:
    units = {"KB": 1 / 1024, "MB": 1, "GB": 1024, "KIB": 1 / 1024, "MIB": 1, "GIB": 1024}
    upper = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if upper.endswith(unit):
            return float(upper[: -len(unit)]) * factor
    return float(upper) / 1024 / 1024


def goals(result: dict[str, Any], memory_limit: str) -> dict[str, Any]:
    """The issue's goals, as measured in this run (None where not measured)."""
    out: dict[str, Any] = {}
    for run in result.get("runs", []):
        r = run["ratio_to_floor"].get("featurestore_duckdb")
        out[f"duckdb_within_1.5x_floor_at_{run['entity_rows']}_rows"] = {
            "ratio": r,
            "met": r is not None and r <= 1.5,
        }
    oracle = [run["correctness"]["featurestore_duckdb_vs_oracle"] for run in result["runs"]]
    out["duckdb_equals_oracle"] = {
        "rows_checked": sum(o["rows_checked"] for o in oracle),
        "mismatched_rows": sum(o["mismatched_rows"] for o in oracle),
        "met": all(o["mismatched_rows"] == 0 for o in oracle),
    }
    mem = result.get("memory_bounded")
    if mem and "peak_rss_mb" in mem.get("with_memory_limit", {}):

        def growth(case: dict[str, Any] | None) -> float | None:
            if not case or "peak_rss_mb" not in case:
                return None
            return round(case["peak_rss_mb"] - case["rss_before_join_mb"], 1)

        limited = growth(mem["with_memory_limit"])
        unlimited = growth(mem.get("without_memory_limit"))
        lower = growth(mem.get("with_lower_memory_limit"))
        result_mb = mem["entity_rows"] * (3 + len(FEATURES)) * 8 / 1024 / 1024
        follows = (
            unlimited is not None and limited < unlimited and (lower is None or lower < limited)
        )
        out["bounded_memory_on_10x_features"] = {
            "criterion": (
                "peak RSS follows the memory limit: the join's RSS growth (peak minus "
                "before) is lower with the limit than without, and lower still with the "
                "lower limit"
            ),
            "rss_growth_mb": {
                "no_limit": unlimited,
                memory_limit: limited,
                **({mem["with_lower_memory_limit"]["memory_limit"]: lower} if lower else {}),
            },
            "result_table_mb": round(result_mb, 1),
            "feature_rows_in_memory_mb": mem["feature_rows_in_memory_mb"],
            "growth_within_limit_plus_2x_result": limited <= size_mb(memory_limit) + 2 * result_mb,
            "met": follows,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=10_000, help="feature entities (E)")
    parser.add_argument("--hours", type=int, default=100, help="hourly rows per entity (H)")
    parser.add_argument(
        "--entity-rows",
        default="100000,1000000",
        help="entity row counts (N), comma-separated; each size is a separate comparison",
    )
    parser.add_argument("--scale10", action="store_true", help="10x the feature entities")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of fast contenders")
    parser.add_argument("--slow-repeats", type=int, default=2, help="timed runs of Spark, Feast")
    parser.add_argument("--oracle-rows", type=int, default=2000)
    parser.add_argument("--memory-limit", default="512MB")
    parser.add_argument(
        "--lower-memory-limit",
        default="256MB",
        help="a second, lower limit on the 10x data: peak RSS should follow it ('' to skip)",
    )
    parser.add_argument("--feast-python", default="/tmp/feast-venv/bin/python")
    parser.add_argument("--feast-max-entity-rows", type=int, default=1_000_000)
    parser.add_argument("--feast-timeout", type=int, default=1800)
    parser.add_argument(
        "--feast-file-warmup-max-rows",
        type=int,
        default=100_000,
        help="above this many entity rows, Feast's file store runs without a warm-up",
    )
    parser.add_argument("--spark-max-entity-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--skip-spark", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--profile", action="store_true", help="time engine variants")
    parser.add_argument("--out", default=str(ROOT / "results" / "pit_join.json"))
    parser.add_argument("--child-memory-case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-repo", help=argparse.SUPPRESS)
    parser.add_argument("--child-entities", help=argparse.SUPPRESS)
    parser.add_argument("--child-limit", help=argparse.SUPPRESS)
    parser.add_argument("--child-repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory_case:
        child_memory_case(args)
        return

    from featurestore.offline.spark_engine import SparkEngine

    sizes = [int(s) for s in args.entity_rows.split(",")]
    n_entities = args.entities * (10 if args.scale10 else 1)
    result: dict[str, Any] = {"benchmark": "pit_join", "machine": machine()}
    feast_ok = not args.skip_feast and Path(args.feast_python).exists()
    if not args.skip_feast and not feast_ok:
        log(f"no Feast interpreter at {args.feast_python}: Feast is skipped (see --help)")

    with tempfile.TemporaryDirectory(prefix="pit_join-") as tmp_name:
        tmp = Path(tmp_name)
        log(f"generating {n_entities} x {args.hours} feature rows")
        features, facts = generate_features(n_entities, args.hours, args.seed)
        store = make_repo(tmp / "repo")
        write_s, files = write_offline(store, features)
        features_file = tmp / "features.parquet"
        pq.write_table(features, features_file, row_group_size=256_000)
        result["data"] = {
            "feature_entities": n_entities,
            "hours": args.hours,
            "feature_rows": features.num_rows,
            "tie_rows": facts["tie_rows"],
            "entities_with_gap_over_ttl": facts["gap_entities"],
            "entities_starting_late": facts["late_start_entities"],
            "entities_ending_early": facts["early_end_entities"],
            "features": len(FEATURES),
            "ttl": "1 day",
            "offline_files": len(files),
            "offline_write_s": round(write_s, 2),
            "seed": args.seed,
        }
        log(f"wrote {features.num_rows} rows in {write_s:.1f}s ({len(files)} files)")

        runs: list[dict[str, Any]] = []
        spark_session = None
        spark_startup = None
        for n in sizes:
            log(f"--- {n} entity rows")
            entities, categories = generate_entities(n, n_entities, facts, args.seed + n)
            entities_file = tmp / f"entities-{n}.parquet"
            pq.write_table(entities, entities_file)
            run: dict[str, Any] = {
                "entity_rows": n,
                "entity_row_categories": {
                    CATEGORIES[c]: int(k)
                    for c, k in zip(*np.unique(categories, return_counts=True), strict=True)
                },
            }
            seconds: dict[str, Any] = {}
            correctness: dict[str, Any] = {}

            timings, kept = interleaved(
                {
                    "floor_duckdb_asof": lambda e=entities: run_floor(e, files),
                    "featurestore_duckdb": lambda e=entities: store.get_training_data(
                        e, features=REFS, engine="duckdb"
                    ),
                },
                args.repeats,
                keep=lambda name, r: r if name == "floor_duckdb_asof" else r.table,
            )
            seconds.update(timings)
            floor_table = kept["floor_duckdb_asof"]
            log(f"floor: {seconds['floor_duckdb_asof']}")
            log(f"featurestore duckdb: {seconds['featurestore_duckdb']}")
            reference = kept["featurestore_duckdb"]
            del kept
            if reference.num_rows != n:
                raise AssertionError("featurestore duckdb lost or added entity rows")
            correctness["featurestore_duckdb_vs_oracle"] = check_oracle(
                features, entities, reference, args.oracle_rows, args.seed
            )
            log(f"oracle: {correctness['featurestore_duckdb_vs_oracle']['mismatched_rows']} bad")
            correctness["floor_duckdb_asof"] = compare(reference, floor_table, categories, n)
            # The oracle has teeth: it sees the floor's undeduped ties.
            correctness["floor_duckdb_asof_vs_oracle"] = check_oracle(
                features, entities, floor_table, args.oracle_rows, args.seed
            )
            run["matched_fraction_by_category"] = matched_by_category(reference, categories)
            del floor_table

            if args.profile:
                run["profile_duckdb"] = profile_variants(
                    store, features, entities, args.repeats, reference
                )
                # Against the floor timed in the same rounds as the variants.
                floor_s = run["profile_duckdb"]["floor"]["median_s"]
                run["profile_duckdb_ratio_to_floor"] = {
                    k: round(v["median_s"] / floor_s, 2)
                    for k, v in run["profile_duckdb"].items()
                    if isinstance(v, dict)
                }

            if not args.skip_spark and n <= args.spark_max_entity_rows:
                if spark_session is None:
                    from pyspark.sql import SparkSession

                    start = time.perf_counter()
                    spark_session = (
                        SparkSession.builder.master("local[*]")
                        .appName("pit_join")
                        .config("spark.sql.session.timeZone", "UTC")
                        .config("spark.sql.shuffle.partitions", "4")
                        .config("spark.ui.enabled", "false")
                        .config("spark.ui.showConsoleProgress", "false")
                        .config("spark.driver.memory", "4g")
                        .getOrCreate()
                    )
                    spark_session.sparkContext.setLogLevel("ERROR")
                    spark_startup = round(time.perf_counter() - start, 2)
                    log(f"spark session started in {spark_startup}s")
                engine = SparkEngine(spark_session)
                seconds["featurestore_spark"], sp = timed(
                    lambda e=entities, g=engine: store.get_training_data(
                        e, features=REFS, engine=g
                    ),
                    args.slow_repeats,
                )
                log(f"featurestore spark: {seconds['featurestore_spark']}")
                correctness["featurestore_spark"] = compare(reference, sp.table, categories, n)
                del sp

            if feast_ok and n <= args.feast_max_entity_rows:
                for kind in ("duckdb", "file"):
                    log(f"feast {kind} ...")
                    warm = kind == "duckdb" or n <= args.feast_file_warmup_max_rows
                    report, table = run_feast(
                        args, kind, features_file, entities_file, tmp, warmup=warm
                    )
                    seconds[f"feast_{kind}"] = report
                    if table is not None:
                        correctness[f"feast_{kind}"] = compare(reference, table, categories, n)
                    log(f"feast {kind}: {report.get('median_s')}")

            floor = seconds["floor_duckdb_asof"]
            run["seconds"] = seconds
            run["ratio_to_floor"] = {
                k: ratio(v, floor) for k, v in seconds.items() if k != "floor_duckdb_asof"
            }
            run["correctness"] = correctness
            runs.append(run)
            del reference
            gc.collect()

        if spark_session is not None:
            spark_session.stop()
        result["spark"] = {
            "master": "local[*]",
            "conf": {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"},
            "session_startup_s": spark_startup,
        }
        result["runs"] = runs

        if not args.skip_memory:
            n_mem = max(sizes)
            if args.scale10:
                mem_repo, mem_facts, mem_entities = tmp / "repo", facts, n_entities
                mem_feature_rows = features.num_rows
            else:
                del features
                gc.collect()
                mem_entities = args.entities * 10
                log(f"generating 10x feature data: {mem_entities} x {args.hours}")
                big, mem_facts = generate_features(mem_entities, args.hours, args.seed + 1)
                mem_repo = tmp / "repo10x"
                big_store = make_repo(mem_repo)
                big_write_s, _ = write_offline(big_store, big)
                big_store.close()
                mem_feature_rows = big.num_rows
                log(f"wrote {big.num_rows} rows in {big_write_s:.1f}s")
                del big
                gc.collect()
            mem_ents, _ = generate_entities(n_mem, mem_entities, mem_facts, args.seed + 7)
            mem_file = tmp / "entities-10x.parquet"
            pq.write_table(mem_ents, mem_file)
            log(f"memory case: limit {args.memory_limit}")
            limited = memory_case(args, mem_repo, mem_file, args.memory_limit)
            log("memory case: no limit")
            unlimited = memory_case(args, mem_repo, mem_file, None)
            lower = None
            if args.lower_memory_limit:
                log(f"memory case: limit {args.lower_memory_limit}")
                lower = memory_case(args, mem_repo, mem_file, args.lower_memory_limit)
            raw_mb = mem_feature_rows * (8 * 3 + 8 * len(FEATURES)) / 1024 / 1024
            result["memory_bounded"] = {
                "feature_rows": mem_feature_rows,
                "feature_rows_in_memory_mb": round(raw_mb, 1),
                "entity_rows": n_mem,
                "with_memory_limit": limited,
                "without_memory_limit": unlimited,
                "with_lower_memory_limit": lower,
                "measured_as": (
                    "VmHWM (peak RSS) of a child process that loads the entity rows and "
                    "runs only the join"
                ),
            }
        store.close()

    result["goals"] = goals(result, args.memory_limit)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["notes"] = {
        "floor": (
            "DuckDB ASOF LEFT JOIN over the offline store's Parquet files with the TTL filter "
            "and ORDER BY row_id, returning entity columns and features to Arrow. It does not "
            "dedupe event-time ties itself: it is correct here only because the offline "
            "writer already reduced ties within each write (one write in this benchmark)"
        ),
        "featurestore": (
            "store.get_training_data(...) end to end: registry snapshot, input checks, join, "
            "lineage record"
        ),
        "differing_fraction": (
            "over cells where the reference or the contender has a value (rows matched by "
            "row_id); a null on one side and a value on the other counts as differing"
        ),
        "timing": (
            "median of the timed runs after one untimed warm-up (where 'warmup' is true); "
            "the machine is shared, so expect noise of +-20%"
        ),
    }
    text = json.dumps(result, indent=2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
