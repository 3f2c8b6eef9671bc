"""Query groups for group DRO and worst-group evaluation: buckets of query length in words."""

from __future__ import annotations

LENGTH_BOUNDS = (9, 14)  # short: at most 9 words, medium: 10..14, long: 15 or more (SciFact's terciles)
GROUPINGS = ("length",)


def length_group(query: str, bounds: tuple[int, int] = LENGTH_BOUNDS) -> str:
    """``short``, ``medium`` or ``long``: the query's length bucket (whitespace-separated words)."""
    words = len(query.split())
    if words <= bounds[0]:
        return "short"
    return "medium" if words <= bounds[1] else "long"


def group_of(query: str, grouping: str = "length") -> str:
    """The group of ``query`` under ``grouping`` (one of :data:`GROUPINGS`)."""
    if grouping != "length":
        raise ValueError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    return length_group(query)
