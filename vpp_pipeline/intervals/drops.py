"""What the landing sensor decides: which files are complete, and which form one drop.

A *drop* is what a partner delivers together: one file, or a burst of files arriving over
a minute. It becomes one Dagster run. Rules (also in docs/landing.md):

* A regular file is complete when its ``.done`` marker is there, or when its size and
  modification time are the same as at the previous tick (``require_done_marker``: the
  marker only). Until then it is *waiting*.
* Complete files wait for the waiting ones (the rest of the burst) for at most
  ``max_hold_seconds``, so that a burst is one run, not one run per tick.
* Links, directories and other non-regular entries are *refused*: requested once so the run
  records them with a code; never opened here either.

Everything here works on the folder listing and the sensor's cursor: no DuckDB, no Dagster.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from vpp_pipeline.intervals.landing import (
    FileProblem,
    LandingEntry,
    parse_header,
    read_landed_file,
    text_problem,
)


@dataclass
class DropCursor:
    """The sensor's memory between ticks (stored as JSON in the Dagster cursor).

    ``seen``: name -> ``[size, mtime_ns, complete_since_s]`` of files not requested yet
    (``complete_since_s`` 0 while the file is still waiting). ``requested``: keys of files
    already put in a run that are still in the folder (a run moves them away).
    """

    seen: dict[str, list[float]] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str | None) -> DropCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(seen=dict(data.get("seen", {})), requested=list(data.get("requested", [])))

    def to_json(self) -> str:
        return json.dumps({"seen": self.seen, "requested": sorted(self.requested)}, sort_keys=True)


@dataclass
class DropPlan:
    """One tick's decision. ``request`` is False while nothing is due (or the drop is held)."""

    complete: list[LandingEntry]
    refused: list[LandingEntry]
    waiting: list[tuple[LandingEntry, str]]
    held: bool
    cursor: DropCursor

    @property
    def request(self) -> bool:
        return not self.held and bool(self.complete or self.refused)

    @property
    def keys(self) -> list[str]:
        return [e.key for e in [*self.complete, *self.refused]]


def plan_drop(
    entries: list[LandingEntry],
    cursor: DropCursor,
    *,
    now_s: float,
    require_done_marker: bool = False,
    max_hold_seconds: float = 300.0,
) -> DropPlan:
    """Decide this tick from the folder listing ``entries`` and the previous ``cursor``."""
    requested = set(cursor.requested)
    seen: dict[str, list[float]] = {}
    complete: list[LandingEntry] = []
    refused: list[LandingEntry] = []
    waiting: list[tuple[LandingEntry, str]] = []
    writing: list[LandingEntry] = []
    for entry in entries:
        if entry.key in requested:
            continue
        previous = cursor.seen.get(entry.name)
        if not entry.readable:  # due at once, but part of the drop like the files beside it
            since = previous[2] if previous and previous[2] else now_s
            seen[entry.name] = [entry.size, entry.mtime_ns, since]
            refused.append(entry)
            continue
        unchanged = previous is not None and (previous[0], previous[1]) == (
            entry.size,
            entry.mtime_ns,
        )
        if entry.has_marker or (unchanged and not require_done_marker):
            since = previous[2] if unchanged and previous[2] else now_s
            seen[entry.name] = [entry.size, entry.mtime_ns, since]
            complete.append(entry)
            continue
        if unchanged:  # only when a marker is required: a quiet file without one
            reason = f"no {entry.name}.done marker yet"
        elif previous is None:
            reason = "new: complete once unchanged at the next tick"
            writing.append(entry)
        else:
            reason = f"still being written ({previous[0]:,.0f} -> {entry.size:,} bytes)"
            writing.append(entry)
        seen[entry.name] = [entry.size, entry.mtime_ns, 0]
        waiting.append((entry, reason))

    # Hold what is due while other files are still arriving (not for a quiet file that
    # lacks its marker: that may never come).
    due = [*complete, *refused]
    oldest_due = min((seen[e.name][2] for e in due), default=now_s)
    held = bool(due) and bool(writing) and now_s - oldest_due < max_hold_seconds
    present = {e.key for e in entries}
    still_requested = requested & present
    if held or not (complete or refused):
        return DropPlan(complete, refused, waiting, held, DropCursor(seen, sorted(still_requested)))
    new_keys = {e.key for e in due}
    for entry in due:
        seen.pop(entry.name, None)
    return DropPlan(
        complete, refused, waiting, False, DropCursor(seen, sorted(still_requested | new_keys))
    )


def touched_local_dates(landing_dir: Path, entry: LandingEntry, market_tz: str) -> list[date]:
    """Market-local days whose intervals the file holds (unparsable starts ignored).

    Reads the file without following links and parses one column with polars (from the
    bytes, so the name is never taken for a pattern). A file that is not UTF-8 Leap CSV, or
    that changed since ``entry`` was listed, touches no day: the run still rejects and
    archives it.
    """
    if not entry.readable:
        return []
    landed = read_landed_file(landing_dir, entry.name, (entry.size, entry.mtime_ns))
    if landed is None or isinstance(landed, FileProblem) or text_problem(landed.data):
        return []
    header = parse_header(landed.data)
    if isinstance(header, FileProblem):
        return []
    position = header.position("interval_start_time_utc")
    assert position is not None  # a required column
    try:
        starts = pl.read_csv(
            io.BytesIO(landed.data),
            columns=[position - 1],
            infer_schema=False,
            truncate_ragged_lines=True,
        )
    except pl.exceptions.PolarsError:
        return []
    parsed = (
        starts.to_series(0)
        .str.strip_chars(' "')
        .str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
        .drop_nulls()
    )
    if parsed.is_empty():
        return []
    return sorted(parsed.dt.convert_time_zone(market_tz).dt.date().unique().to_list())
