"""Environment variables and their local defaults, in one place.

Every setting has a safe default that points at the embedded local stack (sandbox API on
127.0.0.1, files under ``data/``), so a fresh checkout runs without configuration.
``.env.example`` lists the same variables for real deployments.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: Port the sandbox listens on when started by ``vpp sandbox`` / ``make dev`` without --port.
DEFAULT_SANDBOX_PORT = 8765
#: The sandbox's API key. Not a secret: the sandbox only serves synthetic data on loopback.
DEFAULT_SANDBOX_API_KEY = "sandbox-key"

DEFAULT_LEAP_API_BASE_URL = f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}"
DEFAULT_DUCKDB_PATH = "data/vpp.duckdb"
DEFAULT_INTERVAL_LANDING_DIR = "data/landing/intervals"
#: Day-level logic (daily partitions, baseline days, trading days) uses the market's zone.
DEFAULT_MARKET_TIMEZONE = "America/Los_Angeles"
#: First daily partition of interval data (market-local date).
DEFAULT_INTERVAL_PARTITIONS_START = "2025-01-01"


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


def interval_partitions_start() -> str:
    return env("VPP_INTERVAL_PARTITIONS_START", DEFAULT_INTERVAL_PARTITIONS_START)


def duckdb_path() -> Path:
    return Path(env("VPP_DUCKDB_PATH", DEFAULT_DUCKDB_PATH))


def nominations_since(now: datetime | None = None) -> datetime:
    """Start of the nominations search window: ``VPP_NOMINATIONS_LOOKBACK_DAYS`` (default
    400) days before today's UTC midnight, so past events meet the nomination in force."""
    days = int(env("VPP_NOMINATIONS_LOOKBACK_DAYS", "400"))
    today = (now or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)
