"""Train the example fraud model on a training set from the store.

    python -m examples.fraud_inference.train \\
        --training-set feature_repo/data/training/fraud_detector.parquet \\
        --out feature_repo/data/models/fraud_detector.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from examples.fraud_inference.model import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--training-set", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.training_set.exists():
        raise SystemExit(
            f"error: no training set at {args.training_set}; build one with `featurestore "
            "training-data --model fraud_detector --entities ... --out ...`"
        )
    model = train(args.training_set)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(model, indent=1))
    tmp.replace(args.out)
    print(
        f"trained fraud_detector on {model['rows']:,} rows (fraud rate "
        f"{model['fraud_rate']:.1%}): holdout AUC {model['holdout_auc']:.3f} -> {args.out}"
    )


if __name__ == "__main__":
    main()
