"""The performance report as one self-contained HTML file (inline CSS and SVG, no script).

Sections: headline figures; portfolio performance factor by program and market-local month;
the flagged meters (company names, reasons, every evidence column ``underperformers`` has);
per flagged meter its events, a table of all and plots of the most telling ones; baseline
accuracy by meter; the dispatch timeline of recent events (webhook -> site command).
Anchors: ``#meter-<meter_id>`` for a flagged meter's section, ``#event-<meter_event_id>``
for an event's row; the flag table links to both.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from vpp_pipeline.dispatch.examples import leap_event_name
from vpp_pipeline.measurement.config import MeasurementConfig
from vpp_pipeline.report import charts, data


@dataclass(frozen=True)
class ReportOptions:
    """How much the report plots (rendering costs 30-70 ms per event panel)."""

    #: Event plots per flagged meter: the events the flag names first, then the most recent.
    max_event_plots_per_meter: int = 4
    #: Event plots in all: with many flagged meters each gets fewer (but always one).
    max_event_plots: int = 48
    #: Dispatch events on the timeline (the most recently received).
    recent_dispatch_events: int = 20
    #: Hours of load shown before the event start and after its end.
    hours_before: float = 5.0
    hours_after: float = 1.0


@dataclass
class ReportSummary:
    path: Path
    charts: int = 0
    flagged_meters: int = 0
    event_plots: int = 0
    flags_as_of: date | None = None
    portfolio_performance_factor: float | None = None
    scored_events: int = 0
    sections: list[str] = field(default_factory=list)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f3b73;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85;font-size:13px}nav{padding:8px 28px;background:#eef1f7;font-size:14px}
nav a{margin-right:16px}main{padding:8px 28px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:14px 18px;margin:18px 0}
h2{font-size:18px;margin:4px 0 10px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;gap:14px;flex-wrap:wrap}.tile{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 16px;min-width:150px}
.tile b{display:block;font-size:22px}.muted{color:#666;font-size:12.5px}.reason{display:inline-block;background:#fde3c4;border-radius:3px;padding:0 5px;margin:1px;font-size:12px}
figure.chart{margin:8px 0;overflow-x:auto}figure.chart figcaption{font-size:12.5px;color:#555;margin-top:4px}
code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def _local(instant: datetime | None, tz: str | None) -> str:
    if instant is None:
        return "-"
    zone = ZoneInfo(tz) if tz else UTC
    return instant.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")


def _short(meter_id: str) -> str:
    return meter_id[:8]


def _figure(svg: str, name: str, caption: str) -> str:
    return f'<figure class="chart" data-chart="{_e(name)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Builder:
    def __init__(self, conn, config: MeasurementConfig, options: ReportOptions, path: Path):
        self.conn = conn
        self.config = config
        self.options = options
        self.names = data.meter_names(conn)
        self.summary = ReportSummary(path=path)
        self.parts: list[str] = []

    def label(self, meter_id: str) -> str:
        return f"{self.names.get(meter_id, '(unknown meter)')} ({_short(meter_id)})"

    def chart(self, chart, name: str, caption: str) -> str:
        self.summary.charts += 1
        return _figure(charts.render_svg(chart, f"c{self.summary.charts}"), name, caption)

    # -- sections ---------------------------------------------------------------------

    def portfolio(self) -> str:
        frame = data.portfolio_by_program_month(self.conn)
        if frame.is_empty():
            return "<p class='muted'>No scored events yet.</p>"
        total = frame.select(
            pl.col("delivered_kw").sum() / pl.col("committed_kw").sum(),
            pl.col("scored_events").sum(),
        ).row(0)
        self.summary.portfolio_performance_factor = float(total[0])
        self.summary.scored_events = int(total[1])
        rows = [
            [
                _e(r["program"]),
                _e(r["month"]),
                _fmt(r["scored_events"]),
                _fmt(r["committed_kw"], 0),
                _fmt(r["delivered_kw"], 0),
                _fmt(r["performance_factor"]),
            ]
            for r in frame.iter_rows(named=True)
        ]
        return self.chart(
            charts.portfolio_chart(frame),
            "portfolio",
            "Portfolio performance factor = sum of delivered kW / sum of committed kW over "
            "scored events with a commitment, by program and market-local month of the "
            "event start. Dashed line: 1.0.",
        ) + _table(
            ["program", "month", "scored events", "committed kW", "delivered kW", "factor"],
            rows,
            numeric={2, 3, 4, 5},
        )

    def flags(self) -> tuple[str, pl.DataFrame, dict[str, list[str]]]:
        as_of, flags = data.latest_flags(self.conn)
        self.summary.flags_as_of = as_of
        if flags.is_empty():
            return "<p class='muted'>No meter is flagged.</p>", flags, {}
        # INCONCLUSIVE rows (flagged = false) are shown but are not flags
        self.summary.flagged_meters = (
            flags.filter(pl.col("flagged").fill_null(True)).height
            if "flagged" in flags.columns
            else flags.height
        )
        reason_col = data.flag_reason_column(flags)
        evidence_cols = [
            c
            for c in flags.columns
            if c not in data.FLAG_BOOKKEEPING and c not in (reason_col, "company_name")
        ]
        # the reason in words first, the events behind it last
        evidence_cols.sort(key=lambda c: (c != "reason", c == "evidence"))
        referenced: dict[str, list[str]] = {}
        rows = []
        for r in flags.iter_rows(named=True):
            meter = r["meter_id"]
            refs: list[str] = []
            cells = []
            for c in evidence_cols:
                if c == "evidence" and isinstance(r[c], list):
                    refs += data.referenced_event_ids(r[c])
                    cells.append(self.evidence_events(r[c]))
                    continue
                ids = data.referenced_event_ids(r[c]) if c.endswith("event_ids") else []
                refs += ids
                cells.append(self.evidence_cell(r[c], ids))
            referenced[meter] = list(dict.fromkeys(refs))
            reasons = r[reason_col] if reason_col else []
            reasons = [reasons] if isinstance(reasons, str) else list(reasons or [])
            rows.append(
                [
                    f'<a href="#meter-{_e(meter)}">{_e(r.get("company_name") or "(no name)")}</a>'
                    f"<br><code>{_e(meter)}</code>",
                    " ".join(f'<span class="reason">{_e(x)}</span>' for x in reasons),
                    *cells,
                ]
            )
        table = _table(["meter", "reasons", *evidence_cols], rows)
        return (
            f"<p class='muted'>Flags as of {_e(as_of)} (market-local day), "
            f"{self.summary.flagged_meters} flagged meter(s), "
            f"{flags.height - self.summary.flagged_meters} INCONCLUSIVE (not flags; "
            "docs/flags.md). Every column of <code>underperformers</code> is shown; "
            "event ids link to the event's row and plot.</p>" + table,
            flags,
            referenced,
        )

    def evidence_events(self, events: list[dict]) -> str:
        """One line per event behind a flag: its link, date, delivered kW (before caps) with
        its bounds against the kW expected, and the event window's completeness."""
        lines = []
        for e in events:
            event_id = e.get("meter_event_id") or ""
            measured = (
                f"{_fmt(e.get('delivered_kw_uncapped'), 1)} kW "
                f"[{_fmt(e.get('delivered_kw_low'), 1)}, {_fmt(e.get('delivered_kw_high'), 1)}]"
                if e.get("delivered_kw_low") is not None
                else "not judged"
            )
            expected = e.get("expected_kw", e.get("committed_kw"))
            marks = ("no response " if e.get("no_response") else "") + (
                "missing data " if e.get("missing_data") else ""
            )
            lines.append(
                f'<a href="#event-{_e(event_id)}"><code>{_e(event_id[:8])}</code></a> '
                f"{_e(e.get('event_date'))}: {_e(measured)} of {_e(_fmt(expected, 1))} kW, "
                f"window {_e(_fmt(e.get('event_window_completeness'), 2))} {_e(marks)}"
            )
        return "<br>".join(lines)

    def evidence_cell(self, value: Any, event_ids: list[str]) -> str:
        if event_ids:
            return ", ".join(
                f'<a href="#event-{_e(i)}"><code>{_e(i[:8])}</code></a>' for i in event_ids
            )
        if isinstance(value, dict | list):
            return f"<code>{_e(json.dumps(value, default=str)[:400])}</code>"
        return _e(_fmt(value, 3))

    def meter_sections(self, flags: pl.DataFrame, referenced: dict[str, list[str]]) -> str:
        if flags.is_empty():
            return ""
        window_start = (
            min(
                (d for d in flags.get_column("window_start").to_list() if d),
                default=None,
            )
            if "window_start" in flags.columns
            else None
        )
        events = data.meter_events(self.conn, flags["meter_id"].to_list(), window_start)
        chosen: dict[str, list[dict]] = {}
        per_meter = max(
            1,
            min(
                self.options.max_event_plots_per_meter, self.options.max_event_plots // flags.height
            ),
        )
        for meter in flags["meter_id"].to_list():
            rows = events.filter(pl.col("meter_id") == meter).to_dicts() if events.height else []
            order = {i: n for n, i in enumerate(referenced.get(meter, []))}
            plottable = [r for r in rows if r["status"] not in ("cancelled", "test")]
            # the events the flag names, then the rest; most recent first within each
            plottable.sort(
                key=lambda r: (r["meter_event_id"] not in order, -r["event_start"].timestamp())
            )
            chosen[meter] = plottable[:per_meter]
        ids = [r["meter_event_id"] for rows in chosen.values() for r in rows]
        load = data.close_steps(
            data.event_load(self.conn, ids, self.options.hours_before, self.options.hours_after)
        )
        out = []
        for flag in flags.iter_rows(named=True):
            meter = flag["meter_id"]
            rows = events.filter(pl.col("meter_id") == meter).to_dicts() if events.height else []
            out.append(self.meter_section(flag, rows, chosen[meter], load))
        return "".join(out)

    def meter_section(self, flag: dict, rows: list[dict], chosen: list[dict], load) -> str:
        meter = flag["meter_id"]
        tz = rows[0]["meter_timezone"] if rows else None
        table_rows = [
            [
                f'<span id="event-{_e(r["meter_event_id"])}">{_e(_local(r["event_start"], r["meter_timezone"]))}</span>',
                _e(r["event_name"]),
                _e(r["status"]),
                _fmt(r["committed_kw"], 0),
                _fmt(r["delivered_kw"], 0),
                _fmt(r["performance_factor"]),
                _fmt(r["data_completeness"]),
                f"<code>{_e(r['meter_event_id'][:13])}</code>",
            ]
            for r in rows
        ]
        load_parts, window_rows, titles = [], [], []
        for r in chosen:
            frame = (
                load.filter(pl.col("meter_event_id") == r["meter_event_id"])
                if load.height
                else load
            )
            if frame.is_empty():
                continue
            title = (
                f"{_local(r['event_start'], r['meter_timezone'])} · {r['event_name']}|"
                f"committed {_fmt(r['committed_kw'], 0)} kW · delivered "
                f"{_fmt(r['delivered_kw'], 0)} kW · factor {_fmt(r['performance_factor'])} · "
                f"{r['status']}"
            )
            titles.append(title)
            frame = frame.select("hours_from_start", "kw", "series").with_columns(
                pl.lit(title).alias("panel")
            )
            if r["committed_kw"]:
                frame = pl.concat(
                    [
                        frame,
                        frame.filter(pl.col("series") == "baseline").with_columns(
                            (pl.col("kw") - r["committed_kw"]).alias("kw"),
                            pl.lit("baseline - committed kW").alias("series"),
                        ),
                    ]
                )
            load_parts.append(frame)
            window_rows.append(
                {"panel": title, "start": 0.0, "end": float(r["event_hours"]), "window": "event"}
            )
            if r["baseline_method"] in ("10-in-10", "4-in-4", "high-4-of-5"):
                params = self.config.for_program(r["program"])
                window_rows.append(
                    {
                        "panel": title,
                        "start": -float(params.adjustment_start_hours),
                        "end": -float(params.adjustment_end_hours),
                        "window": "adjustment",
                    }
                )
        self.summary.event_plots += len(titles)
        plots = (
            self.chart(
                charts.event_panels_chart(pl.concat(load_parts), pl.DataFrame(window_rows), titles),
                f"events-{meter}",
                f"{len(titles)} of {len(rows)} events plotted (the flag's evidence first, then "
                "the most recent): quarter-hour load in kW against hours from the event start; "
                "grey = adjustment window, orange = event window; green dashed = baseline minus "
                "committed kW, the load the site had to reach.",
            )
            if titles
            else "<p class='muted'>No interval data to plot for these events.</p>"
        )
        return (
            f'<section id="meter-{_e(meter)}" class="meter"><h3>{_e(self.label(meter))}</h3>'
            f"<p class='muted'>meter <code>{_e(meter)}</code> · time zone {_e(tz or '-')}</p>"
            + plots
            + _table(
                [
                    "start (local)",
                    "event",
                    "status",
                    "committed kW",
                    "delivered kW",
                    "factor",
                    "completeness",
                    "meter_event_id",
                ],
                table_rows,
                numeric={3, 4, 5, 6},
            )
            + "</section>"
        )

    def accuracy(self) -> str:
        frame = data.baseline_accuracy(self.conn)
        if frame.is_empty():
            return "<p class='muted'>No baseline accuracy yet.</p>"
        frame = frame.with_columns(
            pl.struct("meter_id", "company_name")
            .map_elements(
                lambda s: f"{s['company_name'] or '(no name)'} ({_short(s['meter_id'])})",
                return_dtype=pl.String,
            )
            .alias("label")
        )
        threshold = self.config.defaults.accuracy_max_rrmse
        return self.chart(
            charts.accuracy_chart(frame, threshold),
            "baseline-accuracy",
            f"Relative RMSE of each meter's adjusted baseline on its non-event weekdays "
            f"(pseudo events); dashed line: {threshold:.0%}, above which a baseline is "
            "unreliable.",
        )

    def dispatch(self) -> str:
        frame = data.dispatch_timeline(self.conn, self.options.recent_dispatch_events)
        if frame.is_empty():
            return (
                "<p class='muted'>No dispatch history in this database yet (materialize "
                "<code>dispatch_actions</code>).</p>"
            )
        labels = []
        for r in frame.iter_rows(named=True):
            name = leap_event_name(r["programs"] or [], r["dispatch_event_types"] or [])
            when = r["event_start"].strftime("%Y-%m-%d %H:%M UTC") if r["event_start"] else ""
            labels.append(f"{name} · {when} · {r['level']} {r['event_id'][:8]}")
        frame = frame.with_columns(
            pl.Series("label", labels),
            (pl.col("command") + " " + pl.col("meter_id").str.slice(0, 8)).alias("command_label"),
        )
        rows = [
            [
                _e(r["label"]),
                _e(self.label(r["meter_id"])),
                _e(r["command"]),
                _e(r["status"]),
                _e(r["reason_code"]),
                _fmt(r["dry_run"]),
                _fmt(r["attempts"]),
                _fmt(r["finished_s"], 3),
            ]
            for r in frame.iter_rows(named=True)
        ]
        plotted = frame.filter(pl.col("finished_s").is_not_null())
        chart = (
            self.chart(
                charts.dispatch_chart(plotted),
                "dispatch-timeline",
                "Per recent dispatch event: each site command from the webhook's receipt (0 s) "
                "to the end of its delivery; diamond = planned by the dispatch job.",
            )
            if plotted.height
            else ""
        )
        return chart + _table(
            [
                "event",
                "site (meter)",
                "command",
                "status",
                "reason",
                "dry run",
                "attempts",
                "webhook -> site s",
            ],
            rows,
            numeric={6, 7},
        )


