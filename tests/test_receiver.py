"""The webhook receiver over real HTTP: auth, Standard Webhooks signatures, size limits, bad bodies."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from conftest import receiver_store_settings
from standardwebhooks.webhooks import Webhook

from vpp_pipeline.dispatch.examples import meter_notification
from vpp_pipeline.ops import OpsStore
from vpp_pipeline.receiver import MAX_BODY_BYTES, ReceiverServer, ReceiverSettings

KEY = "receiver-test-key"
# The Standard Webhooks specification's test vector (github.com/standard-webhooks/standard-webhooks)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


#: Start of the one timeslot of the test notifications (two days ahead: inside the receiver's time window).
SLOT_START = (datetime.now(UTC) + timedelta(days=2)).replace(
    hour=0, minute=0, second=0, microsecond=0
)


def notification() -> dict:
    return meter_notification(str(uuid.uuid4()), str(uuid.uuid4()), SLOT_START)


@pytest.fixture
def receiver(ops_location):
    """The receiver on each ops-store backend."""
    OpsStore.initialize(ops_location)
    config = ReceiverSettings(api_key=KEY, **receiver_store_settings(ops_location))
    with ReceiverServer(config) as server:
        yield server


@pytest.fixture
def signed_receiver(tmp_path):
    config = ReceiverSettings(
        api_key=KEY, signing_secret=VECTOR_SECRET, ops_db_path=str(tmp_path / "ops.sqlite")
    )
    OpsStore.initialize(config.ops_store)
    with ReceiverServer(config) as server:
        yield server


def post(server, body: bytes, **headers) -> httpx.Response:
    return httpx.post(server.url, content=body, headers=headers, timeout=10)


def inbox(server) -> list:
    return OpsStore(server.config.ops_store).inbox()


def test_healthz(receiver):
    response = httpx.get(f"{receiver.base_url}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_accepts_and_stores_raw_body_with_non_secret_headers(receiver):
    body = json.dumps(notification(), indent=1).encode()
    before = datetime.now(UTC)
    response = post(receiver, body, **{"X-Api-Key": KEY, "X-Request-Id": "abc"})
    assert response.status_code == 200
    reply = response.json()
    assert reply["status"] == "accepted" and reply["events"] == 1
    (row,) = inbox(receiver)
    assert row.inbox_id == reply["inbox_id"]
    assert row.body == body  # raw bytes, not re-serialized
    assert row.level == "meter" and row.source == "webhook"
    assert row.headers["x-request-id"] == "abc"
    assert "x-api-key" not in row.headers  # the secret is never stored
    assert before <= datetime.fromisoformat(row.received_at) <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "AUTH_MISSING"),
        ({"x-api-key": "wrong"}, "AUTH_INVALID"),
        ({"x-other": KEY}, "AUTH_MISSING"),
    ],
)
def test_wrong_or_missing_auth_header(receiver, headers, reason):
    response = post(receiver, json.dumps(notification()).encode(), **headers)
    assert response.status_code == 401
    assert response.json()["reason_code"] == reason
    assert inbox(receiver) == []


def test_configured_header_name(tmp_path):
    config = ReceiverSettings(
        api_key=KEY, header_name="X-Leap-Token", ops_db_path=str(tmp_path / "ops.sqlite")
    )
    OpsStore.initialize(config.ops_store)
    with ReceiverServer(config) as server:
        body = json.dumps(notification()).encode()
        assert post(server, body, **{"x-leap-token": KEY}).status_code == 200
        assert post(server, body, **{"x-api-key": KEY}).status_code == 401


def test_body_over_one_mib_is_413(receiver):
    big = b'{"meter_dispatches": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = post(receiver, big, **{"x-api-key": KEY})
    assert response.status_code == 413

    def chunks():  # no Content-Length: the receiver counts while streaming
        for _ in range(40):
            yield b" " * 65536

    response = httpx.post(receiver.url, content=chunks(), headers={"x-api-key": KEY}, timeout=10)
    assert response.status_code == 413
    assert inbox(receiver) == []


def test_not_json_is_400(receiver):
    response = post(receiver, b"<xml/>", **{"x-api-key": KEY})
    assert response.status_code == 400 and response.json()["reason_code"] == "BODY_NOT_JSON"


@pytest.mark.parametrize(
    "payload",
    [
        {"hello": "world"},
        [1, 2, 3],
        {"meter_dispatches": []},
        {"meter_dispatches": [{"meter_id": "m", "timeslots": [{"meter_event_id": "e"}]}]},
        {"meter_dispatches": [], "group_dispatches": []},
    ],
)
def test_json_that_is_not_a_notification_is_422_and_dead_lettered(receiver, payload):
    body = json.dumps(payload).encode()
    response = post(receiver, body, **{"x-api-key": KEY})
    assert response.status_code == 422
    assert response.json()["reason_code"]
    (dead,) = OpsStore(receiver.config.ops_store).dead_letters()
    assert bytes(dead["body"]) == body and dead["reason_code"] == response.json()["reason_code"]
    assert inbox(receiver) == []


def test_group_notification_is_accepted(receiver):
    body = {
        "integration_test_notification": True,
        "group_dispatches": [
            {
                "market_group_id": str(uuid.uuid4()),
                "meter_ids": [str(uuid.uuid4()), str(uuid.uuid4())],
                "timeslots": [
                    {
                        **notification()["meter_dispatches"][0]["timeslots"][0],
                        "market_group_event_id": str(uuid.uuid4()),
                    }
                ],
            }
        ],
    }
    del body["group_dispatches"][0]["timeslots"][0]["meter_event_id"]
    response = post(receiver, json.dumps(body).encode(), **{"x-api-key": KEY})
    assert response.status_code == 200
    assert inbox(receiver)[0].level == "group"


# --- Standard Webhooks signatures ------------------------------------------------------------------------


def sign(body: bytes, *, msg_id: str = "msg_1", at: datetime | None = None, secret=VECTOR_SECRET):
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def test_official_test_vector():
    at = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=UTC)
    assert Webhook(VECTOR_SECRET).sign(VECTOR_ID, at, VECTOR_PAYLOAD) == VECTOR_SIGNATURE


def test_official_vector_through_the_receiver(signed_receiver):
    # the vector's secret, id, body and signature scheme, at a timestamp inside the tolerance
    body = VECTOR_PAYLOAD.encode()
    headers = sign(body, msg_id=VECTOR_ID)
    response = post(signed_receiver, body, **{"x-api-key": KEY}, **headers)
    # the signature passes; the body is not a Leap notification
    assert response.status_code == 422
    # and the vector's own (old) timestamp is refused as stale
    stale = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    response = post(signed_receiver, body, **{"x-api-key": KEY}, **stale)
    assert response.status_code == 401
    assert response.json()["reason_code"] == "SIGNATURE_TIMESTAMP_OUT_OF_TOLERANCE"


def test_valid_signature_is_accepted_and_rotation_works(signed_receiver):
    body = json.dumps(notification()).encode()
    assert post(signed_receiver, body, **{"x-api-key": KEY}, **sign(body)).status_code == 200
    other = "whsec_" + base64.b64encode(b"another-secret-key-32-bytes-long").decode()
    headers = sign(body, secret=other)
    good = sign(body)["webhook-signature"]
    headers["webhook-signature"] = f"{headers['webhook-signature']} {good}"
    assert post(signed_receiver, body, **{"x-api-key": KEY}, **headers).status_code == 200
    assert len(inbox(signed_receiver)) == 2


def test_tampered_body_is_401(signed_receiver):
    body = json.dumps(notification()).encode()
    headers = sign(body)
    tampered = body.replace(b'"energy_kw": 8', b'"energy_kw": 9')
    assert tampered != body
    response = post(signed_receiver, tampered, **{"x-api-key": KEY}, **headers)
    assert response.status_code == 401 and response.json()["reason_code"] == "SIGNATURE_INVALID"


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_stale_and_future_timestamps_are_401(signed_receiver, offset):
    body = json.dumps(notification()).encode()
    headers = sign(body, at=datetime.now(UTC) + offset)
    response = post(signed_receiver, body, **{"x-api-key": KEY}, **headers)
    assert response.status_code == 401
    assert response.json()["reason_code"] == "SIGNATURE_TIMESTAMP_OUT_OF_TOLERANCE"


def test_timestamp_within_tolerance_is_accepted(signed_receiver):
    body = json.dumps(notification()).encode()
    headers = sign(body, at=datetime.now(UTC) - timedelta(minutes=4))
    assert post(signed_receiver, body, **{"x-api-key": KEY}, **headers).status_code == 200


def test_stripped_webhook_id_is_400(signed_receiver):
    body = json.dumps(notification()).encode()
    headers = sign(body)
    del headers["webhook-id"]
    response = post(signed_receiver, body, **{"x-api-key": KEY}, **headers)
    assert response.status_code == 400
    assert response.json()["reason_code"] == "SIGNATURE_HEADERS_MISSING"


@pytest.mark.parametrize(
    "signature", ["garbage", "v1,@@@not-base64@@@", "v1", ",", "v1,a,b", "v1,YQ", "v1,YWJj v1"]
)
def test_malformed_signature_header_is_400_not_500(signed_receiver, signature):
    body = json.dumps(notification()).encode()
    headers = {**sign(body), "webhook-signature": signature}
    response = post(signed_receiver, body, **{"x-api-key": KEY}, **headers)
    assert response.status_code == 400
    assert response.json()["reason_code"] == "SIGNATURE_HEADERS_MALFORMED"


def test_malformed_timestamp_is_400(signed_receiver):
    body = json.dumps(notification()).encode()
    headers = {**sign(body), "webhook-timestamp": "yesterday"}
    response = post(signed_receiver, body, **{"x-api-key": KEY}, **headers)
    assert response.status_code == 400


def test_signature_checked_after_auth(signed_receiver):
    body = json.dumps(notification()).encode()
    assert post(signed_receiver, body, **sign(body)).status_code == 401
