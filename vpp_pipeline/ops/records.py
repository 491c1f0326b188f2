"""Plain records of the ops store and its time format (UTC ISO-8601 text with microseconds)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime) -> str:
    """UTC ISO-8601 text with microseconds (fixed width, so text order is time order)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass UTC-aware times")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


@dataclass(frozen=True)
class InboxRow:
    """One accepted delivery (or reconciliation batch): the raw body bytes as received."""

    inbox_id: int
    received_at: str
    source: str
    level: str
    body: bytes
    headers: dict
    processed_at: str | None


@dataclass(frozen=True)
class SiteInfo:
    """What the planner knows about a site: battery power (kW) and its nominations."""

    meter_id: str
    battery_power_kw: float | None
    #: (program_identifier, start, end or None, nomination_kw)
    nominations: tuple[tuple[str, datetime, datetime | None, float], ...]

    def nomination_kw(self, programs: Iterable[str], at: datetime) -> float | None:
        """Sum of this site's nominations (kW) in force at ``at`` for any of ``programs``."""
        wanted = set(programs)
        values = [
            kw
            for program, start, end, kw in self.nominations
            if program in wanted and start <= at and (end is None or at < end)
        ]
        return sum(values) if values else None
