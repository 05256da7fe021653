"""Online lookups with policies and keys on vs off (in-process, one real Redis).

The same model and data, looked up by:

- ``off``: a registry without policies, no API key (what lookups cost before issue 8);
- ``on``: the same definitions plus 24 policies that all have to be considered for the
  model (deny/mask rules for other purposes, allow rules by tag and owner), looked up with
  the model's API key: authentication, the policy decisions (compiled once per plan) and
  the per-feature usage counting are all on the path;
- ``on_masked``: as ``on``, with one of the five features masked (a keyed hash per value:
  the cost of the mask itself, not of deciding it);
- ``floor``: a bare redis-py pipeline of the same HMGETs.

Cases run interleaved in rounds, so drift on a shared machine hits them alike; compare
ratios from one run. Feast has no per-model feature policies on its lookup path, so it has
no column here (``online_lookup.py`` compares lookups with Feast).

    python benchmarks/policy_lookup.py [--calls 20000]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _interleaved import (
    bench_redis,
    bench_repo,
    compare_lookups,
    machine,
    ratio,
    redis_floor,
    variant_args,
    write_result,
)
from online_lookup import REPO_DEFS, feature_rows

POLICIES = "\nfrom featurestore import FeatureMatch, ModelMatch, Policy\n" + "".join(
    f"""
p{i}_deny = Policy(name="p{i}_deny", effect="deny",
    features=FeatureMatch(tags={{"pii": "true"}}), models=ModelMatch(purposes=["marketing{i}"]))
p{i}_mask = Policy(name="p{i}_mask", effect="mask", mask="hash",
    features=FeatureMatch(views=["stats"]), models=ModelMatch(owners=["other{i}"]))
p{i}_allow = Policy(name="p{i}_allow", effect="allow",
    features=FeatureMatch(owners=["team{i}"]), models=ModelMatch(owners=["bench"]))
"""
    for i in range(8)
)
MASKED = """
masked_model = Model(name="masked_model", feature_services=[service], owner="bench",
    purpose="bench")
mask_f0 = Policy(name="mask_f0", effect="mask", mask="hash",
    features=FeatureMatch(views=["stats"], features=["f0"]),
    models=ModelMatch(names=["masked_model"]))
"""


def main() -> None:
    args = variant_args("policy_lookup", __doc__)

    from featurestore import FeatureStore
    from featurestore.online.layout import ViewLayout

    result: dict[str, Any] = {"benchmark": "policy_lookup", "machine": machine()}
    with bench_redis("policy_lookup") as (r, url, tmp):
        # Two registries of one project on one Redis: the same stored values.
        off = FeatureStore(bench_repo(tmp / "off", url, REPO_DEFS))
        on = FeatureStore(bench_repo(tmp / "on", url, REPO_DEFS + POLICIES + MASKED))
        off.apply()
        on.apply()
        off.write_online("stats", feature_rows(args.seed))
        _c, key = on.create_credential("bench_model")
        _c, masked_key = on.create_credential("masked_model")
        clients = {
            "off": (off.online_client(), "bench_model"),
            "on": (on.online_client(api_key=key), None),
            "on_masked": (on.online_client(api_key=masked_key), None),
        }
        snap = off.snapshot()
        layout = ViewLayout.from_version(snap, snap.view_version("stats"))
        expected = clients["off"][0].get_online_features([{"entity_id": 7}], model="bench_model")
        got = clients["on"][0].get_online_features([{"entity_id": 7}])
        assert got.to_dict() == expected.to_dict(), "policies on must serve the same values"

        timings = compare_lookups(
            clients,
            redis_floor(r, layout.prefix, layout.field),
            calls=args.calls,
            rounds=args.rounds,
            seed=args.seed,
        )
        for n, stats in timings.items():
            stats["ratios"] = {
                "on_vs_off_p50": ratio(stats, "on", "off"),
                "on_vs_off_p99": ratio(stats, "on", "off", "p99_ms"),
                "on_masked_vs_off_p50": ratio(stats, "on_masked", "off"),
                "off_vs_floor_p50": ratio(stats, "off", "floor_redis_pipeline"),
            }
            result[n] = stats
        result["usage_counted"] = {
            "|".join(k): v for k, v in clients["on"][0].usage().items() if k[2] != "deny"
        }
        for client, _ in clients.values():
            client.close()
        off.close()
        on.close()
    write_result(result, args.out)


if __name__ == "__main__":
    main()
