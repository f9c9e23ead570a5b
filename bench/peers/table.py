"""The peer comparison's table: a row per system and worker setting, a column per scenario.

Each cell is the median over rounds, with the lowest and highest round beside it; a cell that
could not be measured says why (in a footnote) instead of a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.report import figure, median


@dataclass(frozen=True)
class Column:
    key: str  # the scenario: drain, io, pickup, http
    title: str


@dataclass
class Cell:
    """One scenario of one row, over rounds."""

    samples: list[float] = field(default_factory=list)
    error: str | None = None
    note: str | None = None  # e.g. that the figure is scaled from fewer jobs

    def text(self, unit: str, footnote: int | None) -> str:
        mark = f" [{footnote}]" if footnote is not None else ""
        if self.error is not None:
            return f"failed{mark}"
        if not self.samples:
            return "—" + mark
        value = figure(median(self.samples), unit)
        if len(self.samples) > 1:
            spread = f"{figure(min(self.samples), '')}-{figure(max(self.samples), '')}"
            value = f"{value} ({spread})"
        return value + mark


@dataclass(frozen=True)
class Line:
    """A row: the system and worker setting it is, and its cells by column key."""

    system: str
    label: str
    cells: dict[str, Cell]
    note: str = ""


UNITS = {"drain": "jobs/s", "io": "s", "pickup": "ms", "http": "req/s"}


def render(columns: Sequence[Column], lines: Sequence[Line]) -> str:
    """The Markdown table, then its numbered footnotes (errors, scaled counts, setting notes)."""
    notes: list[str] = []

    def footnote(text: str) -> int:
        if text not in notes:
            notes.append(text)
        return notes.index(text) + 1

    head = ["| system | worker setting |", "|---|---|"]
    for column in columns:
        head[0] += f" {column.title} |"
        head[1] += "---:|"
    body = []
    for line in lines:
        label = line.label + (f" [{footnote(line.note)}]" if line.note else "")
        cells = []
        for column in columns:
            cell = line.cells.get(column.key, Cell())
            text = cell.error if cell.error is not None else cell.note
            cells.append(cell.text(UNITS.get(column.key, ""), footnote(text) if text else None))
        body.append(f"| {line.system} | {label} | {' | '.join(cells)} |")
    listed = [f"{n}. {text}" for n, text in enumerate(notes, 1)]
    return "\n".join([*head, *body, *(["", *listed] if listed else [])])
