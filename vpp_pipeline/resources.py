"""Dagster resources: the Leap API and the DuckDB analytics file.

Configuration comes from environment variables (see ``vpp_pipeline.settings``); the API
key is passed as ``dg.EnvVar`` when set, so it never appears in run config or logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from vpp_pipeline import settings
from vpp_pipeline.data_dictionary import apply_comments
from vpp_pipeline.leap import LeapClient


class LeapResource(dg.ConfigurableResource):
    """Leap's API (or the local sandbox). ``client()`` opens a :class:`LeapClient`.

    Every field is Dagster resource config. Note: run config for this resource (launchpad)
    replaces the values set in the definitions, so give ``base_url`` and ``api_key`` with
    any override, or they fall back to the sandbox defaults."""

    base_url: str = settings.DEFAULT_LEAP_API_BASE_URL
    api_key: str = settings.DEFAULT_SANDBOX_API_KEY
    timeout_s: float = 30.0
    max_attempts: int = 5
    """Attempts per request (429, 5xx, timeouts and connection errors are retried)."""
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0
    """Longest wait honoured from a ``Retry-After`` header (seconds); longer asks are cut."""
    max_pages: int = 1000
    """Pages followed per search before the client stops with an error (a server that keeps
    sending ``next_page_token`` is never followed forever)."""

    def client(self) -> LeapClient:
        if self.base_url.rstrip("/") == settings.DEFAULT_LEAP_API_BASE_URL:
            # Say so every time: a deployment that forgot the variable must not look healthy.
            dg.get_dagster_logger().warning(
                f"LEAP_API_BASE_URL is not set: using the local sandbox at {self.base_url} "
                "(set LEAP_API_BASE_URL and LEAP_API_KEY to use Leap)"
            )
        return LeapClient(
            self.base_url,
            self.api_key,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
            retry_after_max_s=self.retry_after_max_s,
            max_pages=self.max_pages,
        )


def env_or_default(name: str, default: str) -> str | dg.EnvVar:
    """``dg.EnvVar(name)`` when the variable is set (its value stays out of run config), else
    the local default."""
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def leap_resource() -> LeapResource:
    return LeapResource(
        base_url=env_or_default("LEAP_API_BASE_URL", settings.DEFAULT_LEAP_API_BASE_URL),
        api_key=env_or_default("LEAP_API_KEY", settings.DEFAULT_SANDBOX_API_KEY),
    )


class WarehouseResource(DuckDBResource):
    """``DuckDBResource`` whose connections run in UTC, whatever the host's time zone, and
    leave every described table commented (``vpp_pipeline.data_dictionary``).

    (Passing TimeZone in the connect config fails: ICU is not loaded that early.) Comments are
    written when a connection closes without error: whatever rebuilt a table (``CREATE OR
    REPLACE`` drops comments), it is documented again before the run goes on. Checking costs
    one catalog query; only missing or changed comments are written.
    """

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with super().get_connection() as conn:
            conn.execute("SET TimeZone = 'UTC'")
            yield conn
            apply_comments(conn)


def duckdb_resource(path: str | Path | None = None) -> WarehouseResource:
    """The analytics file (``VPP_DUCKDB_PATH``, default ``data/vpp.duckdb``), in UTC.

    The parent folder is created here because DuckDB creates the file but not its folder.
    """
    db_path = Path(path) if path is not None else settings.duckdb_path()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    return WarehouseResource(database=str(db_path))


class IntervalSourceResource(dg.ConfigurableResource):
    """Where interval CSV drops land, when a dropped file counts as complete (docs/landing.md)
    and which zone defines the market's local day."""

    landing_dir: str = settings.DEFAULT_INTERVAL_LANDING_DIR
    market_timezone: str = settings.DEFAULT_MARKET_TIMEZONE
    require_done_marker: bool = False
    """Load a file only once ``<name>.done`` sits beside it (else: also when its size and
    modification time stay unchanged across two sensor ticks)."""
    quiet_seconds: float = 60.0
    """Runs not started by the landing sensor load a file unchanged for this long."""
    max_hold_seconds: float = 300.0
    """How long complete files wait for the rest of their burst still being written, so a
    drop is one run."""

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_dir)


def interval_source_resource() -> IntervalSourceResource:
    return IntervalSourceResource(
        landing_dir=str(settings.interval_landing_dir()),
        market_timezone=settings.market_timezone(),
        require_done_marker=settings.interval_require_done_marker(),
    )
