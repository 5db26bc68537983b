"""Self-contained HTML reports with inline SVG plots (no CDN, no JavaScript), shared by bench and plan."""

from __future__ import annotations

from quiver.report.html import Page
from quiver.report.svg import Axes, Series, chart, nice_ticks

__all__ = ["Axes", "Page", "Series", "chart", "nice_ticks"]
