"""The SQLite ops store: durability pragmas, multi-process writers, transactions."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime

import pytest

from vpp_pipeline.ops import OpsStore, connect


def _append_rows(path: str, worker: int, n: int) -> None:
    store = OpsStore(path)
    for i in range(n):
        with store.session() as s:
            s.insert_inbox(
                received_at=datetime.now(UTC),
                source="webhook",
                level="meter",
                body=f'{{"w": {worker}, "i": {i}}}'.encode(),
                headers={},
            )


def test_wal_and_full_sync(tmp_path):
    OpsStore(tmp_path / "ops.sqlite")
    conn = connect(tmp_path / "ops.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()


def test_concurrent_processes_append_without_loss(tmp_path):
    path = str(tmp_path / "ops.sqlite")
    OpsStore(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_rows, args=(path, w, 100)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    rows = OpsStore(path).inbox()
    assert len(rows) == 300
    assert len({r.body for r in rows}) == 300
    assert [r.inbox_id for r in rows] == sorted(r.inbox_id for r in rows)


def test_session_rolls_back_on_error(tmp_path):
    store = OpsStore(tmp_path / "ops.sqlite")
    with pytest.raises(RuntimeError), store.session() as s:
        s.insert_inbox(
            received_at=datetime.now(UTC), source="webhook", level="meter", body=b"{}", headers={}
        )
        raise RuntimeError("boom")
    assert store.inbox() == []
    assert store.max_inbox_id() == 0


def test_pending_ids_skip_processed_rows(tmp_path):
    store = OpsStore(tmp_path / "ops.sqlite")
    with store.session() as s:
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
    assert store.pending_inbox_ids(0) == ids[2:]
    assert store.pending_inbox_ids(ids[2]) == ids[3:]


def test_sites_and_nominations(tmp_path):
    store = OpsStore(tmp_path / "ops.sqlite")
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
