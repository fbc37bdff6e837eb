"""HTML building blocks of the report: an embedded PNG and a table of a DataFrame."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd


def embedded_png(path: Path, alt: str) -> str:
    """``<img>`` holding the PNG file ``path`` inline (base64), with ``alt`` text."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """``<table>`` of ``frame`` (no index): floats with ``floatfmt``, NaN as n/a, text escaped."""
    def cell(value) -> str:
        if isinstance(value, float):
            return floatfmt.format(value) if value == value else "n/a"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def percent(value: float) -> str:
    """A fraction in [0, 1] as a percentage with one decimal; NaN as n/a."""
    return "n/a" if value != value else f"{100 * value:.1f}%"
