"""The interval landing folder, run like Leap's SFTP drop (conventions: docs/landing.md).

Partners drop Leap-format CSV files into ``VPP_INTERVAL_LANDING_DIR``; once processed, a
file moves to ``accepted/<stem>/<file>`` (no problems) or ``failed/<stem>/<file>`` (at
least one rejected row, or not readable at all) with ``errors.csv`` beside it
(``line,column,code,message``). Good rows of a failed file are still loaded.

What is read, and when:

* Only regular files directly in the folder. A symbolic link, a directory, a pipe or a
  device is *refused* (``FIL_0005`` / ``FIL_0006``) and left where it is: nothing behind it
  is ever opened (files are opened with ``O_NOFOLLOW``, so a file swapped for a link after
  the listing is refused too).
* Hidden names (``.name``) and names with a temporary suffix (:data:`TEMPORARY_SUFFIXES`)
  are invisible until renamed: uploads should be written under one and renamed at the end.
* A file is complete when ``<name>.done`` sits beside it, or else when its size and
  modification time stay the same across two looks (two sensor ticks, or, for runs not
  started by the sensor, no change for ``quiet_seconds``).
* A file is read once into memory: its SHA-256, its encoding check and the rows loaded all
  come from the same bytes, so the ledger's hash is the hash of what was loaded.

File names are only ever used as names (``os`` calls on one path), never handed to a reader
that expands glob patterns, so ``g?.csv`` or ``reads[1].csv`` mean exactly that file.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from vpp_pipeline.intervals.codes import CSV_COLUMNS, REQUIRED_CSV_COLUMNS

ARCHIVE_DIRS = ("accepted", "failed")
#: Files still being written under these suffixes are invisible until renamed (compared
#: case-insensitively): SFTP clients (WinSCP ``.filepart``), browsers, scripts.
TEMPORARY_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".filepart",
    ".crdownload",
    ".download",
)
#: ``<name>.done`` beside ``<name>`` says the upload is complete (the file is read at once).
DONE_MARKER_SUFFIX = ".done"
#: The header is looked for in this much of the file.
HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class CsvHeader:
    """Where each Leap column sits in a file's header (1-based; None = absent)."""

    positions: tuple[tuple[str, int | None], ...]
    n_fields: int

    def position(self, column: str) -> int | None:
        return dict(self.positions)[column]


@dataclass(frozen=True)
class FileProblem:
    """A whole-file rejection: the file cannot be read as Leap interval CSV at all."""

    code: str
    message: str


@dataclass(frozen=True)
class LandingEntry:
    """One name in the landing folder as listed (``lstat``: links are not followed).

    ``kind`` is ``file`` (a regular file: may be read), ``symlink``, ``directory`` or
    ``other`` (pipe, socket, device): those are refused and never opened.
    """

    name: str
    kind: str
    size: int
    mtime_ns: int
    has_marker: bool = False

    @property
    def key(self) -> str:
        """This landing of this name: ``name:size:mtime_ns`` (a rewrite is a new key)."""
        return f"{self.name}:{self.size}:{self.mtime_ns}"

    @property
    def readable(self) -> bool:
        return self.kind == "file"

    def refusal(self) -> FileProblem:
        """Why a non-regular entry is not read (it stays in the folder)."""
        if self.kind == "symlink":
            return FileProblem(
                "FIL_0005",
                "a symbolic link: links are not followed (only regular files placed in the "
                "landing folder are read); the link was left in place",
            )
        what = "a directory" if self.kind == "directory" else "not a regular file"
        return FileProblem(
            "FIL_0006",
            f"{what}: only regular files directly in the landing folder are read; "
            "it was left in place",
        )


def parse_key(key: str) -> tuple[str, int, int]:
    """``(name, size, mtime_ns)`` of a :attr:`LandingEntry.key` (names may contain ``:``)."""
    name, size, mtime_ns = key.rsplit(":", 2)
    return name, int(size), int(mtime_ns)


def check_name(name: str) -> str:
    """A landing file name must be one path component; anything else is refused outright."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or os.sep in name:
        raise ValueError(f"{name!r} is not a file name in the landing folder")
    return name


def is_temporary(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def marker_path(landing_dir: Path, name: str) -> Path:
    return landing_dir / f"{name}{DONE_MARKER_SUFFIX}"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    return "other"


def scan_landing(landing_dir: Path) -> list[LandingEntry]:
    """Every visible entry of the landing folder, oldest first (archive folders, hidden and
    temporary names and ``.done`` markers excluded). Nothing is opened."""
    if not landing_dir.is_dir():
        return []
    with os.scandir(landing_dir) as listing:
        raw = list(listing)
    names = {e.name for e in raw}
    entries = []
    for item in raw:
        name = item.name
        if is_temporary(name) or name.lower().endswith(DONE_MARKER_SUFFIX):
            continue
        try:
            info = item.stat(follow_symlinks=False)
        except FileNotFoundError:  # gone since the listing
            continue
        kind = _kind(info.st_mode)
        if kind == "directory" and name in ARCHIVE_DIRS:
            continue
        entries.append(
            LandingEntry(
                name=name,
                kind=kind,
                size=info.st_size,
                mtime_ns=info.st_mtime_ns,
                has_marker=f"{name}{DONE_MARKER_SUFFIX}" in names,
            )
        )
    return sorted(entries, key=lambda e: (e.mtime_ns, e.name))


def lstat_entry(landing_dir: Path, name: str) -> LandingEntry | None:
    """The entry ``name`` as it is now (None when gone)."""
    check_name(name)
    try:
        info = os.lstat(landing_dir / name)
    except FileNotFoundError:
        return None
    return LandingEntry(
        name=name,
        kind=_kind(info.st_mode),
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
        has_marker=marker_path(landing_dir, name).exists(),
    )


@dataclass(frozen=True)
class LandedFile:
    """The bytes of one landing file, read once, and what identifies them."""

    name: str
    size: int
    mtime_ns: int
    sha256: str
    data: bytes

    @property
    def delivered_at(self) -> datetime:
        """When the file landed (its modification time), UTC."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, tz=UTC)


