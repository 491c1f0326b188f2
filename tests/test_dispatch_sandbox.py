"""The sandbox's dispatch webhooks (registration, integration tests, Leap-like retries), the CLI and the
demo entry point."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from vpp_pipeline.cli import main
from vpp_pipeline.dispatch.demo import run_dispatch_demo
from vpp_pipeline.dispatch.examples import EXAMPLES, examples_for, integration_test_payload
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.receiver import ReceiverServer, ReceiverSettings
from vpp_pipeline.sandbox import SandboxServer


@pytest.fixture
def leap():
    with SandboxServer(seed=3, n_meters=12, history_days=2) as server:
        yield server


def auth(server) -> dict:
    return {"Authorization": f"Bearer {server.api_key}"}


def test_webhook_registration_round_trip(leap):
    url = f"{leap.base_url}/v2/dispatch/group/webhook"
    assert httpx.get(url, headers=auth(leap)).status_code == 404
    assert httpx.put(url, json={"url": "x"}, headers=auth(leap)).status_code == 400
    assert httpx.put(url, json={"url": "http://h/x"}).status_code == 401
    body = {"url": "http://127.0.0.1:9/hook", "headers": [{"name": "X-Key", "value": "v"}]}
    assert httpx.put(url, json=body, headers=auth(leap)).json() == body
    assert httpx.get(url, headers=auth(leap)).json() == body
    assert httpx.delete(url, headers=auth(leap)).status_code == 204
    assert httpx.get(url, headers=auth(leap)).status_code == 404


def test_integration_test_delivers_with_lower_cased_headers_and_retries(leap, tmp_path):
    config = ReceiverSettings(api_key="right", ops_db_path=str(tmp_path / "ops.sqlite"))
    OpsStore.initialize(config.ops_db_path)
    with ReceiverServer(config) as receiver:
        hook = f"{leap.base_url}/v2/dispatch/meter/webhook"
        httpx.put(hook, json={"url": receiver.url, "headers": [{"name": "X-API-KEY", "value": "wrong"}]},
                  headers=auth(leap))  # fmt: skip
        httpx.put(f"{leap.base_url}/_sandbox/dispatch/webhook_settings",
                  json={"retry_interval_s": 0.3, "max_retries": 3})  # fmt: skip
        meter = next(iter(leap.portfolio.meters))
        payload = integration_test_payload(examples_for("ELRP")[0], meter_ids=[meter])
        response = httpx.post(f"{hook}/integration_test", json=payload, headers=auth(leap))
        assert response.status_code == 200
        result = response.json()
        assert result["http_status"] == 401 and result["sent_time"] and result["received_time"]
        assert json.loads(result["body"])["reason_code"] == "AUTH_INVALID"
        assert "content-type" in result["headers"]
        # fix the key: Leap's retry (every retry_interval_s) now gets through
        httpx.put(hook, json={"url": receiver.url, "headers": [{"name": "X-API-KEY", "value": "right"}]},
                  headers=auth(leap))  # fmt: skip
        deadline = time.monotonic() + 5
        while not OpsStore(config.ops_db_path).inbox() and time.monotonic() < deadline:
            time.sleep(0.05)
        (row,) = OpsStore(config.ops_db_path).inbox()
        note = json.loads(row.body)
        assert note["integration_test_notification"] is True
        assert note["meter_dispatches"] == payload["meter_dispatches"]
        deliveries = httpx.get(f"{leap.base_url}/_sandbox/dispatch/deliveries").json()["deliveries"]
        assert [d["ok"] for d in deliveries][:2] == [False, True]


def test_examples_cover_every_program():
    assert len(EXAMPLES) == 12
    assert [e.name for e in examples_for("CCA")][:2] == [
        "CAISO - CCA Capacity Test",
        "CAISO - CCA Market Award",
    ]
    payload = integration_test_payload(examples_for("CCA")[0], level="group", meter_ids=["a", "b"])
    (group,) = payload["group_dispatches"]
    assert [t["energy_kw"] for t in group["timeslots"]] == [100, 100]
    ids = {t["market_group_event_id"] for t in group["timeslots"]}
    assert len(ids) == 2  # fresh ids per timeslot


def test_cli_send_test_dispatch_and_status(leap, tmp_path, monkeypatch, capsys):
    db = tmp_path / "ops.sqlite"
    monkeypatch.setenv("LEAP_API_BASE_URL", leap.base_url)
    monkeypatch.setenv("LEAP_API_KEY", leap.api_key)
    monkeypatch.setenv("VPP_OPS_DB_PATH", str(db))
    monkeypatch.setenv("VPP_WEBHOOK_API_KEY", "cli-key")
    assert main(["ops-init"]) == 0
    assert f"ops store {db}: created; backend sqlite" in capsys.readouterr().out
    with ReceiverServer(ReceiverSettings.from_env()) as receiver:
        code = main(["send-test-dispatch", "--program", "CCA", "--register-url", receiver.url])
        assert code == 0
        out = capsys.readouterr().out
        assert "CAISO - CCA Capacity Test" in out and '"http_status": 200' in out
    assert len(OpsStore(db).inbox()) == 1
    assert main(["dispatch-status"]) == 0
    assert "1 inbox rows" in capsys.readouterr().out


def test_run_dispatch_demo(leap, instance):
    result = run_dispatch_demo(leap.base_url, leap.api_key, instance=instance)
    assert result["ok"] is True
    assert result["site_requests"] == 2 and result["dry_run"] is True
    assert 0 < result["latency_s"] < 30
