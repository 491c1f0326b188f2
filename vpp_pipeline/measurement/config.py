"""Measurement parameters (baselines, performance, flags, baseline accuracy), per program.

Every number of docs/methodology.md lives here with its documented default. A program may
override any of them (and its weekday baseline method); programs without an override use
the defaults. The resolved parameters are staged into DuckDB as the temp table
``measurement_parameters`` (one row per configured program plus the default row ``'*'``),
which the SQL models join on the event's first program.

Configuration comes from a JSON file named by ``VPP_MEASUREMENT_CONFIG`` (optional)::

    {"defaults": {"clamp_high": 1.25},
     "programs": {"PJM-CAPACITY": {"weekday_method": "high-4-of-5"},
                  "ELRP": {"pending_grace_days": 5}}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import polars as pl

from vpp_pipeline import settings

#: Baseline method names as they appear in the tables.
TEN_IN_TEN = "10-in-10"
FOUR_IN_FOUR = "4-in-4"
HIGH_FOUR_OF_FIVE = "high-4-of-5"
GENERATOR_OUTPUT = "meter-generator-output"
WEEKDAY_METHODS = (TEN_IN_TEN, HIGH_FOUR_OF_FIVE)
BASELINE_METHODS = (TEN_IN_TEN, FOUR_IN_FOUR, HIGH_FOUR_OF_FIVE, GENERATOR_OUTPUT)

#: Event statuses in ``event_performance``.
EVENT_STATUSES = ("scored", "insufficient_data", "pending_data", "cancelled", "test")
#: Underperformer reason codes.
REASON_CODES = ("LOW_PERFORMANCE", "NO_RESPONSE", "MISSING_DATA", "INCONCLUSIVE")
#: The reason codes that are performance calls (INCONCLUSIVE and MISSING_DATA are not).
PERFORMANCE_FLAGS = ("LOW_PERFORMANCE", "NO_RESPONSE")

#: Local time of each transmission region's market (day-level logic uses it).
DEFAULT_MARKET_TIMEZONES = {
    "CAISO": "America/Los_Angeles",
    "WECC_PC": "America/Los_Angeles",
    "WECC_SW": "America/Phoenix",
    "ERCOT": "America/Chicago",
    "SERC": "America/Chicago",
    "PJM": "America/New_York",
    "NYISO": "America/New_York",
    "ISONE": "America/New_York",
}


@dataclass(frozen=True)
class MeasurementParameters:
    """One program's measurement numbers. Days are local calendar days; hours are hours
    before the event start (the adjustment window is ``[start - adjustment_start_hours,
    start - adjustment_end_hours)``)."""

    #: Baseline method on weekday (non-holiday) event days: ``10-in-10`` or ``high-4-of-5``.
    weekday_method: str = TEN_IN_TEN
    #: Eligible days are local days D-lookback .. D-1.
    baseline_lookback_days: int = 45
    weekday_max_days: int = 10
    weekday_min_days: int = 5
    weekend_max_days: int = 4
    weekend_min_days: int = 2
    #: High 4 of 5: days taken (and required); the lowest-load one of them is dropped.
    high_max_days: int = 5
    high_min_days: int = 5
    adjustment_start_hours: float = 4.0
    adjustment_end_hours: float = 1.0
    clamp_low: float = 0.8
    clamp_high: float = 1.2
    #: The flags' baseline goes without the day-of adjustment when the adjustment window
    #: overlaps another dispatch of the meter or this many hours after it (load rebound).
    adjustment_rebound_hours: float = 1.0
    #: An event without interval data is ``pending_data`` until this many days after its end.
    pending_grace_days: float = 3.0
    #: Underperformer rules (docs/flags.md): trailing window (local days), thresholds.
    flag_window_days: int = 90
    #: LOW_PERFORMANCE: the high bound of the pooled performance is below this, over at
    #: least low_performance_min_events committed, non-voluntary events. One event is
    #: enough when its whole band lies below the factor: the band, not a count of events,
    #: guards against baseline noise (NO_RESPONSE is a one-event call too); measured on 10
    #: sandbox portfolios, 2 left recall at 0.75-0.77 on two of them for no gain in
    #: precision (docs/flags.md section 4, BENCHMARKS.md).
    low_performance_factor: float = 0.8
    low_performance_min_events: int = 1
    #: NO_RESPONSE: one such event's high bound of delivered kW is below this x committed kW.
    no_response_factor: float = 0.1
    #: MISSING_DATA: the event window has fewer than this share of its quarter hours.
    missing_data_completeness: float = 0.9
    #: Two-sided confidence of delivered_kw_low / delivered_kw_high (placebo events).
    uncertainty_confidence: float = 0.9
    #: INCONCLUSIVE: the pooled bounds straddle low_performance_factor and are wider than this.
    inconclusive_band: float = 0.5
    #: Whether CAISO real-time (``5m``) events are judged by the flags: only for programs
    #: that take part in real time (Leap excludes them from polling by default).
    flag_real_time_events: bool = False
    #: Whether the flags judge a meter's share of group events (its allocation by nomination,
    #: which is also the target its site controller is sent), pooled with its meter-level
    #: events. A share is judged only when the meter, and every other meter the event was
    #: split over, was in the group at the event's start (ACTIVE enrollment in the group and
    #: program, a nomination in force, not IDLE/DISENROLL; sql/group_event_members.sql).
    #: Off by default: measured in BENCHMARKS.md (issue 10), it judges more meters and finds
    #: more under-responders with no false flag, but not recall >= 0.8 on every seed either.
    flag_group_events: bool = False
    #: Baseline accuracy: trailing window, the pseudo-event window scored on each test day
    #: (local start hour and length), and the RRMSE above which a baseline is unreliable.
    accuracy_window_days: int = 90
    accuracy_event_start_hour: int = 16
    accuracy_event_hours: int = 4
    accuracy_max_rrmse: float = 0.2

    def __post_init__(self) -> None:
        if self.weekday_method not in WEEKDAY_METHODS:
            raise ValueError(
                f"weekday_method {self.weekday_method!r} is not one of {WEEKDAY_METHODS}"
            )
        if not 0 < self.clamp_low <= 1 <= self.clamp_high:
            raise ValueError("clamp must satisfy 0 < clamp_low <= 1 <= clamp_high")
        if self.adjustment_start_hours <= self.adjustment_end_hours:
            raise ValueError("adjustment_start_hours must exceed adjustment_end_hours")
        if not 0 < self.uncertainty_confidence < 1:
            raise ValueError("uncertainty_confidence must be between 0 and 1 (exclusive)")


#: Programs whose default weekday method is PJM-style high 4 of 5.
def _default_program_overrides() -> dict[str, dict[str, Any]]:
    return {"PJM-CAPACITY": {"weekday_method": HIGH_FOUR_OF_FIVE}}


@dataclass(frozen=True)
class MeasurementConfig:
    """Defaults, per-program overrides, market time zones and fetch windows."""

    defaults: MeasurementParameters = field(default_factory=MeasurementParameters)
    program_overrides: dict[str, dict[str, Any]] = field(default_factory=_default_program_overrides)
    market_timezones: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MARKET_TIMEZONES))
    #: Time zone of meters whose transmission region is unknown.
    default_timezone: str = field(default_factory=settings.market_timezone)
    #: Time zone of ``interval_reads.local_date`` (``VPP_MARKET_TIMEZONE``; meters in this
    #: zone use that column directly) and of the ``underperformers`` partitions.
    interval_local_timezone: str = field(default_factory=settings.market_timezone)
    #: Each refresh of ``dispatch_events`` re-reads events from ``now - lookback`` to
    #: ``now + lookahead`` days and merges them into the history it keeps; the first run
    #: reads ``backfill`` days back (docs/methodology.md, "Event history").
    dispatch_lookback_days: int = 120
    dispatch_lookahead_days: int = 7
    dispatch_backfill_days: int = 400

    def __post_init__(self) -> None:
        for name in ("dispatch_lookback_days", "dispatch_lookahead_days", "dispatch_backfill_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a whole number of days >= 0, got {value!r}")

    def for_program(self, program: str | None) -> MeasurementParameters:
        """The resolved parameters of ``program`` (defaults when it has no override).
        Programs named ``PJM*`` default to high 4 of 5 even without an explicit entry."""
        override = dict(self.program_overrides.get(program or "", {}))
        if program and program.startswith("PJM") and "weekday_method" not in override:
            override["weekday_method"] = HIGH_FOUR_OF_FIVE
        return replace(self.defaults, **override) if override else self.defaults

    def parameters_frame(self) -> pl.DataFrame:
        """One row per configured program plus ``'*'`` (the defaults), fully resolved."""
        rows = [{"program_identifier": "*", **asdict(self.defaults)}]
        rows += [
            {"program_identifier": program, **asdict(self.for_program(program))}
            for program in sorted(self.program_overrides)
        ]
        # INTEGER, not BIGINT: DuckDB adds integers (not bigints) to dates
        return pl.DataFrame(rows).with_columns(pl.col(pl.Int64).cast(pl.Int32))

    def t_quantiles_frame(self, max_df: int = 200) -> pl.DataFrame:
        """Two-sided Student t quantiles for every configured ``uncertainty_confidence``:
        columns confidence, df (1..max_df), t (the (1 + confidence) / 2 quantile)."""
        # scipy.special's inverse t CDF, not scipy.stats: the same values, and importing
        # scipy.stats costs ~0.4 s more, paid by every run of the Analyze stage
        from scipy.special import stdtrit

        confidences = sorted(
            {self.for_program(p).uncertainty_confidence for p in [None, *self.program_overrides]}
        )
        rows = [
            (c, df, float(stdtrit(df, (1 + c) / 2)))
            for c in confidences
            for df in range(1, max_df + 1)
        ]
        return pl.DataFrame(
            rows, schema={"confidence": pl.Float64, "df": pl.Int32, "t": pl.Float64}, orient="row"
        )

    def timezones_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "transmission_region": list(self.market_timezones),
                "timezone": list(self.market_timezones.values()),
            },
            schema={"transmission_region": pl.String, "timezone": pl.String},
        )


def config_from_dict(data: dict[str, Any]) -> MeasurementConfig:
    """A config from its JSON shape (see the module docstring); unknown keys are errors."""
    known = {f.name for f in fields(MeasurementParameters)}
    for scope, values in [("defaults", data.get("defaults", {}))] + [
        (f"programs.{p}", v) for p, v in data.get("programs", {}).items()
    ]:
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown measurement parameters in {scope}: {sorted(unknown)}")
    defaults = MeasurementParameters(**data.get("defaults", {}))
    overrides = {**_default_program_overrides(), **data.get("programs", {})}
    config = MeasurementConfig(defaults=defaults, program_overrides=overrides)
    extra = {
        k: data[k]
        for k in (
            "market_timezones",
            "default_timezone",
            "interval_local_timezone",
            "dispatch_lookback_days",
            "dispatch_lookahead_days",
            "dispatch_backfill_days",
        )
        if k in data
    }
    config = replace(config, **extra)
    for program in overrides:  # validate every override early
        config.for_program(program)
    return config


#: Environment variables that override a field of the config (whole days).
DAY_SETTINGS = {
    "VPP_DISPATCH_LOOKBACK_DAYS": "dispatch_lookback_days",
    "VPP_DISPATCH_BACKFILL_DAYS": "dispatch_backfill_days",
}


def load_measurement_config() -> MeasurementConfig:
    """The config from ``VPP_MEASUREMENT_CONFIG`` (a JSON file), or the defaults.
    ``VPP_DISPATCH_LOOKBACK_DAYS`` overrides how far each dispatch refresh re-reads (default
    120) and ``VPP_DISPATCH_BACKFILL_DAYS`` how far the first one reads (default 400)."""
    path = settings.env("VPP_MEASUREMENT_CONFIG", "")
    data: dict[str, Any] = json.loads(Path(path).read_text()) if path else {}
    for variable, key in DAY_SETTINGS.items():
        text = settings.env(variable, "")
        if not text:
            continue
        days = int(text) if text.strip().lstrip("-").isdigit() else None
        if days is None or days < 0:
            raise ValueError(f"{variable} must be a whole number of days >= 0, got {text!r}")
        data[key] = days
    return config_from_dict(data)
