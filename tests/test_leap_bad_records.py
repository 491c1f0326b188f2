"""One malformed record in a Leap search page: the client keeps the page's good records and reports the bad
one, and the dispatch of the good meters proceeds (real sandbox over HTTP, the real sensor and
``dispatch_job``, the recording site controller). Issue 11, "What was measured" item 4."""

from __future__ import annotations

import json
import logging

import dagster as dg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from test_dispatch_flow import Stack, meter_note, plain_meters, puts, slot

from vpp_pipeline.http_server import BackgroundServer
from vpp_pipeline.leap import LeapClient, RejectedRecord
from vpp_pipeline.sandbox.site_controller import SiteControllerServer


class DamagingLeap(BackgroundServer):
    """Leap as the sandbox answers it, except that the meter records named in ``broken`` lose their
    required ``audit`` field on the way (a real HTTP proxy in front of the sandbox)."""

    server_name = "damaging-leap"

    def __init__(self, sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.api_key = sandbox.api_key
        self.portfolio = sandbox.portfolio
        self.broken: set[str] = set()

    def build_app(self):
        async def forward(request: Request) -> Response:
            async with httpx.AsyncClient(base_url=self.sandbox.base_url, timeout=30) as client:
                upstream = await client.request(
                    request.method,
                    request.url.path,
                    content=await request.body(),
                    headers={k: v for k, v in request.headers.items() if k != "host"},
                )
            body = upstream.content
            if request.url.path == "/v2/meters/search" and upstream.status_code == 200:
                data = json.loads(body)
                for meter in data["meters"]:
                    if meter["meter_id"] in self.broken:
                        del meter["audit"]
                body = json.dumps(data).encode()
            return Response(body, upstream.status_code, media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST", "PUT"])])


@pytest.fixture
def leap(private_sandbox):
    with DamagingLeap(private_sandbox) as server:
        yield server


def test_one_record_without_a_required_field_does_not_fail_the_page(leap, caplog):
    meters = list(leap.portfolio.meters)[:5]
    broken = meters[2]
    leap.broken.add(broken)
    with (
        LeapClient(leap.base_url, leap.api_key) as client,
        caplog.at_level(logging.WARNING),
    ):
        found = client.search_meters(meter_ids=meters)
        assert sorted(m.meter_id for m in found) == sorted(set(meters) - {broken})
        (rejected,) = client.rejected_records
    assert isinstance(rejected, RejectedRecord)
    assert rejected.endpoint == "POST /v2/meters/search" and rejected.page == 1
    assert rejected.record_id == broken and rejected.problem.startswith("audit: Field required")
    assert broken in caplog.text and "left out" in caplog.text


def test_the_good_records_of_every_page_are_kept(leap):
    meters = list(leap.portfolio.meters)[:9]
    leap.broken.update(meters[1::3])
    with LeapClient(leap.base_url, leap.api_key) as client:
        found = client.search_meters(meter_ids=meters, page_size=2)  # five pages
        assert len(found) == 6
        assert sorted(r.record_id for r in client.rejected_records) == sorted(meters[1::3])
        assert {r.page for r in client.rejected_records} == {1, 3, 4}


@pytest.fixture
def flow_stack(tmp_path, leap):
    with (
        dg.instance_for_test() as instance,
        SiteControllerServer(token="site-token") as site,
    ):
        stack = Stack(tmp_path, leap, site, instance)
        with stack.receiver:
            yield stack


def test_dispatch_of_good_meters_proceeds_past_a_malformed_meter_record(flow_stack, leap):
    good, broken = plain_meters(leap.portfolio, 2)
    leap.broken.add(broken)
    good_event, broken_event = slot(energy_kw=6.0), slot(energy_kw=7.0)
    summary = flow_stack.send_and_run(meter_note((good, [good_event]), (broken, [broken_event])))
    assert summary is not None, "dispatch_job failed"
    (put,) = puts(flow_stack.site, good)
    assert put["schedule_id"] == good_event["meter_event_id"] and put["json"]["target_kw"] == 6.0
    # the meter Leap described badly stays unknown (reported), nothing is sent for it
    assert puts(flow_stack.site, broken) == []
    assert broken in summary["unknown_meter_ids"]
    assert summary["leap_rejected_records"] >= 1  # and the run says Leap sent a record it left out
