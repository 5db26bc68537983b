"""A self-contained HTML page: headings, paragraphs, tables and inline SVG figures, with inline CSS.

>>> page = Page("quiver bench")
>>> page.heading("Latency")
>>> page.table(["load", "p99 ms"], [["closed 8", 3.2]])
>>> html = page.render()  # one string, no external resources
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
tr.highlight td { background: #e8f4e8; font-weight: bold; }
figure { margin: 12px 0; } figcaption { font-size: 12px; color: #555; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: 8px 12px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


class Page:
    """Builds one report page; ``render()`` returns the whole document."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = [f"<h1>{escape(title)}</h1>"]

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{escape(text)}</h2>")

    def paragraph(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{escape(text)}</p>")

    def preformatted(self, text: str) -> None:
        self.parts.append(f"<pre>{escape(text)}</pre>")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]], highlight: int | None = None) -> None:
        head = "".join(f"<th>{escape(h)}</th>" for h in headers)
        body = []
        for i, row in enumerate(rows):
            cls = ' class="highlight"' if i == highlight else ""
            body.append(f"<tr{cls}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def figure(self, svg: str, caption: str = "") -> None:
        cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
        self.parts.append(f"<figure>{svg}{cap}</figure>")

    def render(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body>\n{chr(10).join(self.parts)}\n</body></html>\n"
        )