def read_landed_file(
    landing_dir: Path, name: str, expected: tuple[int, int] | None = None
) -> LandedFile | FileProblem | None:
    """Read ``name`` whole, without following links.

    Returns the bytes; a :class:`FileProblem` when the name is not a regular file (a link,
    a directory...: refused, never read); or None when the file is gone, or changed during
    the read or since ``expected`` ``(size, mtime_ns)`` was seen (it is not complete: it
    will be looked at again).
    """
    path = landing_dir / check_name(name)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the name is a symbolic link
            return LandingEntry(name, "symlink", 0, 0).refusal()
        if exc.errno in (errno.EISDIR, errno.ENXIO):
            kind = "directory" if exc.errno == errno.EISDIR else "other"
            return LandingEntry(name, kind, 0, 0).refusal()
        raise
    with os.fdopen(fd, "rb") as handle:
        before = os.fstat(handle.fileno())
        if not stat.S_ISREG(before.st_mode):
            return LandingEntry(name, _kind(before.st_mode), 0, 0).refusal()
        if expected is not None and (before.st_size, before.st_mtime_ns) != expected:
            return None
        data = handle.read()
        after = os.fstat(handle.fileno())
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(
        data
    ) != after.st_size:
        return None  # still being written
    return LandedFile(
        name=name,
        size=after.st_size,
        mtime_ns=after.st_mtime_ns,
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def text_problem(data: bytes) -> FileProblem | None:
    """Why these bytes are not UTF-8 CSV text at all, checked over the whole file (None: fine).

    ``FIL_0002`` empty, ``FIL_0001`` binary (a NUL byte), ``ENC_0001`` not UTF-8, each with
    the byte offset (0-based) and line of the first offending byte. Plain ASCII, by far the
    common case, is recognised at memory speed (``bytes.isascii``).
    """
    if not data or data.isspace():  # (no strip(): that would copy the whole file)
        return FileProblem("FIL_0002", "the file is empty")
    nul = data.find(b"\x00")
    if nul >= 0:
        return FileProblem(
            "FIL_0001",
            f"not a CSV file: it contains binary data (a NUL byte at byte offset {nul:,}, "
            f"line {_line_of(data, nul):,})",
        )
    if data.isascii():
        return None
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : min(exc.end, exc.start + 4)]
        return FileProblem(
            "ENC_0001",
            f"the file is not UTF-8 text: byte 0x{bad.hex().upper()} at byte offset "
            f"{exc.start:,} (line {_line_of(data, exc.start):,}) cannot be decoded; the whole "
            "file was rejected: save it as UTF-8 and deliver it again",
        )
    return None


def parse_header(data: bytes) -> CsvHeader | FileProblem:
    """The column positions of a Leap interval CSV (from its first line), or why the file is
    not one. ``data`` must have passed :func:`text_problem`."""
    head = data[:HEADER_BYTES]
    # An incremental decoder tolerates a multi-byte character cut at the edge.
    text = codecs.getincrementaldecoder("utf-8-sig")("replace").decode(head, final=False)
    lines = text.splitlines()
    first_line = lines[0] if lines else ""
    columns = [c.strip().strip('"').strip().lower() for c in first_line.split(",")]
    if len(columns) < 2 or not set(columns) & set(CSV_COLUMNS):
        return FileProblem(
            "FIL_0001",
            f"not a CSV file in Leap's interval format: the first line is {first_line[:120]!r}; "
            f"expected a header with {', '.join(CSV_COLUMNS)}",
        )
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in columns]
    if missing:
        return FileProblem("FIL_0003", f"the header lacks required column(s): {', '.join(missing)}")
    if len(lines) < 2:
        return FileProblem("FIL_0002", "the file has a header but no data rows")
    positions = tuple(
        (column, columns.index(column) + 1 if column in columns else None) for column in CSV_COLUMNS
    )
    return CsvHeader(positions=positions, n_fields=len(columns))


def archive_path(landing_dir: Path, name: str, status: str, stamp: datetime) -> Path:
    """``<landing>/<status>/<stem>/<name>``; a re-delivered name gets its own folder."""
    stem = Path(name).stem or name
    folder = landing_dir / status / stem
    if (folder / name).exists() or (folder / name).is_symlink():
        folder = landing_dir / status / f"{stem}__{stamp:%Y%m%dT%H%M%S%f}"
    return folder / name


def archive(landing_dir: Path, name: str, target: Path) -> None:
    """Move ``name`` (and its ``.done`` marker, if any) to ``target``'s folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(landing_dir / name), str(target))
    marker = marker_path(landing_dir, name)
    if marker.is_file() and not marker.is_symlink():
        shutil.move(str(marker), str(target.parent / marker.name))
