"""Environment variables and their local defaults, in one place.

Every setting has a safe default that points at the embedded local stack (sandbox API on
127.0.0.1, files under ``data/``), so a fresh checkout runs without configuration.
``.env.example`` lists the same variables for real deployments.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

#: Port the sandbox listens on when started by ``vpp sandbox`` / ``make dev`` without --port.
DEFAULT_SANDBOX_PORT = 8765
#: The sandbox's API key. Not a secret: the sandbox only serves synthetic data on loopback.
DEFAULT_SANDBOX_API_KEY = "sandbox-key"

DEFAULT_LEAP_API_BASE_URL = f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}"
DEFAULT_DUCKDB_PATH = "data/vpp.duckdb"
DEFAULT_INTERVAL_LANDING_DIR = "data/landing/intervals"
#: Day-level logic (daily partitions, baseline days, trading days) uses the market's zone.
DEFAULT_MARKET_TIMEZONE = "America/Los_Angeles"
#: Without ``VPP_INTERVAL_PARTITIONS_START``, daily partitions cover this many market-local
#: days before today: the sandbox's (and ``vpp demo``'s) interval history, so a first run
#: fills every partition instead of a few percent of a calendar year.
DEFAULT_INTERVAL_HISTORY_DAYS = 66


def env(name: str, default: str) -> str:
    """The environment variable ``name``, or ``default`` when unset or empty."""
    value = os.environ.get(name, "")
    return value if value.strip() else default


def leap_api_base_url() -> str:
    return env("LEAP_API_BASE_URL", DEFAULT_LEAP_API_BASE_URL).rstrip("/")


def leap_api_key() -> str:
    return env("LEAP_API_KEY", DEFAULT_SANDBOX_API_KEY)


def interval_landing_dir() -> Path:
    return Path(env("VPP_INTERVAL_LANDING_DIR", DEFAULT_INTERVAL_LANDING_DIR))


def interval_require_done_marker() -> bool:
    """``VPP_INTERVAL_REQUIRE_DONE_MARKER``: load a landing file only once ``<name>.done``
    is beside it."""
    return env("VPP_INTERVAL_REQUIRE_DONE_MARKER", "false").strip().lower() in ("1", "true", "yes")


def market_timezone() -> str:
    return env("VPP_MARKET_TIMEZONE", DEFAULT_MARKET_TIMEZONE)


def interval_partitions_start(today: date | None = None) -> str:
    """First daily partition (market-local date, ISO): ``VPP_INTERVAL_PARTITIONS_START``, or
    ``DEFAULT_INTERVAL_HISTORY_DAYS`` days before today (market time) when it is unset. Set it
    to the first day your meters have data in a real deployment."""
    configured = env("VPP_INTERVAL_PARTITIONS_START", "")
    if configured:
        return configured
    today = today or datetime.now(ZoneInfo(market_timezone())).date()
    return (today - timedelta(days=DEFAULT_INTERVAL_HISTORY_DAYS)).isoformat()


def duckdb_path() -> Path:
    return Path(env("VPP_DUCKDB_PATH", DEFAULT_DUCKDB_PATH))


def published_duckdb_path(source: Path | None = None) -> Path:
    """The read-only copy analysts open (``VPP_PUBLISHED_DUCKDB_PATH``; default
    ``published/<name>`` beside the analytics file, i.e. ``data/published/vpp.duckdb``)."""
    configured = env("VPP_PUBLISHED_DUCKDB_PATH", "")
    if configured:
        return Path(configured)
    source = source or duckdb_path()
    return source.parent / "published" / source.name


def report_dir(source: Path | None = None) -> Path:
    """Where ``performance_report`` writes its HTML file (``VPP_REPORT_DIR``; default
    ``reports/`` beside the analytics file, i.e. ``data/reports``)."""
    configured = env("VPP_REPORT_DIR", "")
    if configured:
        return Path(configured)
    return (source or duckdb_path()).parent / "reports"


def leap_api_base_url_is_default() -> bool:
    """True when ``LEAP_API_BASE_URL`` is unset: the pipeline talks to the local sandbox."""
    return not os.environ.get("LEAP_API_BASE_URL", "").strip()


def nominations_since(now: datetime | None = None) -> datetime:
    """Start of the nominations search window: ``VPP_NOMINATIONS_LOOKBACK_DAYS`` (default
    400) days before today's UTC midnight, so past events meet the nomination in force."""
    days = int(env("VPP_NOMINATIONS_LOOKBACK_DAYS", "400"))
    today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)
