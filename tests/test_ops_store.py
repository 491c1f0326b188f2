"""The ops store on both backends (a SQLite file; a PostgreSQL schema): transactions, concurrent
processes, the writer lock, the inbox's id order, the schema's versions and the store's identity."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime

import pytest

from vpp_pipeline.ops import OpsStore, OpsStoreError, connect, is_postgres
from vpp_pipeline.ops import schema as ops_schema
from vpp_pipeline.ops.sql import Db, Mode, statements
from vpp_pipeline.ops.store import _backend

SPAWN = multiprocessing.get_context("spawn")


def _insert(store: OpsStore, body: bytes) -> int:
    with store.session() as s:
        return s.insert_inbox(
            received_at=datetime.now(UTC), source="webhook", level="meter", body=body, headers={}
        )


def _append_rows(location: str, worker: int, n: int) -> None:
    """A receiver-like process: half its rows through the inbox writer (the receivers' path), half
    through write sessions (the reconciliation's path)."""
    store = OpsStore(location)
    writer = store.writer()
    try:
        for i in range(0, n, 2):
            row = {"received_at": "t", "level": "meter", "headers": {}, "body_sha256": "x",
                   "body": f'{{"w": {worker}, "i": {i}}}'.encode()}  # fmt: skip
            writer.append([("inbox", row)])
            _insert(store, f'{{"w": {worker}, "i": {i + 1}}}'.encode())
    finally:
        writer.close()


def test_wal_and_full_sync(tmp_path):
    OpsStore.initialize(tmp_path / "ops.sqlite")
    conn = connect(tmp_path / "ops.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


def test_concurrent_processes_append_in_id_order_and_a_cursor_misses_none(ops_store):
    """Three processes append while a reader follows the inbox with a cursor (``inbox_id > last``), as
    the sensor does: every row is seen, because ids become visible in id order."""
    location = ops_store.location
    procs = [SPAWN.Process(target=_append_rows, args=(location, w, 120)) for w in range(3)]
    for p in procs:
        p.start()
    seen: list[int] = []
    last = 0
    while any(p.is_alive() for p in procs) or ops_store.max_inbox_id() > last:
        ids = ops_store.pending_inbox_ids(last)
        seen.extend(ids)
        last = ids[-1] if ids else last
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    rows = ops_store.inbox()
    assert len(rows) == 360 and len({r.body for r in rows}) == 360
    assert seen == [r.inbox_id for r in rows], "the cursor skipped rows that committed late"


def test_write_sessions_run_one_at_a_time(ops_store):
    """Planning relies on it: a second writer starts only after the first committed."""
    entered, times = threading.Event(), {}

    def first():
        with ops_store.session() as s:
            entered.set()
            s.insert_inbox(received_at=datetime.now(UTC), source="webhook", level="meter",
                           body=b"{}", headers={})  # fmt: skip
            time.sleep(0.5)
        times["first_committed"] = time.monotonic()

    def second():
        entered.wait(5)
        with ops_store.session() as s:
            times["second_started"] = time.monotonic()
            times["second_saw"] = s.max_inbox_id()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert times["second_started"] >= times["first_committed"] - 0.01
    assert times["second_saw"] == 1


def test_session_rolls_back_on_error(ops_store):
    with pytest.raises(RuntimeError), ops_store.session() as s:
        s.insert_inbox(
            received_at=datetime.now(UTC), source="webhook", level="meter", body=b"{}", headers={}
        )
        raise RuntimeError("boom")
    assert ops_store.inbox() == []
    assert ops_store.max_inbox_id() == 0


def test_pending_ids_skip_processed_rows(ops_store):
    with ops_store.session() as s:
        ids = [
            s.insert_inbox(
                received_at=datetime.now(UTC),
                source="webhook",
                level="meter",
                body=b"{}",
                headers={},
            )
            for _ in range(4)
        ]
        s.mark_processed(ids[:2], "run-1", datetime.now(UTC))
    assert ops_store.pending_inbox_ids(0) == ids[2:]
    assert ops_store.pending_inbox_ids(ids[2]) == ids[3:]


def test_raw_body_bytes_round_trip(ops_store):
    body = bytes(range(256)) + b'{"x": "\xc3\xa9"}'
    writer = ops_store.writer()
    try:
        (inbox_id,) = writer.append(
            [("inbox", {"received_at": "t", "level": "meter", "headers": {"a": "b"},
                        "body": body, "body_sha256": "h"})]
        )  # fmt: skip
    finally:
        writer.close()
    (row,) = ops_store.inbox()
    assert (row.inbox_id, row.body, row.headers) == (inbox_id, body, {"a": "b"})


def test_sites_and_nominations(ops_store):
    store = ops_store
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    t1 = datetime(2030, 2, 1, tzinfo=UTC)
    with store.session() as s:
        s.upsert_sites(
            [{"meter_id": "m1", "battery_power_kw": 50.0}, {"meter_id": "m2"}],
            [
                {"meter_id": "m1", "program_identifier": "CCA", "start_time": t0, "end_time": t1, "nomination_kw": 20.0},
                {"meter_id": "m1", "program_identifier": "ELRP", "start_time": t0, "end_time": None, "nomination_kw": 5.0},
            ],
            datetime.now(UTC),
        )  # fmt: skip
        sites = s.sites(["m1", "m2", "m3"])
    assert set(sites) == {"m1", "m2"} and store.known_meter_ids() == {"m1", "m2"}
    assert sites["m1"].battery_power_kw == 50.0
    assert sites["m1"].nomination_kw(["CCA"], datetime(2030, 1, 15, tzinfo=UTC)) == 20.0
    assert sites["m1"].nomination_kw(["CCA"], t1) is None  # end exclusive
    assert sites["m1"].nomination_kw(["CCA", "ELRP"], datetime(2030, 1, 15, tzinfo=UTC)) == 25.0
    with store.session() as s:  # a refresh replaces the meter's nominations
        s.upsert_sites([{"meter_id": "m1", "battery_power_kw": 60.0}], [], datetime.now(UTC))
        assert s.sites(["m1"])["m1"].nominations == ()
        assert s.sites(["m1"])["m1"].battery_power_kw == 60.0


def _event(key: str, meters: list[str], revision: int = 1) -> dict:
    return {
        "event_key": key, "level": "meter", "event_id": key, "recipient_id": meters[0],
        "meter_ids": str(meters).replace("'", '"'), "timeslot": "{}", "content_sha256": f"h{revision}",
        "revision": revision, "integration_test": 0, "communication_test": 0, "source": "webhook",
        "inbox_id": revision, "first_received_at": "t", "received_at": "t", "updated_at": "t",
    }  # fmt: skip


def test_events_by_meter_follow_each_revision(ops_store):
    with ops_store.session() as s:
        s.save_event(_event("meter:a", ["m1", "m2"]))
        s.save_event(_event("meter:b", ["m2"]))
        assert [e["event_key"] for e in s.events_touching_meters(["m2"])] == ["meter:a", "meter:b"]
        s.save_event(_event("meter:a", ["m3"], revision=2))  # a revision changed its meters
        assert [e["event_key"] for e in s.events_touching_meters(["m1", "m2"])] == ["meter:b"]
        assert s.events_touching_meters(["m3"])[0]["revision"] == 2
    assert [r["revision"] for r in ops_store.event_revisions("meter:a")] == [1, 2]


# --- schema versions and identity ------------------------------------------------------------------------


def _store_at_version_1(location: str) -> None:
    """A store exactly as the version-1 code made it (its migration file, nothing after), with one
    event."""
    backend = _backend(location)
    with backend.connection(create=backend.preflight(create=True)) as conn:
        db = Db(conn, backend.translate)
        backend.begin(conn, Mode.MIGRATE, backend.migration_key(conn))
        ops_schema.create_meta(db)
        first = ops_schema.migrations(backend.kind)[0]
        for statement in statements(first.sql):
            db.execute(statement)
        ops_schema.stamp(db, first.version, first.name)
        db.execute(
            "INSERT INTO dispatch_events (event_key, level, event_id, recipient_id, meter_ids,"
            " timeslot, content_sha256, revision, integration_test, communication_test, source,"
            " inbox_id, first_received_at, received_at, updated_at) VALUES ('meter:old', 'meter',"
            " 'old', 'm9', '[\"m9\", \"m8\"]', '{}', 'h', 1, 0, 0, 'webhook', 1, 't', 't', 't')"
        )
        backend.commit(conn)


def test_a_version_1_store_is_upgraded_in_place(ops_location):
    _store_at_version_1(ops_location)
    store = OpsStore(ops_location)
    assert store.schema_version == 3
    with store.session(write=False) as s:
        versions = s.rows("SELECT version, name FROM ops_schema_versions ORDER BY version")
        # the upgrade filled the new table from the events already there
        assert [e["event_key"] for e in s.events_touching_meters(["m8"])] == ["meter:old"]
    assert versions == [
        {"version": 1, "name": "dispatch_path"},
        {"version": 2, "name": "event_meters"},
        {"version": 3, "name": "ordering_and_quarantine"},
    ]
    with store.session(write=False) as s:  # version 3's tables, empty
        assert s.quarantined() == []
        assert s.rows("SELECT count(*) AS n FROM webhook_deliveries") == [{"n": 0}]
    assert OpsStore(ops_location).store_id == store.store_id  # identity kept


def _initialize(location: str, results) -> None:
    results.put(OpsStore.initialize(location).store_id)


def test_processes_starting_together_create_one_store(ops_location):
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=_initialize, args=(ops_location, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    ids = {results.get(timeout=5) for _ in procs}
    assert ids == {OpsStore(ops_location).store_id}
    with OpsStore(ops_location).session(write=False) as s:
        assert s.rows("SELECT count(*) AS n FROM ops_schema_versions") == [{"n": 3}]


def test_a_newer_schema_is_refused(ops_store):
    with ops_store.session() as s:
        s._db.execute(
            "INSERT INTO ops_schema_versions (version, name, applied_at) VALUES (99, 'future', 't')"
        )
    with pytest.raises(OpsStoreError) as error:
        OpsStore(ops_store.location)
    assert error.value.reason_code == "OPS_STORE_TOO_NEW"


def test_opening_never_creates_a_store(ops_location):
    with pytest.raises(OpsStoreError) as error:
        OpsStore(ops_location)
    expected = "OPS_STORE_NOT_INITIALIZED" if is_postgres(ops_location) else "OPS_STORE_MISSING"
    assert error.value.reason_code == expected
    with pytest.raises(OpsStoreError):  # still nothing there
        OpsStore(ops_location)
    created = OpsStore.initialize(ops_location)
    again = OpsStore.initialize(ops_location)
    assert created.created and not again.created and again.store_id == created.store_id


def test_an_empty_file_is_an_error_not_a_new_store(tmp_path):
    path = tmp_path / "ops.sqlite"
    path.touch()
    with pytest.raises(OpsStoreError) as error:
        OpsStore(path)
    assert error.value.reason_code == "OPS_STORE_EMPTY"
    assert path.stat().st_size == 0  # left as it was


def test_an_expected_store_id_that_differs_is_refused(ops_store, monkeypatch):
    assert OpsStore(ops_store.location, expect_store_id=ops_store.store_id).store_id
    monkeypatch.setenv("VPP_OPS_STORE_ID", "another-store")
    with pytest.raises(OpsStoreError) as error:
        OpsStore(ops_store.location)
    assert error.value.reason_code == "OPS_STORE_REPLACED"


def test_an_unknown_url_scheme_is_refused():
    with pytest.raises(OpsStoreError) as error:
        OpsStore("mysql://somewhere/ops")
    assert error.value.reason_code == "OPS_STORE_BAD_LOCATION"
