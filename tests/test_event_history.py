"""dispatch_events keeps every event it has ever read (docs/methodology.md, "Event history").

Real Dagster materializations against the real sandbox HTTP server: a year of dispatch
history refreshed with a short lookback keeps every old event, its score and its day's
exclusion from later baselines; a cancellation that arrives for an old event updates its
row; re-reading the same revisions changes nothing.
"""

from __future__ import annotations

import functools
import shutil
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest
from conftest import make_resources

from assets import analyze_performance
from assets.analyze_intervals import CSV_ONLY_RUN_CONFIG
from vpp_pipeline.definitions import STAGE_MODULES
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.measurement.config import load_measurement_config
from vpp_pipeline.sandbox import SandboxServer
from vpp_pipeline.sandbox.intervals import write_interval_csvs

#: The refresh window of the year run: far shorter than the history.
LOOKBACK_DAYS = 30
#: Days between two refreshes of the year run (less than the lookback: windows overlap, so
#: events are read more than once, which must not count as new revisions).
STEP_DAYS = 28
HISTORY_DAYS = 365
#: A portfolio whose market groups keep their members all year. Leap's group search lists
#: one member list per result, so where members change the split of a group event depends
#: on which events share its result (the read's window); with none, one read of the year
#: and many short reads must agree exactly. (test_group_members_kept_over_a_long_read
#: covers a portfolio whose members change.)
YEAR_SEED, YEAR_METERS = 12, 8
MARKET_TZ = ZoneInfo("America/Los_Angeles")

#: The columns that describe the event itself (what a merge must carry over unchanged).
CONTENT_COLUMNS = (
    "meter_event_id, market_group_event_id, market_group_id, meter_id, programs, start_time, "
    "end_time, energy_kw, nomination_kw, committed_kw, priority, is_voluntary, "
    "performance_compensation_cap, dispatch_event_types, cancelled, is_test, revision, source"
)
SCORE_COLUMNS = (
    "meter_event_id, status, baseline_method, baseline_kwh, actual_kwh, delivered_kwh, "
    "delivered_kw, performance_factor, data_completeness, intervals_expected, intervals_present"
)


@functools.cache
def all_defs() -> list:
    return [
        *dg.load_assets_from_modules(STAGE_MODULES),
        *dg.load_asset_checks_from_modules(STAGE_MODULES),
    ]


def materialize(resources, instance, *assets: str, **kwargs) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        all_defs(),
        selection=dg.AssetSelection.assets(*assets),
        resources=resources,
        instance=instance,
        **kwargs,
    )
    assert result.success
    failed = [e.asset_check_key.name for e in result.get_asset_check_evaluations() if not e.passed]
    assert not [name for name in failed if name.startswith("dispatch_events")], failed
    return result


