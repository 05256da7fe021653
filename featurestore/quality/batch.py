"""Validate a batch (a Spark or pandas DataFrame) against a view's expectations with GE.

Each run gets an ephemeral GE context (nothing written to a GE project folder);
the full GE result is saved as JSON next to the run, and the summary names each
failed expectation with its unexpected count and a few example values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from great_expectations.datasource.fluent.pandas_datasource import PandasDatasource
    from great_expectations.datasource.fluent.spark_datasource import SparkDatasource

from featurestore.definitions.expectations import Expectation
from featurestore.errors import MissingExtraError


def _ge_expectation(gxe: Any, e: Expectation) -> Any:
    common = {"column": e.column, "mostly": e.mostly}
    if e.type == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(**common)
    if e.type == "between":
        return gxe.ExpectColumnValuesToBeBetween(
            **common, min_value=e.min_value, max_value=e.max_value
        )
    if e.type == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(**common, value_set=list(e.values or ()))
    if e.type == "match_regex":
        return gxe.ExpectColumnValuesToMatchRegex(**common, regex=e.regex)
    raise AssertionError(f"unmapped expectation type {e.type}")  # definitions refuse others


def validate_dataframe(
    df: Any, expectations: Sequence[Expectation], *, label: str, report_path: Path
) -> dict[str, Any]:
    """Run the expectations on ``df``; returns the summary that the run records.

    ``{"success", "rows", "expectations": [{"expectation", "success", "unexpected_count",
    "unexpected_percent", "examples"}], "report"}``. The full GE result goes to
    ``report_path``.
    """
    try:
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.data_context.types.base import ProgressBarsConfig
    except ImportError as exc:
        raise MissingExtraError("great_expectations", "quality") from exc

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # A pandas DataFrame (the in-process engine) or a Spark one (the Spark job).
    source: PandasDatasource | SparkDatasource
    if type(df).__module__.startswith("pandas"):
        source = context.data_sources.add_pandas(name="featurestore")
    else:
        source = context.data_sources.add_spark(name="featurestore")
    asset = source.add_dataframe_asset(name=label)
    batch = asset.add_batch_definition_whole_dataframe("batch").get_batch(
        batch_parameters={"dataframe": df}
    )
    suite = gx.ExpectationSuite(
        name=label, expectations=[_ge_expectation(gxe, e) for e in expectations]
    )
    result = batch.validate(suite, result_format="SUMMARY")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(result.to_json_dict(), indent=2, default=str))
    summary = []
    rows = None
    for e, r in zip(expectations, result.results, strict=True):
        detail = r.result or {}
        rows = detail.get("element_count", rows)
        summary.append(
            {
                "expectation": e.describe(),
                "success": bool(r.success),
                "unexpected_count": detail.get("unexpected_count"),
                "unexpected_percent": detail.get("unexpected_percent"),
                "examples": [str(v) for v in (detail.get("partial_unexpected_list") or [])[:5]],
            }
        )
    return {
        "success": bool(result.success),
        "rows": rows,
        "expectations": summary,
        "report": str(report_path),
    }
