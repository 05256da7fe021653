"""A batch view's source files for a window: what both engines read, and what ``auto``
weighs to choose between them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from featurestore.definitions import FeatureView, ParquetSource
from featurestore.errors import SourceNotFoundError


def source_path(view: FeatureView, repo: Path) -> Path:
    source = view.source
    assert isinstance(source, ParquetSource)
    return Path(source.path) if Path(source.path).is_absolute() else repo / source.path


def source_files(
    view: FeatureView, repo: Path, start: datetime | None, end: datetime, label: str
) -> list[str]:
    """The source's Parquet files that can hold rows of [start, end): under Hive ``date=``
    folders, only those of the window's dates; a source that is one file, that file.
    Both engines read exactly these."""
    source = view.source
    assert isinstance(source, ParquetSource)
    path = source_path(view, repo)
    if path.is_file():  # one Parquet file (as Feast's FileSource often names)
        return [str(path)]
    if not path.exists() or not any(path.rglob("*.parquet")):
        raise SourceNotFoundError(
            f"{label}: source '{source.name}' has no Parquet files at {path}. Check the "
            "source's path (relative to the repo), or generate the data first "
            "(`featurestore generate-data` for the example)."
        )
    partitions = sorted(p for p in path.glob("date=*") if p.is_dir())
    if not partitions:
        return sorted(str(f) for f in path.rglob("*.parquet"))
    first = start.date().isoformat() if start is not None else ""
    last = end.date().isoformat()
    return sorted(
        str(f) for p in partitions if first <= p.name[5:] <= last for f in p.rglob("*.parquet")
    )