def midnight(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def sandbox_events(server, start: datetime, end: datetime) -> set[str]:
    """meter_event_ids the sandbox serves for events starting in [start, end) (a group event
    is one id per member meter, as in dispatch_events)."""
    with LeapClient(server.base_url, server.api_key) as client:
        meters = client.search_meter_dispatches(start, end, exclude_real_time_events=False)
        groups = client.search_group_dispatches(start, end, exclude_real_time_events=False)
    ids = {s.meter_event_id for r in meters for s in r.timeslots}
    ids |= {
        f"{s.market_group_event_id}:{m}" for r in groups for s in r.timeslots for m in r.meter_ids
    }
    return ids


@pytest.fixture(scope="module")
def year_run(tmp_path_factory):
    """A year of history (8 meters), run twice from the same interval reads: ``accumulated``
    refreshed every STEP_DAYS through the year with VPP_DISPATCH_LOOKBACK_DAYS=30 and no
    longer backfill (the pipeline's clock stepped forward), then scored today; ``reference``
    read in one go with a lookback covering the whole year, then scored today."""
    began = time.monotonic()
    folder = tmp_path_factory.mktemp("year")
    accumulated, reference = folder / "acc" / "vpp.duckdb", folder / "ref" / "vpp.duckdb"
    accumulated.parent.mkdir()
    reference.parent.mkdir()
    with (
        SandboxServer(
            seed=YEAR_SEED, port=0, n_meters=YEAR_METERS, history_days=HISTORY_DAYS
        ) as server,
        dg.instance_for_test() as instance,
    ):
        members = {}
        for event in server.portfolio.group_events:
            members.setdefault(event.recipient_id, set()).add(tuple(sorted(event.meter_ids)))
        assert all(len(lists) == 1 for lists in members.values())  # see YEAR_SEED
        anchor = server.portfolio.anchor
        acc_resources = make_resources(server, accumulated)
        materialize(acc_resources, instance, "meters", "meter_history", "nominations")
        # reads from 46 days before the first event (its baseline days) to yesterday, market time
        first_day = (anchor - timedelta(days=HISTORY_DAYS + 47)).astimezone(MARKET_TZ).date()
        last_day = (anchor - timedelta(days=1)).astimezone(MARKET_TZ).date()
        # Leap's interval-upload CSVs in the landing folder (the API route is tested elsewhere
        # and is several times slower for a year)
        write_interval_csvs(
            server.portfolio,
            accumulated.parent / "landing",
            datetime.combine(first_day, datetime.min.time(), tzinfo=MARKET_TZ).astimezone(UTC),
            anchor,
            days_per_file=31,
        )
        materialize(
            acc_resources,
            instance,
            "interval_files",
            "interval_reads",
            run_config=CSV_ONLY_RUN_CONFIG,
            tags={
                "dagster/asset_partition_range_start": first_day.isoformat(),
                "dagster/asset_partition_range_end": last_day.isoformat(),
            },
        )
        shutil.copy(accumulated, reference)

        now = datetime.now(UTC)
        clocks = []
        clock = anchor - timedelta(days=HISTORY_DAYS)
        while clock < now - timedelta(days=1):
            clocks.append(clock)
            clock += timedelta(days=STEP_DAYS)
        clocks.append(now)
        # settings and clock patched for these runs only (the module's other tests use theirs)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("VPP_DISPATCH_LOOKBACK_DAYS", str(LOOKBACK_DAYS))
            patch.setenv("VPP_DISPATCH_BACKFILL_DAYS", "0")
            for clock in clocks:
                patch.setattr(analyze_performance, "_now", lambda clock=clock: clock)
                if clock != now:
                    materialize(acc_resources, instance, "dispatch_events")
            # today: the last refresh, then baselines and scores (the clock stays at now)
            materialize(
                acc_resources, instance, "dispatch_events", "baselines", "event_performance"
            )

            patch.setenv("VPP_DISPATCH_LOOKBACK_DAYS", str(HISTORY_DAYS + 35))
            ref_resources = make_resources(server, reference)
            materialize(
                ref_resources, instance, "dispatch_events", "baselines", "event_performance"
            )
        truth = sandbox_events(
            server, anchor - timedelta(days=HISTORY_DAYS + 1), now + timedelta(days=8)
        )
    yield {
        "accumulated": accumulated,
        "reference": reference,
        "now": now,
        "clocks": clocks,
        "truth": truth,
        "seconds": time.monotonic() - began,
    }


def approx_float(value):
    return pytest.approx(value, rel=1e-12, abs=1e-9) if isinstance(value, float) else value


def rows(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.execute(sql).fetchall()


def test_year_with_short_lookback_keeps_every_old_event_and_its_score(year_run):
    acc, ref, now = year_run["accumulated"], year_run["reference"], year_run["now"]
    window_start = midnight(now) - timedelta(days=LOOKBACK_DAYS)
    events = rows(acc, f"SELECT {CONTENT_COLUMNS} FROM dispatch_events ORDER BY meter_event_id")
    assert {r[0] for r in events} == year_run["truth"]
    # the same events with the same content as one read of the whole year
    assert events == rows(
        ref, f"SELECT {CONTENT_COLUMNS} FROM dispatch_events ORDER BY meter_event_id"
    )
    old = {
        r[0]
        for r in rows(
            acc,
            f"SELECT meter_event_id FROM dispatch_events "
            f"WHERE start_time < TIMESTAMPTZ '{window_start.isoformat()}'",
        )
    }
    assert len(old) > 250  # most of the year is outside the last refresh's window
    assert rows(acc, "SELECT min(start_time) FROM dispatch_events")[0][0] < now - timedelta(
        days=330
    )

    scores = rows(acc, f"SELECT {SCORE_COLUMNS} FROM event_performance ORDER BY meter_event_id")
    ref_scores = rows(ref, f"SELECT {SCORE_COLUMNS} FROM event_performance ORDER BY meter_event_id")
    assert len(scores) == len(ref_scores) == len(events)
    for mine, theirs in zip(scores, ref_scores, strict=True):
        # sums of floats may differ in the last bit between two DuckDB runs
        assert [approx_float(v) for v in mine] == list(theirs), mine[0]
    old_scored = [r for r in scores if r[0] in old and r[1] == "scored"]
    assert len(old_scored) > 150
    assert all(r[5] is not None for r in old_scored)  # delivered kWh


def test_year_history_rows_say_when_they_were_seen(year_run):
    acc, now, clocks = year_run["accumulated"], year_run["now"], year_run["clocks"]
    history = rows(
        acc,
        "SELECT meter_event_id, start_time, first_seen_at, last_seen_at, revision_count, "
        "first_seen_via FROM dispatch_events",
    )
    read_more_than_once = 0
    for event_id, start, first_seen, last_seen, revision_count, via in history:
        # each refresh reads event starts in [midnight - lookback, clock + 7 days)
        reads = [
            c
            for c in clocks
            if midnight(c) - timedelta(days=LOOKBACK_DAYS) <= start < c + timedelta(days=7)
        ]
        assert reads, event_id
        assert first_seen == reads[0], event_id
        assert last_seen == reads[-1], event_id
        assert via == ("backfill" if reads[0] == clocks[0] else "search"), event_id
        # the sandbox serves each event's final revision: one version, however often read
        assert revision_count == 1, event_id
        read_more_than_once += len(reads) > 1
    assert read_more_than_once > 20
    assert sum(last_seen < now for *_, last_seen, _, _ in history) > 250


def test_year_old_event_days_stay_excluded_from_baselines(year_run):
    acc, ref, now = year_run["accumulated"], year_run["reference"], year_run["now"]
    # every (event, baseline day) pair whose day is a dispatch day of the same meter, by the
    # full year's events (non-cancelled, non-test, every local day the window touches)
    overlap_sql = """
        WITH dispatch_days AS (
            SELECT DISTINCT d.meter_id, CAST(unnest(generate_series(
                CAST(timezone(p.meter_timezone, d.start_time) AS DATE),
                CAST(timezone(p.meter_timezone, d.end_time - INTERVAL 1 MICROSECOND) AS DATE),
                INTERVAL 1 DAY)) AS DATE) AS local_date
            FROM ref.dispatch_events d
            JOIN (SELECT DISTINCT meter_id, meter_timezone FROM ref.event_performance) p
                USING (meter_id)
            WHERE NOT d.cancelled AND NOT d.is_test
        ),
        used AS (
            SELECT DISTINCT b.meter_event_id, b.meter_id, unnest(b.eligible_days) AS local_date
            FROM {db}.baselines b
        )
        SELECT count(*) FROM used JOIN dispatch_days USING (meter_id, local_date)
    """
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"ATTACH '{acc}' AS acc (READ_ONLY)")
        conn.execute(f"ATTACH '{ref}' AS ref (READ_ONLY)")
        assert conn.execute(overlap_sql.format(db="acc")).fetchall() == [(0,)]
        # the same baseline days as the one-read reference, event by event
        differing, largest_kwh_difference = conn.execute(
            "SELECT count(*) FILTER (WHERE r.meter_event_id IS NULL OR a.meter_event_id IS NULL "
            "OR a.eligible_days <> r.eligible_days OR a.method <> r.method), "
            "max(abs(a.adjusted_kwh - r.adjusted_kwh)) FROM acc.baselines a "
            "FULL JOIN ref.baselines r USING (meter_event_id, interval_start)"
        ).fetchall()[0]
        assert differing == 0
        assert largest_kwh_difference < 1e-9  # float sums may differ in the last bit
        # not vacuous: many events' baseline look-back (45 local days) holds a day of an event
        # of the same meter that the last refresh (30 days back) no longer read
        window_start = midnight(now) - timedelta(days=LOOKBACK_DAYS)
        excluded_old_days = conn.execute(
            """
            SELECT count(DISTINCT (e.meter_event_id, o.meter_event_id))
            FROM acc.event_performance e
            JOIN acc.dispatch_events o
                ON o.meter_id = e.meter_id AND NOT o.cancelled AND NOT o.is_test
                AND CAST(timezone(e.meter_timezone, o.start_time) AS DATE)
                    BETWEEN e.event_local_date - 45 AND e.event_local_date - 1
            WHERE e.status = 'scored' AND o.start_time < $w AND o.last_seen_at < $now
            """,
            {"w": window_start, "now": now},
        ).fetchall()[0][0]
        assert excluded_old_days > 100


def test_group_members_kept_over_a_long_read():
    """A first run's backfill reads a year in 31-day windows; a group whose members changed
    comes back as several results. Every event keeps the members its result lists (none
    dropped because an earlier window listed fewer)."""
    with SandboxServer(seed=7, port=0, n_meters=8, history_days=HISTORY_DAYS) as server:
        truth = {e.event_id: set(e.meter_ids) for e in server.portfolio.group_events}
        assert len({frozenset(m) for m in truth.values()}) > 1  # members do change here
        anchor = server.portfolio.anchor
        with LeapClient(server.base_url, server.api_key) as client:
            groups = client.search_group_dispatches(
                anchor - timedelta(days=HISTORY_DAYS + 1),
                anchor + timedelta(days=8),
                exclude_real_time_events=False,
            )
    seen = {s.market_group_event_id: set(r.meter_ids) for r in groups for s in r.timeslots}
    assert seen.keys() == truth.keys()
    assert all(truth[event_id] <= members for event_id, members in seen.items())


def test_year_run_is_fast_enough(year_run):
    # the whole module's pipeline: a year of reads, 14 refreshes, two scorings
    assert year_run["seconds"] < 120


def test_cancellation_of_an_old_event_updates_its_row_and_rereads_are_idempotent(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("VPP_DISPATCH_LOOKBACK_DAYS", "10")
    with (
        SandboxServer(seed=5, port=0, n_meters=8, history_days=60) as server,
        dg.instance_for_test() as instance,
    ):
        db = tmp_path / "vpp.duckdb"
        resources = make_resources(server, db)
        materialize(resources, instance, "nominations")
        first = materialize(resources, instance, "dispatch_events")
        meta = first.asset_materializations_for_node("dispatch_events")[0].metadata
        assert meta["backfill"].value is True  # the first run reads the backfill days (400)
        all_columns = (
            f"{CONTENT_COLUMNS}, updated_at, first_seen_at, revision_count, first_seen_via"
        )
        before = rows(db, f"SELECT {all_columns} FROM dispatch_events ORDER BY meter_event_id")
        assert len(before) == len(
            sandbox_events(server, server.portfolio.history_start, server.portfolio.history_end)
        )

        # a re-read of the same revisions: the same rows, nothing counted twice
        again = materialize(resources, instance, "dispatch_events")
        meta = again.asset_materializations_for_node("dispatch_events")[0].metadata
        assert meta["backfill"].value is False and meta["new_versions"].value == 0
        assert meta["events_read"].value > 0
        assert (
            rows(db, f"SELECT {all_columns} FROM dispatch_events ORDER BY meter_event_id") == before
        )
        assert {r[-2] for r in before} == {1}

        # an old event (outside the 10-day re-read) cancelled through the ops store, and a
        # recent one cancelled in Leap's search
        now = datetime.now(UTC)
        old_id, recent_id = rows(
            db,
            f"""
            SELECT
                min(meter_event_id) FILTER (WHERE start_time < TIMESTAMPTZ
                    '{(now - timedelta(days=30)).isoformat()}' AND market_group_event_id IS NULL),
                min(meter_event_id) FILTER (WHERE start_time > TIMESTAMPTZ
                    '{(now - timedelta(days=5)).isoformat()}' AND market_group_event_id IS NULL)
            FROM dispatch_events WHERE NOT cancelled
            """,
        )[0]
        assert old_id and recent_id
        recent = next(e for e in server.portfolio.meter_events if e.event_id == recent_id)
        recent.add_revision(now, cancelled=True)
        with duckdb.connect(str(db)) as conn:
            conn.execute(
                "CREATE TABLE ops_dispatch_events AS SELECT * EXCLUDE (first_seen_at, "
                "last_seen_at, revision_count, first_seen_via) REPLACE (true AS cancelled, "
                "2 AS revision, 'webhook' AS source, now() AS updated_at) "
                "FROM dispatch_events WHERE meter_event_id = $e",
                {"e": old_id},
            )
        materialize(resources, instance, "dispatch_events")
        history_sql = (
            "SELECT meter_event_id, cancelled, revision, source, revision_count, first_seen_via, "
            "first_seen_at FROM dispatch_events WHERE meter_event_id IN ($o, $r) "
            "ORDER BY meter_event_id = $r"
        )
        params = {"o": old_id, "r": recent_id}
        with duckdb.connect(str(db), read_only=True) as conn:
            after = conn.execute(history_sql, params).fetchall()
            unchanged = conn.execute(
                f"SELECT {all_columns} FROM dispatch_events WHERE meter_event_id NOT IN ($o, $r) "
                "ORDER BY meter_event_id",
                params,
            ).fetchall()
        first_seen = {r[0]: r[-3] for r in before}
        assert after == [
            (old_id, True, 2, "webhook", 2, "backfill", first_seen[old_id]),
            (recent_id, True, None, "search", 2, "backfill", first_seen[recent_id]),
        ]
        assert unchanged == [r for r in before if r[0] not in (old_id, recent_id)]

        # the same again: idempotent; then a stale copy (revision 1) does not undo the cancel
        materialize(resources, instance, "dispatch_events")
        with duckdb.connect(str(db), read_only=True) as conn:
            assert conn.execute(history_sql, params).fetchall() == after
        with duckdb.connect(str(db)) as conn:
            conn.execute(
                "UPDATE ops_dispatch_events SET cancelled = false, revision = 1, source = 'webhook'"
            )
        materialize(resources, instance, "dispatch_events")
        with duckdb.connect(str(db), read_only=True) as conn:
            assert conn.execute(history_sql, params).fetchall() == after


def test_table_from_before_the_history_columns_is_adopted_and_backfilled(sandbox, tmp_path):
    from vpp_pipeline.measurement.dispatch_frames import DISPATCH_EVENT_COLUMNS

    db = tmp_path / "vpp.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute(f"CREATE TABLE dispatch_events ({DISPATCH_EVENT_COLUMNS})")
        conn.execute(
            "INSERT INTO dispatch_events (meter_event_id, meter_id, programs, start_time, "
            "end_time, energy_kw, nomination_kw, committed_kw, cancelled, is_test, source, "
            "updated_at) VALUES ('legacy-1', 'm-gone', ['CCA'], TIMESTAMPTZ '2025-03-03 23:00Z', "
            "TIMESTAMPTZ '2025-03-04 01:00Z', 5, 5, 5, false, false, 'search', "
            "TIMESTAMPTZ '2025-03-05 00:00Z')"
        )
    with dg.instance_for_test() as instance:
        resources = make_resources(sandbox, db)
        materialize(resources, instance, "nominations")
        result = materialize(resources, instance, "dispatch_events")
    assert result.asset_materializations_for_node("dispatch_events")[0].metadata["backfill"].value
    legacy = rows(
        db,
        "SELECT meter_event_id, first_seen_at, last_seen_at, revision_count, first_seen_via "
        "FROM dispatch_events WHERE meter_event_id = 'legacy-1'",
    )
    stamp = datetime(2025, 3, 5, tzinfo=UTC)
    assert legacy == [("legacy-1", stamp, stamp, 1, "search")]
    assert rows(db, "SELECT count(*) FROM dispatch_events")[0][0] > 100


@pytest.mark.parametrize(
    ("variable", "value"),
    [("VPP_DISPATCH_BACKFILL_DAYS", "a year"), ("VPP_DISPATCH_LOOKBACK_DAYS", "-3")],
)
def test_bad_day_settings_are_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"{variable} must be a whole number of days"):
        load_measurement_config()
