"""A missing, emptied or replaced ops store is an error, never a silent fresh one; ``/healthz`` proves a
write; the inbox sensor's cursor belongs to one store. Each case on both backends, through real HTTP
(the receiver, in process and as the ``vpp receiver`` process), the real sensor and dispatch_job runs
and the sandbox site controller.

Measured before (issue 11): truncated to 0 bytes, the store was silently recreated, inbox ids restarted
at 1 and the sensor's cursor skipped the new rows, so an acknowledged delivery was never dispatched; with
its folder deleted while running, the receiver kept answering 200 and /healthz stayed ok.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import psycopg
import pytest
from conftest import receiver_store_settings, split_postgres_location
from test_dispatch_flow import API_KEY, Stack, meter_note, plain_meters, slot

from assets.dispatch import dispatch_inbox_sensor, dispatch_job
from vpp_pipeline.cli import main
from vpp_pipeline.ops import OpsStore, OpsStoreError, connect, is_postgres
from vpp_pipeline.ops.postgres_backend import close_pools
from vpp_pipeline.receiver import ReceiverServer, ReceiverSettings
from vpp_pipeline.receiver.app import create_receiver_app


@pytest.fixture(scope="module")
def instance():
    """One Dagster instance for this module's tests (each test's runs use their own ops store and
    sensor cursor, and nothing here reads the instance's run history): saves ~0.5 s per test."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def location(ops_location, tmp_path):
    """The store in a folder of its own (so the folder can be removed)."""
    if is_postgres(ops_location):
        return ops_location
    return str(tmp_path / "store" / "ops.sqlite")


def _env_for(location: str) -> dict:
    name = "VPP_OPS_DB_URL" if is_postgres(location) else "VPP_OPS_DB_PATH"
    return {name: location}


def _sql(location: str, *statements: str) -> None:
    database, schema = split_postgres_location(location)
    close_pools()  # no pooled connection keeps the old tables open
    with psycopg.connect(database, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.format(schema=f'"{schema}"'))


def empty_store(location: str) -> str:
    """Empty the store as an accident would; returns the reason code opening it must give."""
    if is_postgres(location):
        _sql(location, "DROP SCHEMA {schema} CASCADE", "CREATE SCHEMA {schema}")
        return "OPS_STORE_NOT_INITIALIZED"
    with open(location, "r+b") as f:
        f.truncate(0)
    return "OPS_STORE_EMPTY"


def remove_store(location: str) -> None:
    if is_postgres(location):
        _sql(location, "DROP SCHEMA {schema} CASCADE")
    else:
        shutil.rmtree(Path(location).parent)


def replace_store(location: str) -> OpsStore:
    """Put a different (new) store where the store was."""
    if is_postgres(location):
        _sql(location, "DROP SCHEMA {schema} CASCADE", "CREATE SCHEMA {schema}")
    else:
        os.replace(location, location + ".old")
    return OpsStore.initialize(location)


def tick(stack: Stack) -> list:
    """One sensor evaluation and its runs, like the daemon (Stack.tick, any result type)."""
    return stack.tick()


# --- at start -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_receiver_process(location: str) -> tuple[int, str, int]:
    """Run ``vpp receiver`` on the store at ``location``; (exit code, stderr, port) once it exits."""
    env = {**os.environ, **_env_for(location), "VPP_WEBHOOK_API_KEY": "k"}
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpp_pipeline.cli", "receiver", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, port


def test_vpp_receiver_refuses_to_start_without_its_store(location):
    code, err, port = _start_receiver_process(location)
    assert code == 2, err
    expected = "OPS_STORE_NOT_INITIALIZED" if is_postgres(location) else "OPS_STORE_MISSING"
    assert expected in err
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    with pytest.raises(OpsStoreError):  # nothing was created in its place
        OpsStore(location)


def test_vpp_receiver_refuses_to_start_on_an_emptied_file(tmp_path):
    location = tmp_path / "ops.sqlite"
    location.touch()
    code, err, _ = _start_receiver_process(str(location))
    assert code == 2 and "OPS_STORE_EMPTY" in err
    assert location.stat().st_size == 0


