"""Synthetic landing-folder drops for tests and benchmarks: a burst of Leap-format interval
CSV files over many days, some of them poison (not UTF-8, binary) and some still being
written when the burst lands, with what a correct pipeline must end up loading.

Values are deterministic in ``seed``; files cover disjoint blocks of market-local days, so
every good row is one (meter, interval) and the expected ``interval_reads`` is known.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from vpp_pipeline.intervals.codes import CSV_COLUMNS

#: How the poison files are broken, in turn: a latin-1 byte after the first 64 KiB, a NUL
#: byte, a multi-byte UTF-8 character cut short. The code each must be rejected with.
POISON_KINDS = {"latin1": "ENC_0001", "nul": "FIL_0001", "cut_utf8": "ENC_0001"}


def _local_day_intervals(days: list[date], market_tz: str) -> np.ndarray:
    """UTC interval starts (epoch seconds) of every 15 minutes of the local ``days``."""
    tz = ZoneInfo(market_tz)
    starts = []
    for day in days:
        lo = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        hi = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        starts.append(np.arange(int(lo.timestamp()), int(hi.timestamp()), 900, dtype=np.int64))
    return np.concatenate(starts)


def _csv_bytes(
    meter_ids: list[str], days: list[date], market_tz: str, rng
) -> tuple[bytes, int, float]:
    starts = _local_day_intervals(days, market_tz)
    n = len(starts)
    meters = np.repeat(np.array(meter_ids, dtype=object), n)
    t = np.tile(starts, len(meter_ids))
    kwh = np.round(rng.uniform(0.05, 40.0, size=len(t)), 3)
    start = pl.from_epoch(pl.Series(t), time_unit="s").dt.replace_time_zone("UTC")
    frame = pl.DataFrame(
        {
            "meter_id": meters.tolist(),
            "interval_start_time_utc": start.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "interval_end_time_utc": (start + timedelta(minutes=15)).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "energy_net_kwh": kwh,
            "energy_consumed_kwh": pl.Series([None] * len(t), dtype=pl.Float64),
            "energy_generated_kwh": pl.Series([None] * len(t), dtype=pl.Float64),
            "final": True,
            "region": "CA",
        }
    ).select(CSV_COLUMNS)
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return buffer.getvalue(), len(t), float(kwh.sum())


def _poison(data: bytes, kind: str) -> tuple[bytes, int]:
    """Break ``data`` on a line past 70 % of it (past 64 KiB); returns the bytes and the
    offset of the offending byte."""
    cut = data.index(b"\n", max(int(len(data) * 0.7), 64 * 1024 + 1)) + 1
    line_end = data.index(b"\n", cut)
    line = data[cut:line_end]
    region = line.rindex(b",") + 1
    bad = {"latin1": b"Qu\xe9", "nul": b"C\x00A", "cut_utf8": b"C\xe2\x82"}[kind]
    offset = cut + region + {"latin1": 2, "nul": 1, "cut_utf8": 1}[kind]
    return data[:cut] + line[:region] + bad + data[line_end:], offset


@dataclass
class DropFile:
    """One file of the burst and what must become of it."""

    name: str
    kind: str  # good | poison | growing
    days: list[date]
    rows: int
    kwh: float
    code: str | None = None  # poison: the code it must be rejected with
    offset: int | None = None  # poison: the byte offset named in the message


@dataclass
class GrowingUpload:
    """A file being uploaded: the first chunk is written at once, the rest one chunk per
    :meth:`advance` through the same open handle (as an SFTP server writes)."""

    path: Path
    chunks: list[bytes]
    written: int = 0
    handle: io.BufferedWriter | None = None

    def advance(self) -> bool:
        """Write the next chunk; False once the file is complete (and closed)."""
        if self.written >= len(self.chunks):
            return False
        if self.handle is None:
            self.handle = self.path.open("wb")
        self.handle.write(self.chunks[self.written])
        self.handle.flush()
        self.written += 1
        if self.written == len(self.chunks):
            self.handle.close()
            return False
        return True


@dataclass
class Burst:
    """The files of one burst; ``release()`` drops the next group of complete files."""

    folder: Path
    files: list[DropFile]
    growing: list[GrowingUpload]
    pending: list[list[tuple[str, bytes]]] = field(default_factory=list)

    def release(self) -> int:
        """Write the next group of complete files (poison included); how many were written."""
        if not self.pending:
            return 0
        group = self.pending.pop(0)
        for name, data in group:
            temporary = self.folder / f"{name}.part"  # written under a temporary name, renamed
            temporary.write_bytes(data)
            temporary.rename(self.folder / name)
        return len(group)

    @property
    def good(self) -> list[DropFile]:
        return [f for f in self.files if f.kind != "poison"]

    @property
    def poison(self) -> list[DropFile]:
        return [f for f in self.files if f.kind == "poison"]

    @property
    def expected_rows(self) -> int:
        return sum(f.rows for f in self.good)

    @property
    def expected_kwh(self) -> float:
        return sum(f.kwh for f in self.good)

    @property
    def expected_days(self) -> list[date]:
        return sorted({d for f in self.good for d in f.days})


def write_burst(
    folder: Path,
    meter_ids: list[str],
    last_day: date,
    *,
    n_days: int = 365,
    n_files: int = 50,
    n_poison: int = 3,
    n_growing: int = 2,
    growing_chunks: int = 3,
    release_groups: int = 1,
    market_tz: str = "America/Los_Angeles",
    seed: int = 7,
) -> Burst:
    """Prepare a burst of ``n_files`` files over the ``n_days`` local days ending ``last_day``.

    The first of ``release_groups`` groups of complete files is written at once; the growing
    files get their first chunk now (``GrowingUpload.advance`` writes the rest).
    """
    if n_poison + n_growing > n_files:
        raise ValueError("more poison and growing files than files")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    days = [last_day - timedelta(days=n_days - 1 - i) for i in range(n_days)]
    blocks = np.array_split(np.arange(n_days), n_files)
    step = n_files / (n_poison + n_growing + 1)
    special = [int(step * (i + 1)) for i in range(n_poison + n_growing)]
    ordered = special[0::2] + special[1::2]  # poison and growing files alternate
    poison_at, growing_at = set(ordered[:n_poison]), set(ordered[n_poison:])
    kinds = list(POISON_KINDS)
    files: list[DropFile] = []
    complete: list[tuple[str, bytes]] = []
    growing: list[GrowingUpload] = []
    for index, block in enumerate(blocks):
        block_days = [days[i] for i in block]
        name = f"reads_{block_days[0]:%Y%m%d}_{block_days[-1]:%Y%m%d}.csv"
        data, rows, kwh = _csv_bytes(meter_ids, block_days, market_tz, rng)
        if index in poison_at:
            kind = kinds[len([f for f in files if f.kind == "poison"]) % len(kinds)]
            data, offset = _poison(data, kind)
            files.append(
                DropFile(name, "poison", block_days, rows, kwh, POISON_KINDS[kind], offset)
            )
            complete.append((name, data))
        elif index in growing_at:
            lines = data.splitlines(keepends=True)
            parts = np.array_split(np.arange(len(lines)), growing_chunks)
            chunks = [b"".join(lines[p[0] : p[-1] + 1]) for p in parts if len(p)]
            upload = GrowingUpload(folder / name, chunks)
            upload.advance()
            growing.append(upload)
            files.append(DropFile(name, "growing", block_days, rows, kwh))
        else:
            files.append(DropFile(name, "good", block_days, rows, kwh))
            complete.append((name, data))
    size = -(-len(complete) // max(1, release_groups))
    groups = [complete[i : i + size] for i in range(0, len(complete), size)]
    burst = Burst(folder, files, growing, groups)
    burst.release()
    return burst
