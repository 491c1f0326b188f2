"""The performance report: made by the demo, self-contained, and checked in a real browser
(Debian's Chromium driven by Playwright: every chart drawn, no console errors, a flagged meter
followed to its event plot, a screenshot saved)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "build" / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_demo_ends_by_printing_the_report_path(demo_run):
    assert demo_run["exit_code"] == 0, demo_run["output"][-3000:]
    last = demo_run["output"].strip().splitlines()[-1]
    assert last == f"Performance report: {demo_run['report_path'].resolve()}"
    assert demo_run["report_path"].stat().st_size > 50_000


def test_report_is_self_contained_and_shows_every_section(demo_run):
    text = demo_run["report_path"].read_text()
    # nothing to fetch: no scripts, stylesheets, images or fonts from anywhere
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", text)
    for section in ("portfolio", "flags", "accuracy", "dispatch"):
        assert f'<section id="{section}"' in text
    with duckdb.connect(str(demo_run["duckdb_path"]), read_only=True) as conn:
        flagged = conn.execute(
            "SELECT u.meter_id, m.company_name FROM underperformers u JOIN meters m USING "
            "(meter_id) WHERE as_of_date = (SELECT max(as_of_date) FROM underperformers)"
        ).fetchall()
        programs = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT program_identifier FROM event_performance WHERE status = 'scored'"
            ).fetchall()
        ]
        commands = conn.execute("SELECT count(*) FROM dispatch_actions").fetchall()[0][0]
    assert flagged, "the demo's data flags someone"
    for meter_id, company in flagged:
        # a section per flagged meter, its name beside its id, linked from the flag table
        assert f'id="meter-{meter_id}"' in text and f'href="#meter-{meter_id}"' in text
        assert company.replace("&", "&amp;") in text
    for program in programs:
        assert program in text
    assert commands > 0 and "webhook -&gt; site s" in text


def test_vpp_report_prints_the_path(demo_run, monkeypatch):
    monkeypatch.setenv("VPP_DUCKDB_PATH", str(demo_run["duckdb_path"]))
    run = subprocess.run(
        [sys.executable, "-m", "vpp_pipeline.cli", "report"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(demo_run["report_path"].resolve())
    monkeypatch.setenv("VPP_DUCKDB_PATH", str(demo_run["duckdb_path"].parent / "none" / "x.duckdb"))
    missing = subprocess.run(
        [sys.executable, "-m", "vpp_pipeline.cli", "report"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no report at" in missing.stderr


def _chromium():
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (.ci/run installs it "
            "where it can); the browser check of the report did not run"
        )
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    return playwright


def test_report_renders_in_chromium(demo_run):
    playwright = _chromium()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    url = demo_run["report_path"].resolve().as_uri()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "request",
                lambda r: (
                    problems.append(f"request {r.url}") if not r.url.startswith("file:") else None
                ),
            )
            page.goto(url)
            charts = page.evaluate(
                """() => [...document.querySelectorAll('figure.chart')].map(f => {
                    const svg = f.querySelector('svg');
                    if (!svg) return {name: f.dataset.chart, ok: false};
                    const box = svg.getBoundingClientRect();
                    const marks = svg.querySelectorAll('path, rect, line').length;
                    return {name: f.dataset.chart, ok: box.width > 100 && box.height > 50,
                            marks: marks};
                })"""
            )
            assert len(charts) >= 4, charts
            names = {c["name"] for c in charts}
            assert {"portfolio", "baseline-accuracy", "dispatch-timeline"} <= names
            assert any(n.startswith("events-") for n in names)
            empty = [c for c in charts if not c["ok"] or c["marks"] < 5]
            assert not empty, f"charts not drawn: {empty}"

            # follow the first flagged meter to its event plot
            link = page.locator("section#flags a[href^='#meter-']").first
            target = link.get_attribute("href")
            link.click()
            page.wait_for_function(f"location.hash === '{target}'")
            section = page.locator(f"section{target}")
            plot = section.locator("figure.chart svg").first
            assert plot.is_visible()
            assert section.locator("figure.chart svg path").count() > 5
            assert 0 <= section.bounding_box()["y"] < 1000  # scrolled into view
            page.screenshot(path=str(SCREENSHOT_DIR / "performance_report_meter.png"))
            page.goto(url)
            page.screenshot(path=str(SCREENSHOT_DIR / "performance_report.png"))
            assert not problems, f"browser console errors or network requests: {problems}"
        finally:
            browser.close()
    print(f"screenshots in {SCREENSHOT_DIR}")


def test_chromium_skip_message_is_clear(monkeypatch):
    """Where no Chromium exists the browser test skips and says how to get it."""
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", Path("/nonexistent/chromium"))
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _chromium()


def test_the_demos_closing_query_hint_works_with_what_is_installed(demo_run):
    hint = next(
        line for line in demo_run["output"].splitlines() if line.startswith("Query the analysts")
    )
    query = re.search(r'vpp sql "([^"]+)"', hint).group(1)
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "vpp"),
            "sql",
            query,
            "--database",
            str(demo_run["published_path"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "meter_event_id" in run.stdout and "5 rows" in run.stdout