def test_an_emptied_store_stops_the_path_until_a_new_one_is_made_and_then_loses_nothing(
    tmp_path, sandbox, site, instance, location, monkeypatch
):
    stack = Stack(tmp_path, sandbox, site, instance, location)
    first, second = plain_meters(sandbox.portfolio, 2)
    event_a, event_b = slot(), slot()
    with stack.receiver:
        assert stack.post(meter_note((first, [event_a]))).status_code == 200
        assert tick(stack)[0]["delivered"] == 1
    old_cursor = stack.cursor
    assert old_cursor == f"{stack.store.store_id}:1"

    reason = empty_store(location)
    config = ReceiverSettings(api_key=API_KEY, **receiver_store_settings(location))
    # the receiver does not start, the sensor and the job fail: all with the same reason
    with pytest.raises(OpsStoreError) as at_start:
        create_receiver_app(config)
    assert at_start.value.reason_code == reason
    with pytest.raises(OpsStoreError) as in_sensor:
        tick(stack)
    assert in_sensor.value.reason_code == reason
    run = dispatch_job.execute_in_process(
        resources=stack.resources, instance=instance, raise_on_error=False
    )
    assert not run.success
    assert reason in str(run.get_step_failure_events()[0].event_specific_data.error)
    if not is_postgres(location):
        assert Path(location).stat().st_size == 0  # nobody recreated it behind our back

    # the operator makes a new store on purpose
    for name, value in _env_for(location).items():
        monkeypatch.setenv(name, value)
    assert main(["ops-init"]) == 0
    new_store = OpsStore(location)
    assert new_store.store_id != stack.store.store_id
    stack.store = new_store
    with ReceiverServer(config) as receiver:
        stack.receiver = receiver
        response = stack.post(meter_note((second, [event_b])))
        assert response.status_code == 200 and response.json()["inbox_id"] == 1  # ids restart
        # the sensor's cursor is for the old store: it reads the new one from the start
        (summary,) = tick(stack)
    assert summary["new_events"] == 1 and summary["delivered"] == 1
    assert [(r["meter_id"], r["schedule_id"]) for r in site.requests] == [
        (first, event_a["meter_event_id"]),
        (second, event_b["meter_event_id"]),
    ]
    assert stack.cursor == f"{new_store.store_id}:1"


# --- while running ---------------------------------------------------------------------------------------


def _health(receiver) -> httpx.Response:
    return httpx.get(f"{receiver.base_url}/healthz", timeout=30)


@pytest.mark.parametrize("accident", ["removed", "replaced"])
def test_a_store_removed_or_replaced_while_running_is_never_acknowledged(
    tmp_path, sandbox, site, instance, location, accident
):
    stack = Stack(tmp_path, sandbox, site, instance, location)
    meter = plain_meters(sandbox.portfolio, 1)[0]
    with stack.receiver:
        assert stack.post(meter_note((meter, [slot()]))).status_code == 200
        healthy = _health(stack.receiver)
        assert healthy.status_code == 200
        assert healthy.json()["store_id"] == stack.store.store_id
        if accident == "removed":
            remove_store(location)
            expected = "OPS_STORE_MISSING"
        else:
            replace_store(location)
            expected = "OPS_STORE_REPLACED"
        refused = stack.post(meter_note((meter, [slot()])))
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason_code"] == "STORE_UNAVAILABLE"
        assert expected in refused.json()["detail"]
        sick = _health(stack.receiver)
        assert sick.status_code == 503
        assert sick.json()["reason_code"] == expected
    if accident == "replaced":  # the new store got nothing from this receiver
        assert OpsStore(location).inbox() == []


def test_healthz_fails_while_the_store_cannot_take_a_write(tmp_path, location):
    OpsStore.initialize(location)
    config = ReceiverSettings(
        api_key=API_KEY, healthz_timeout_s=1.0, **receiver_store_settings(location)
    )
    with ReceiverServer(config) as receiver:
        assert _health(receiver).status_code == 200
        if is_postgres(location):
            blocker = psycopg.connect(location, autocommit=True)
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE ops_meta IN ACCESS EXCLUSIVE MODE")
        else:
            blocker = connect(location)
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the file's write lock
        try:
            started = time.monotonic()
            blocked = _health(receiver)
            assert blocked.status_code == 503
            assert blocked.json()["reason_code"] == "OPS_STORE_NOT_WRITABLE"
            assert time.monotonic() - started < 10
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        deadline = time.monotonic() + 30
        while _health(receiver).status_code != 200:
            assert time.monotonic() < deadline, "healthz did not recover"
            time.sleep(0.2)


