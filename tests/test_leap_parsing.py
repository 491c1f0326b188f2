"""Pure parts of the Leap client: error envelopes, Retry-After, windows, timestamps."""

from datetime import UTC, datetime, timedelta

import pytest

from vpp_pipeline.leap import (
    LeapApiError,
    Meter,
    MeterDispatch,
    Nomination,
    dispatch_windows,
    format_utc,
    parse_error_envelope,
    parse_retry_after,
)


def test_dispatch_envelope():
    env = parse_error_envelope(
        b'{"code": "BAD_REQUEST", "message": "end_date too far", "error_code": "DISPATCH_INVALID_INPUT"}'
    )
    assert (env.style, env.code, env.message, env.error_code) == (
        "dispatch",
        "BAD_REQUEST",
        "end_date too far",
        "DISPATCH_INVALID_INPUT",
    )
    assert "DISPATCH_INVALID_INPUT" in env.summary()


def test_problem_envelope_with_details_object():
    env = parse_error_envelope(
        '{"title": "Meter id is not a UUID", "status": 400, "details": {"meter_id": "abc"}}'
    )
    assert env.style == "problem"
    assert env.code == "Meter id is not a UUID"
    assert env.details == {"meter_id": "abc"}
    assert "abc" in env.summary()


def test_problem_envelope_with_details_list():
    env = parse_error_envelope(
        '{"title": "Unsupported Media Type", "status": 415, "details": '
        '[{"message": "Invalid value in the \'Accept\' header.", "description": "Supported types are application/json and text/csv"}]}'
    )
    assert env.style == "problem-list"
    assert "Supported types" in env.message


def test_webhooks_envelope_and_plain_text():
    env = parse_error_envelope('{"error": "NOT_FOUND", "message": "webhook not found"}')
    assert (env.style, env.code, env.message) == ("webhooks", "NOT_FOUND", "webhook not found")
    text = parse_error_envelope(b'"An error happened whilst processing your request"')
    assert text.style == "text" and text.message.startswith("An error happened")
    assert parse_error_envelope(b"<html>bad gateway</html>").style == "text"
    assert parse_error_envelope(b"").style == "empty"


def test_api_error_names_endpoint_status_and_envelope():
    err = LeapApiError(
        endpoint="POST /v2/meters/search",
        status=403,
        envelope=parse_error_envelope('{"title": "Forbidden", "status": 403, "details": {}}'),
    )
    assert str(err).startswith("POST /v2/meters/search failed with HTTP 403: Forbidden")
    # an auth failure names the variable to fix
    assert err.reason_code == "LEAP_AUTH_REJECTED" and "check LEAP_API_KEY" in str(err)
    server_error = LeapApiError("POST /v2/meters/search", 500, parse_error_envelope(b""))
    assert server_error.reason_code is None and "LEAP_API_KEY" not in str(server_error)


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == pytest.approx(5.0)
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0


def test_dispatch_windows_split_at_31_days():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    windows = dispatch_windows(start, start + timedelta(days=40))
    assert windows == [
        (start, start + timedelta(days=31)),
        (start + timedelta(days=31), start + timedelta(days=40)),
    ]
    assert dispatch_windows(start, start + timedelta(days=31)) == [
        (start, start + timedelta(days=31))
    ]
    with pytest.raises(ValueError, match="not after start"):
        dispatch_windows(start, start)


def test_format_utc_is_leap_request_style():
    assert (
        format_utc(datetime(2023, 2, 1, 8, 0, 0, 123456, tzinfo=UTC)) == "2023-02-01T08:00:00.123Z"
    )


@pytest.mark.parametrize(
    "stamp",
    [
        "2023-07-21T00:00:00.000Z",
        "2023-07-21T00:00:00.000+00:00",
        "2023-07-21 00:00:00+00:00",
        "2023-07-20T17:00:00-07:00",
    ],
)
def test_both_leap_timestamp_styles_parse_to_utc(stamp):
    n = Nomination.model_validate(
        {
            "meter_id": "m",
            "program_identifier": "CCA",
            "source": "LEAP",
            "nomination_kw": 1.5,
            "start_time": stamp,
        }
    )
    assert n.start_time == datetime(2023, 7, 21, tzinfo=UTC)
    assert n.start_time.utcoffset() == timedelta(0)


def test_naive_timestamp_is_rejected_not_guessed():
    with pytest.raises(ValueError):
        Nomination.model_validate(
            {
                "meter_id": "m",
                "program_identifier": "CCA",
                "source": "LEAP",
                "nomination_kw": 1,
                "start_time": "2023-07-21T00:00:00",
            }
        )


def test_unknown_fields_are_accepted_and_kept():
    meter = Meter.model_validate(
        {
            "meter_id": "m1",
            "audit": {"created_at": "2024-01-01T00:00:00Z", "brand_new": 1},
            "future_field": {"x": 1},
        }
    )
    assert meter.model_dump()["future_field"] == {"x": 1}
    dispatch = MeterDispatch.model_validate(
        {
            "meter_id": "m1",
            "timeslots": [
                {
                    "meter_event_id": "e1",
                    "start_time": "2023-07-21 00:00:00+00:00",
                    "end_time": "2023-07-21 01:00:00+00:00",
                    "energy_kw": None,
                    "cancelled": False,
                    "programs": ["ELRP"],
                    "priority": 3,
                    "is_voluntary": True,
                    "performance_compensation_cap": "grid-exports-allowed",
                    "dispatch_event_types": ["standard"],
                    "some_new_flag": True,
                }
            ],
        }
    )
    assert dispatch.timeslots[0].energy_kw is None
