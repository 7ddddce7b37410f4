"""The one writer of tables: CSV, Markdown and HTML text from a header and rows of cells.

Results (`mmlab.evaluate.write_results`), reports (`mmlab.report`), the notebook report
(`mmlab.workspace`), benchmarks (`mmlab.bench`) and timings (`mmlab.experiments`) all format
their tables here, so a table looks the same wherever it is written.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any, Mapping, Sequence


def mean_std_cell(mean: float, std: float, n: int, scale: float = 100.0, digits: int = 2) -> str:
    """"mean ± std" over ``n`` seeds; one seed has no spread to show: "mean (1 seed)"."""
    if n == 1:
        return f"{mean * scale:.{digits}f} (1 seed)"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with a header line and ``\\n`` line ends."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([list(header), *[list(r) for r in rows]])
    return buf.getvalue()


def records_csv_text(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV of dict rows in ``columns`` order (a missing key is an empty cell)."""
    return csv_text(columns, [[r.get(c, "") for c in columns] for r in records])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], escape_cells: bool = True) -> str:
    """An HTML table; cells are escaped unless ``escape_cells`` is False (already HTML)."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
    cell = (lambda c: esc(str(c))) if escape_cells else str
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
