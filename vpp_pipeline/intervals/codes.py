"""Reject codes for interval rows and files.

Leap's interval-upload codes (digest section 13) are used where Leap has one; the few
cases Leap's list does not name get project codes in the same style (marked ``project``).
"""

from __future__ import annotations

from typing import NamedTuple


class RejectCode(NamedTuple):
    code: str
    column: str
    meaning: str
    origin: str = "leap"


REJECT_CODES: dict[str, RejectCode] = {
    c.code: c
    for c in [
        RejectCode("LIN_0001", "", "line has fewer fields than the header"),
        RejectCode("LIN_0002", "", "line has more fields than the header", "project"),
        RejectCode("MTR_0001", "meter_id", "meter_id missing"),
        RejectCode("MTR_0002", "meter_id", "meter_id is not a UUID"),
        RejectCode("MTR_0003", "meter_id", "meter unknown to this portfolio"),
        RejectCode("STM_0001", "interval_start_time_utc", "start time missing"),
        RejectCode("STM_0002", "interval_start_time_utc", "start time unparsable"),
        RejectCode(
            "STM_0003",
            "interval_start_time_utc",
            "start not on a 15-minute boundary, or in the future",
        ),
        RejectCode("ETM_0001", "interval_end_time_utc", "end time missing"),
        RejectCode("ETM_0002", "interval_end_time_utc", "end time unparsable"),
        RejectCode(
            "ETM_0003", "interval_end_time_utc", "end not on a 15-minute boundary, or in the future"
        ),
        RejectCode("DTR_0003", "interval_end_time_utc", "interval is not 15 minutes long"),
        RejectCode("NET_0002", "energy_net_kwh", "net energy unparsable"),
        RejectCode("CON_0002", "energy_consumed_kwh", "consumed energy unparsable"),
        RejectCode("CON_0003", "energy_consumed_kwh", "consumed energy negative"),
        RejectCode("GEN_0002", "energy_generated_kwh", "generated energy unparsable"),
        RejectCode("GEN_0003", "energy_generated_kwh", "generated energy negative"),
        RejectCode(
            "NRG_0001", "energy_net_kwh", "no valid energy set (net, or consumed + generated)"
        ),
        RejectCode("NRG_0003", "energy_net_kwh", "net differs from consumed - generated"),
        RejectCode("REG_0002", "region", "region unparsable (not a two-letter code)"),
        RejectCode("REG_0003", "region", "region is not a US state"),
        RejectCode("FNL_0002", "final", "final is not a boolean"),
        RejectCode(
            "DUP_0001",
            "interval_start_time_utc",
            "same meter and interval again later in the file",
            "project",
        ),
        RejectCode("FIL_0001", "", "file is not a CSV file", "project"),
        RejectCode("FIL_0002", "", "file is empty or has no data rows", "project"),
        RejectCode("FIL_0003", "", "header lacks a required column", "project"),
        RejectCode(
            "FIL_0004", "", "file could not be split into lines (the reader's error)", "project"
        ),
        RejectCode("FIL_0005", "", "symbolic link: not followed, left in place", "project"),
        RejectCode(
            "FIL_0006", "", "not a regular file (directory, pipe...): left in place", "project"
        ),
        RejectCode(
            "ENC_0001", "", "file is not UTF-8 text (message: byte offset and line)", "project"
        ),
    ]
}

#: Codes that reject a whole file (or landing entry) rather than one row.
FILE_CODES = frozenset(c for c in REJECT_CODES if c.startswith(("FIL_", "ENC_")))

#: Leap's interval upload CSV columns, in Leap's order.
CSV_COLUMNS = (
    "meter_id",
    "interval_start_time_utc",
    "interval_end_time_utc",
    "energy_net_kwh",
    "energy_consumed_kwh",
    "energy_generated_kwh",
    "final",
    "region",
)
#: Columns a file must have in its header to be read at all (energy sets are per row).
REQUIRED_CSV_COLUMNS = ("meter_id", "interval_start_time_utc", "interval_end_time_utc")

#: Two-letter codes accepted as `region` (Leap: "a US state"; DC included).
US_STATES = (
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
)
