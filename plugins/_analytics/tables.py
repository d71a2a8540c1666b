"""A report table: columns with Chinese labels and typed cells, written as CSV for Excel."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    kind: str = "int"  # int | pct | money | ratio | text


@dataclass
class Table:
    name: str  # file stem of its CSV
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def column(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]


def rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def cell_text(value: Any, kind: str) -> str:
    """One cell as shown in the HTML table."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "int" and isinstance(value, int | float):
        return f"{int(value):,}"
    return str(value)


def _csv_value(value: Any, kind: str) -> Any:
    if value is None:
        return ""
    if kind == "pct":
        return round(value * 100, 1)  # a number Excel can chart; the header says (%)
    if kind in ("money", "ratio"):
        return round(value, 2)
    return value


def write_csv(table: Table, folder: Path) -> Path:
    """UTF-8 with BOM, so Excel on Windows opens Chinese headers correctly."""
    path = folder / f"{table.name}.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"{c.label}(%)" if c.kind == "pct" else c.label for c in table.columns])
        for row in table.rows:
            writer.writerow([_csv_value(row.get(c.key), c.kind) for c in table.columns])
    return path
