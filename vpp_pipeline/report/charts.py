"""The report's charts: Vega-Altair specifications rendered to inline SVG by vl-convert.

Static SVG needs no script and no network to display: the report opens offline in any
browser (or mail client), prints, and looks the same everywhere. Rendering happens here, in
Python (~25 ms per small panel), which is why the number of event panels is bounded.

Several SVGs share one HTML document, so the ids Vega writes (clip paths, gradients) are
prefixed per chart: otherwise ``url(#clip1)`` of one chart would resolve to another's.
"""

from __future__ import annotations

import re

import altair as alt
import polars as pl
import vl_convert

#: Series of the event plots, in legend order, with their colours and dashes.
LOAD_SERIES = {
    "actual": ("#1f3b73", []),
    "baseline": ("#e07b00", []),
    "baseline (unadjusted)": ("#f2b880", [4, 3]),
    "baseline - committed kW": ("#2a9d4b", [6, 3]),
}
FONT = "sans-serif"


def render_svg(chart: alt.TopLevelMixin, chart_id: str) -> str:
    """The chart as an SVG string whose ids are unique to ``chart_id``."""
    spec = chart.to_dict(validate=False)
    spec.setdefault("config", {}).update({"font": FONT, "background": "white"})
    svg = vl_convert.vegalite_to_svg(spec)
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{chart_id}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{chart_id}-{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{chart_id}-{m.group(1)}"', svg)


def portfolio_chart(frame: pl.DataFrame) -> alt.Chart:
    """Portfolio performance factor per market-local month, one bar per program."""
    base = alt.Chart(frame.select("program", "month", "scored_events", "performance_factor"))
    bars = base.mark_bar().encode(
        x=alt.X("month:O", title="market-local month", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("program:N"),
        y=alt.Y("performance_factor:Q", title="performance factor (delivered / committed kW)"),
        color=alt.Color("program:N", title="program"),
    )
    labels = base.mark_text(dy=-6, fontSize=9).encode(
        x=alt.X("month:O"),
        xOffset=alt.XOffset("program:N"),
        y=alt.Y("performance_factor:Q"),
        text=alt.Text("performance_factor:Q", format=".2f"),
    )
    target = alt.Chart(pl.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    return alt.layer(bars, labels, target).properties(width=max(320, 60 * frame.height), height=260)


def event_panels_chart(
    load: pl.DataFrame, windows: pl.DataFrame, titles: list[str]
) -> alt.FacetChart:
    """One panel per event (``panel`` = its title; ``|`` breaks lines): quarter-hour actual load
    and baselines (kW) against hours from the event start, the adjustment window shaded grey
    and the event window orange. ``load``: panel, hours_from_start, kw, series; ``windows``:
    panel, start, end, window ('adjustment' | 'event'), in hours from the start. One faceted
    spec with one data set: cheap to build and to render."""
    rows = pl.concat(
        [
            load.select(
                "panel",
                pl.col("hours_from_start").alias("x"),
                pl.lit(None, pl.Float64).alias("x2"),
                "kw",
                "series",
                pl.lit(None, pl.String).alias("window"),
            ),
            windows.select(
                "panel",
                pl.col("start").alias("x"),
                pl.col("end").alias("x2"),
                pl.lit(None, pl.Float64).alias("kw"),
                pl.lit(None, pl.String).alias("series"),
                "window",
            ),
        ]
    )
    series = list(LOAD_SERIES)
    shades = (
        alt.Chart()
        .transform_filter("isValid(datum.window)")
        .mark_rect()
        .encode(
            x=alt.X("x:Q", title="hours from event start"),
            x2="x2:Q",
            color=alt.Color(
                "window:N",
                scale=alt.Scale(domain=["adjustment", "event"], range=["#e6e6e6", "#fde3c4"]),
                legend=alt.Legend(title="window"),
            ),
        )
    )
    lines = (
        alt.Chart()
        .transform_filter("isValid(datum.series)")
        .mark_line(interpolate="step-after", strokeWidth=1.6)
        .encode(
            x=alt.X("x:Q", title="hours from event start"),
            y=alt.Y("kw:Q", title="kW", scale=alt.Scale(zero=False)),
            stroke=alt.Stroke(
                "series:N",
                scale=alt.Scale(domain=series, range=[LOAD_SERIES[s][0] for s in series]),
                legend=alt.Legend(title="load"),
            ),
            strokeDash=alt.StrokeDash(
                "series:N",
                scale=alt.Scale(domain=series, range=[LOAD_SERIES[s][1] for s in series]),
                legend=None,
            ),
        )
    )
    return (
        alt.layer(shades, lines, data=rows)
        .properties(width=300, height=150)
        .facet(
            facet=alt.Facet(
                "panel:N",
                sort=titles,
                title=None,
                header=alt.Header(
                    labelExpr="split(datum.label, '|')",
                    labelFontSize=11,
                    labelAnchor="start",
                    labelLimit=0,
                ),
            ),
            columns=3,
        )
        .resolve_scale(x="independent", y="independent")
        .configure_legend(orient="top")
    )


def accuracy_chart(frame: pl.DataFrame, threshold: float) -> alt.LayerChart:
    """RRMSE of each meter's baseline per method (dots), the unreliable threshold as a rule."""
    data = frame.select("label", "method", "rrmse", "bias", "test_days")
    order = (
        data.group_by("label").agg(pl.col("rrmse").max()).sort("rrmse", descending=True)["label"]
    )
    dots = (
        alt.Chart(data)
        .mark_point(filled=True, size=45)
        .encode(
            y=alt.Y("label:N", sort=order.to_list(), title=None),
            x=alt.X("rrmse:Q", title="RRMSE on non-event weekdays", axis=alt.Axis(format="%")),
            color=alt.Color("method:N", title="method"),
        )
    )
    rule = (
        alt.Chart(pl.DataFrame({"x": [threshold]}))
        .mark_rule(color="#b00020", strokeDash=[4, 4])
        .encode(x="x:Q")
    )
    return alt.layer(dots, rule).properties(width=480, height=max(120, 15 * order.len()))


def dispatch_chart(frame: pl.DataFrame) -> alt.LayerChart:
    """Per recent event (rows) and site command: a bar from the webhook's receipt to the end
    of delivery, a diamond when it was planned, a dot when it finished (colour = status)."""
    data = frame.select("label", "command_label", "status", "planned_s", "finished_s").with_columns(
        pl.lit(0.0).alias("received_s")
    )
    base = alt.Chart(data)
    y = alt.Y("label:N", title=None, sort=None)
    bar = base.mark_rule(strokeWidth=3, opacity=0.5).encode(
        y=y,
        x=alt.X("received_s:Q", title="seconds after the webhook was received"),
        x2="finished_s:Q",
    )
    planned = base.mark_point(shape="diamond", size=60, filled=True, color="#555").encode(
        y=y, x="planned_s:Q"
    )
    finished = base.mark_point(filled=True, size=70).encode(
        y=y, x="finished_s:Q", color=alt.Color("status:N", title="command status")
    )
    return alt.layer(bar, planned, finished).properties(
        width=520, height=max(80, 26 * data["label"].n_unique())
    )
