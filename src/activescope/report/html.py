"""Self-contained HTML: one file, inline CSS, figures as base64 PNG, molecules as inline SVG.

These helpers only assemble markup; `activescope.report.report_run` decides what goes in it.
Every text value is escaped, and nothing refers to an external resource, so the page opens
offline and can be mailed around as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

import pandas as pd

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: middle; }
th { background: #f4f6f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption, p.note { color: #555; font-size: 0.9em; }
nav a { margin-right: 1em; }
"""


def _format_cell(value: object) -> tuple[str, bool]:
    """Cell text and whether it is numeric (right-aligned)."""
    if isinstance(value, float):
        return ("–" if value != value else f"{value:.4g}"), True
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}", True
    return html.escape(str(value)), False


def table(frame: pd.DataFrame, raw_html_columns: Iterable[str] = ()) -> str:
    """An HTML table of the frame's rows; columns in `raw_html_columns` are inserted unescaped
    (trusted markup such as inline SVG we generated ourselves)."""
    raw = set(raw_html_columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record):
            if column in raw:
                cells.append(f"<td>{value or ''}</td>")
            else:
                text, numeric = _format_cell(value.item() if hasattr(value, "item") else value)
                cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def key_value_table(items: dict[str, object]) -> str:
    """A two-column table of labelled values (the run summary)."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_format_cell(v)[0]}</td></tr>" for k, v in items.items()
    )
    return f"<table><tbody>{rows}</tbody></table>"


def image(png: bytes, alt: str, caption: str) -> str:
    """A figure with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def note(text: str) -> str:
    """A muted explanatory paragraph; `text` is escaped."""
    return f'<p class="note">{html.escape(text)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    """A `<section>` with id `anchor` (the table of contents links to it), an escaped h2 `title`
    and `body`, which is trusted markup inserted as it is."""
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document from (anchor, title, body) sections, with a table of contents."""
    nav = "".join(f'<a href="#{anchor}">{html.escape(name)}</a>' for anchor, name, _ in sections)
    body = "".join(section(*s) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"note\">{html.escape(subtitle)}</p><nav>{nav}</nav>{body}"
        "</body></html>\n"
    )
