"""One test dispatch end to end, for ``vpp demo``: Leap (sandbox) -> receiver -> ops store -> sensor ->
dispatch_job (real Dagster) -> sandbox site controller, with the measured latency."""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import httpx

from vpp_pipeline.dispatch.examples import examples_for, integration_test_payload
from vpp_pipeline.dispatch.resources import OpsStoreResource, SiteControllerResource
from vpp_pipeline.leap import LeapClient
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.receiver import ReceiverServer, ReceiverSettings
from vpp_pipeline.resources import LeapResource
from vpp_pipeline.sandbox.site_controller import SiteControllerServer


def register_webhook(
    base_url: str, api_key: str, level: str, url: str, header_name: str, header_value: str
) -> dict:
    """``PUT /v2/dispatch/{level}/webhook`` (Leap or the sandbox)."""
    response = httpx.put(
        f"{base_url.rstrip('/')}/v2/dispatch/{level}/webhook",
        json={"url": url, "headers": [{"name": header_name, "value": header_value}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def send_integration_test(base_url: str, api_key: str, level: str, payload: dict) -> dict:
    """``POST /v2/dispatch/{level}/webhook/integration_test``; returns WebhookIntegrationTestResponse."""
    response = httpx.post(
        f"{base_url.rstrip('/')}/v2/dispatch/{level}/webhook/integration_test",
        json=payload,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def enrolled_meter(base_url: str, api_key: str, program: str) -> str | None:
    """A meter ACTIVE in ``program`` according to Leap's enrollment search (None if there is none)."""
    with LeapClient(base_url, api_key) as client:
        for record in client.search_enrollments():
            for entry in record.program_enrollment:
                if entry.program_identifier == program and entry.enrollment_status == "ACTIVE":
                    return record.meter_id
    return None


QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_dispatch_demo(
    base_url: str,
    api_key: str,
    *,
    program: str = "CCA",
    meter_id: str | None = None,
    instance: dg.DagsterInstance | None = None,
    ops_db_path: str | Path | None = None,
) -> dict:
    """Fire one integration-test dispatch of ``program`` through the whole operational path.

    Starts a receiver and a sandbox site controller on free ports, registers the receiver as the meter
    webhook at ``base_url`` (the sandbox), triggers Leap's integration test, evaluates
    ``dispatch_inbox_sensor`` and executes the requested ``dispatch_job`` run in process on ``instance``
    (a temporary one when None). Returns ``{"ok", "latency_s" (webhook receipt -> last site command),
    "trigger_to_site_s", "commands", "site_requests", "summary", "run_id", "ops_db_path"}``.
    """
    from assets.dispatch import dispatch_inbox_sensor, dispatch_job

    example = examples_for(program)[0]
    with ExitStack() as stack:
        if ops_db_path is None:
            ops_db_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "ops.sqlite"
        store = OpsStore.initialize(ops_db_path)  # the demo owns its store: made here if new
        if instance is None:
            instance = stack.enter_context(dg.instance_for_test())
        key = "demo-webhook-key"
        receiver = stack.enter_context(
            ReceiverServer(ReceiverSettings(api_key=key, ops_db_path=str(ops_db_path)))
        )
        site = stack.enter_context(SiteControllerServer())
        register_webhook(base_url, api_key, "meter", receiver.url, "x-api-key", key)
        meter_id = meter_id or enrolled_meter(base_url, api_key, example.programs[0])
        if meter_id is None:
            raise RuntimeError(f"no meter is ACTIVE in {example.programs[0]}")
        resources = {
            "ops_store": OpsStoreResource(path=str(ops_db_path)),
            "site_controller": SiteControllerResource(base_url=site.base_url, token=site.token),
            "leap": LeapResource(base_url=base_url, api_key=api_key),
        }
        started = time.time()
        test_response = send_integration_test(
            base_url, api_key, "meter", integration_test_payload(example, meter_ids=[meter_id])
        )
        context = dg.build_sensor_context(
            instance=instance, resources={"ops_store": resources["ops_store"]}
        )
        result = dispatch_inbox_sensor(context)
        requests = getattr(result, "run_requests", None) or []
        if not requests:
            return {"ok": False, "reason": "the sensor requested no run", "test": test_response}
        run = dispatch_job.execute_in_process(
            # Only errors on the console: the demo prints its own summary.
            run_config={**requests[0].run_config, **QUIET_LOGS},
            resources=resources,
            instance=instance,
            tags={"dagster/run_key": requests[0].run_key},
        )
        summary = run.output_for_node("process_dispatch_inbox") if run.success else None
        inbox = store.inbox()
        received_unix = (
            _unix(inbox[-1].received_at) if inbox else started
        )  # the receiver's clock, same host
        site_requests = site.requests
        last = max((r["received_unix"] for r in site_requests), default=None)
        return {
            "ok": bool(run.success and site_requests),
            "program": example.name,
            "meter_id": meter_id,
            "latency_s": None if last is None else round(last - received_unix, 3),
            "trigger_to_site_s": None if last is None else round(last - started, 3),
            "commands": len(store.actions()),
            "site_requests": len(site_requests),
            "dry_run": all(r["json"] and r["json"]["dry_run"] for r in site_requests),
            "summary": summary,
            "run_id": run.run_id,
            "webhook_http_status": test_response.get("http_status"),
            "ops_db_path": str(ops_db_path),
        }


def _unix(iso_text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso_text).timestamp()
