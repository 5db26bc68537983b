"""Reports are self-contained and render with their plots in a real headless browser."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from plan.test_search import Synthetic  # type: ignore[import-not-found]
from quiver.plan.report import pareto_front, render
from quiver.plan.search import Budget, Goal, Planner
from quiver.plan.space import SearchSpace, Variant
from quiver.report import Axes, Page, Series, chart, nice_ticks


def _plan_html() -> str:
    space = SearchSpace((Variant(1, 99.5), Variant(2, 98.8)))
    decision = Planner(space, Goal(30.0, 600.0, None, 0.05), Synthetic(), Budget(seconds=60)).plan()
    return render(decision, space, "sim")


def test_plan_report_is_self_contained_with_plots() -> None:
    html = _plan_html()
    assert html.count("<svg") == 2
    assert "Pareto front" in html and "Every measurement" in html
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing fetched from anywhere
    assert "<script" not in html


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    # (cost, p99, accuracy): the second is dominated by the first; the third trades accuracy for cost.
    assert pareto_front([(1.0, 10.0, 99.0), (2.0, 12.0, 98.0), (0.5, 20.0, 97.0)]) == [0, 2]


def test_chart_scales_ticks_and_escapes_labels() -> None:
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    svg = chart([Series("a<b", [(0, 1), (10, 100)])], Axes("x", "y", "t", log_y=True, hlines=[(50, "SLO")]))
    assert "a&lt;b" in svg and svg.count("<circle") == 2 and "SLO" in svg


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) into rows of pixels."""
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], (prev[i - channels] if i >= channels else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, channels, rows


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    page = Page("render check")
    page.figure(chart([Series("red line", [(0, 0), (10, 10)], color="#ff0000")], Axes("x", "y")))
    page.heading("plan")
    html_path = tmp_path / "report.html"
    html_path.write_text(page.render() + _plan_html())
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=900,700",
            html_path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    width, channels, rows = _png_pixels(shot.read_bytes())
    red = sum(
        1
        for row in rows
        for x in range(width)
        if row[x * channels] > 200 and row[x * channels + 1] < 60 and row[x * channels + 2] < 60
    )
    assert red > 200  # the SVG line was drawn, not just the page text
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html_path.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    assert dom.count("<svg") == 3
