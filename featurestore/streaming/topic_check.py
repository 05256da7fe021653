"""Is a landed stream position still good? Decided on evidence, not on offset answers.

A consumer resumes a partition at the offset its offline manifest records. Before it
does, it reads the record just before that offset (the last one it landed) and compares
it with the digest it landed with it. Offset answers alone (``end_offsets``,
``beginning_offsets``) are not trusted: a broker can answer a stale or wrong end offset
(the bundled broker answers the last batch's base offset + 1), and deciding "the topic
was recreated" on such an answer re-reads the whole partition.

The verdicts:

* ``keep``: the landed record is still at its offset (or, with no digest recorded, some
  record is): resume where we were, whatever the end offset says;
* ``retention``: the landed record is gone but so is everything before the partition's
  new beginning: resume where we were (events between may be lost to retention);
* ``recreated``: a different record sits at the landed record's offset, or the landed
  record is gone while the partition begins before it and ends before it too (two
  answers that agree): start the partition over from its beginning in a new epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["keep", "retention", "recreated"]


@dataclass(frozen=True, slots=True)
class Found:
    """The first record a fetch at the landed record's offset returned."""

    offset: int
    digest: str


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    # Why, for the log; empty when nothing is worth saying.
    note: str = ""


def judge(
    partition: int,
    landed: int,
    digest: str | None,
    found: Found | None,
    begin: int,
    end: int,
) -> Decision:
    """``landed``: the next offset recorded; ``digest``: the record at ``landed - 1`` as
    landed (None for positions landed before digests were kept); ``found``: what a fetch
    at ``landed - 1`` returned first (None: nothing); ``begin``/``end``: the broker's
    offset answers, used only when they agree with the fetch."""
    last = landed - 1
    short_end = end < landed
    if found is not None and found.offset == last:
        if digest is not None and found.digest != digest:
            return Decision(
                "recreated",
                f"partition {partition}: offset {last} holds a different record than the "
                "one this view landed there: the topic was recreated. Starting the partition "
                "again from its beginning.",
            )
        if short_end:
            return Decision(
                "keep",
                f"partition {partition}: the broker answered end offset {end}, before the "
                f"landed position {landed}, but the landed record at offset {last} is still "
                "there: the answer was wrong; resuming at the landed position.",
            )
        return Decision("keep")
    if found is not None and found.offset > last:
        skipped = found.offset - landed
        return Decision(
            "retention",
            f"partition {partition}: now begins at {found.offset}, after the landed position "
            f"{landed}: retention deleted {skipped:,} events this view never read."
            if skipped > 0
            else "",
        )
    # The landed record is not there: the fetch returned nothing, or the broker put the
    # fetch back to an earlier record (the offset is out of its range).
    if begin >= landed:
        return Decision("retention")
    if short_end:
        return Decision(
            "recreated",
            f"partition {partition}: the landed record at offset {last} is gone and the "
            f"partition ends at {end}, before the landed position {landed}: the topic was "
            "recreated. Starting the partition again from its beginning.",
        )
    return Decision(
        "keep",
        f"partition {partition}: could not read the landed record at offset {last} although "
        f"the broker reports offsets {begin}..{end}; resuming at the landed position (a "
        "slow broker?).",
    )