# --- the sensor's cursor ---------------------------------------------------------------------------------


def _backup(location: str, to: Path) -> None:
    if is_postgres(location):
        database, schema = split_postgres_location(location)
        subprocess.run(
            ["pg_dump", f"--dbname={database}", f"--schema={schema}", "-Fc", "-f", str(to)],
            check=True,
        )
    else:
        import sqlite3

        with sqlite3.connect(location) as src, sqlite3.connect(to) as dst:
            src.backup(dst)


def _restore(location: str, backup: Path) -> None:
    if is_postgres(location):
        database, _ = split_postgres_location(location)
        _sql(location, "DROP SCHEMA {schema} CASCADE")
        subprocess.run(["pg_restore", f"--dbname={database}", str(backup)], check=True)
    else:
        shutil.copyfile(backup, location)
        for suffix in ("-wal", "-shm"):
            Path(location + suffix).unlink(missing_ok=True)


def test_a_store_restored_from_an_older_backup_loses_no_new_delivery(
    tmp_path, sandbox, site, instance, location
):
    if is_postgres(location) and not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed")
    stack = Stack(tmp_path, sandbox, site, instance, location)
    meters = plain_meters(sandbox.portfolio, 4)
    backup = tmp_path / "ops.backup"
    with stack.receiver:
        assert stack.post(meter_note((meters[0], [slot()]))).status_code == 200
        tick(stack)
        _backup(location, backup)  # the nightly backup: inbox id 1
        for meter in meters[1:3]:
            assert stack.post(meter_note((meter, [slot()]))).status_code == 200
        tick(stack)
    assert stack.cursor == f"{stack.store.store_id}:3"
    _restore(location, backup)
    restored = OpsStore(location)
    assert restored.store_id == stack.store.store_id and restored.max_inbox_id() == 1
    stack.store = restored
    late = slot()
    config = ReceiverSettings(api_key=API_KEY, **receiver_store_settings(location))
    with ReceiverServer(config) as receiver:
        stack.receiver = receiver
        response = stack.post(meter_note((meters[3], [late])))
        assert response.status_code == 200 and response.json()["inbox_id"] == 2  # below the cursor
        (summary,) = tick(stack)
    assert summary["new_events"] == 1
    assert (meters[3], late["meter_event_id"]) in {
        (r["meter_id"], r["schedule_id"]) for r in site.requests
    }


def test_a_run_requested_for_another_store_fails(tmp_path, sandbox, site, instance, location):
    stack = Stack(tmp_path, sandbox, site, instance, location)
    config = {"after": 0, "up_to": 5, "store_id": "not-this-store"}
    run = dispatch_job.execute_in_process(
        run_config={"ops": {"process_dispatch_inbox": {"config": config}}},
        resources=stack.resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not run.success
    assert "OPS_STORE_REPLACED" in str(run.get_step_failure_events()[0].event_specific_data.error)
    with dg.build_sensor_context(
        instance=instance, resources={"ops_store": stack.resources["ops_store"]}
    ) as context:
        result = dispatch_inbox_sensor(context)
    assert result.cursor == f"{stack.store.store_id}:0" and not result.run_requests


@pytest.mark.postgres
def test_a_lost_database_connection_costs_the_receiver_no_delivery(postgres_location):
    """A database restart or failover drops the receiver's connection: the next delivery reconnects
    and is stored (nothing of it was written before the connection was found dead)."""
    OpsStore.initialize(postgres_location)
    config = ReceiverSettings(api_key=API_KEY, ops_db_url=postgres_location)
    database, _ = split_postgres_location(postgres_location)
    with ReceiverServer(config) as receiver:
        body = meter_note(("m1", [slot()]))
        first = httpx.post(receiver.url, json=body, headers={"x-api-key": API_KEY})
        assert first.status_code == 200
        with psycopg.connect(database, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'vpp-receiver' AND datname = current_database()"
            ).fetchall()
        assert killed == [(True,)]
        second = httpx.post(receiver.url, json=body, headers={"x-api-key": API_KEY})
        assert second.status_code == 200, second.text
        assert _health(receiver).status_code == 200
    assert [r.inbox_id for r in OpsStore(postgres_location).inbox()] == [
        first.json()["inbox_id"],
        second.json()["inbox_id"],
    ]