def build_report(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    config: MeasurementConfig,
    options: ReportOptions | None = None,
    *,
    now: datetime | None = None,
) -> ReportSummary:
    """Write the report to ``path`` (atomically: a reader never sees half a file)."""
    builder = _Builder(conn, config, options or ReportOptions(), Path(path))
    now = now or datetime.now(UTC)
    portfolio = builder.portfolio()
    flag_table, flags, referenced = builder.flags()
    meters = builder.meter_sections(flags, referenced)
    accuracy = builder.accuracy()
    dispatch = builder.dispatch()
    s = builder.summary
    market_now = now.astimezone(ZoneInfo(config.interval_local_timezone))
    tiles = "".join(
        f'<div class="tile"><b>{value}</b><span class="muted">{label}</span></div>'
        for value, label in [
            (_fmt(s.portfolio_performance_factor), "portfolio performance factor"),
            (_fmt(s.scored_events), "scored events"),
            (_fmt(s.flagged_meters), f"flagged meters (as of {_fmt(s.flags_as_of)})"),
        ]
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>VPP performance report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><header><h1>VPP performance report</h1>
<p>Generated {_e(now.strftime("%Y-%m-%d %H:%M UTC"))} ({_e(market_now.strftime("%Y-%m-%d %H:%M %Z"))},
{_e(config.interval_local_timezone)}) from the analytics database. Methods: docs/methodology.md.</p></header>
<nav><a href="#portfolio">Portfolio</a><a href="#flags">Flagged meters</a><a href="#accuracy">Baseline accuracy</a><a href="#dispatch">Dispatch timeline</a></nav>
<main><div class="tiles" style="margin-top:16px">{tiles}</div>
<section id="portfolio"><h2>Portfolio performance factor by program and month</h2>{portfolio}</section>
<section id="flags"><h2>Flagged meters</h2>{flag_table}</section>
{meters}
<section id="accuracy"><h2>Baseline accuracy by meter</h2>{accuracy}</section>
<section id="dispatch"><h2>Dispatch timeline: webhook received to site command</h2>{dispatch}</section>
</main></body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)
    s.sections = ["portfolio", "flags", "meters", "accuracy", "dispatch"]
    return s
