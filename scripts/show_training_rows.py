"""Print a few rows of a training set (used by the demo to show an on-demand column).

    python scripts/show_training_rows.py TRAINING.parquet COLUMN... [--limit 5] [--min COL=N]

Rows where the last column is null are skipped (the demo shows computed values), and
with ``--min`` those where COL is below N.
"""

from __future__ import annotations

import argparse


def main() -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("columns", nargs="+")
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--min", metavar="COL=N", help="only rows where COL >= N")
    args = parser.parse_args()
    table = pq.read_table(args.path, columns=args.columns)
    computed = pc.is_valid(table.column(args.columns[-1]))
    shown = computed
    if args.min:
        column, _, value = args.min.partition("=")
        shown = pc.and_(computed, pc.greater_equal(table.column(column), float(value)))
    rows = [
        [_cell(r[c]) for c in args.columns] for r in table.filter(shown)[: args.limit].to_pylist()
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(args.columns)]
    for cells in [args.columns, *rows]:
        print("  ".join(f"{v:>{w}}" for v, w in zip(cells, widths, strict=True)))
    print(f"({pc.sum(computed).as_py() or 0:,} of {table.num_rows:,} rows have {args.columns[-1]})")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    main()
