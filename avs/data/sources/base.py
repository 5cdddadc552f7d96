"""What every dataset adapter returns, and the CSV reading they share."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from avs.data.clip import ClipRef
from avs.data.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class Source:
    """A dataset as a list of clips plus what is needed to interpret their labels.

    Attributes:
        name: dataset name as in `params.yaml` (`data.dataset`).
        label_kind: binary (sounding vs not) or semantic (class ids).
        num_classes: 2 for binary, 71 for AVSS.
        categories: category name -> id (0 is background).
        clips: every clip of every split.
        notes: facts about the source worth keeping in the manifest.
    """

    name: str
    label_kind: Literal["binary", "semantic"]
    num_classes: int
    categories: dict[str, int]
    clips: list[ClipRef]
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CsvRow:
    """One data row of a metadata CSV, with where it came from."""

    values: dict[str, str]
    origin: str  # "<file> line <n>"

    def get(self, name: str) -> str:
        return self.values.get(name, "")


def read_metadata_csv(path: Path, columns: dict[str, int]) -> list[CsvRow]:
    """Read a metadata CSV whose first line is a header.

    Columns are found by header name when the header has it, else by position (the official
    AVSBench loaders read by position), so both the published files and copies with renamed
    headers work.

    Args:
        path: the CSV.
        columns: wanted column name -> its position in the published file.

    Raises:
        DataError: the file is missing, empty, or too narrow for a wanted column.
    """
    if not path.is_file():
        raise DataError(path, "metadata CSV not found")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        lines = list(csv.reader(handle))
    if not lines:
        raise DataError(path, "metadata CSV is empty")
    header = [h.strip() for h in lines[0]]
    where = {name: header.index(name) if name in header else pos for name, pos in columns.items()}
    for name in header:  # optional extra columns (e.g. the stamps set's `categories`)
        where.setdefault(name, header.index(name))
    needed = max(where[name] for name in columns)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in line):
            continue
        if len(line) <= needed:
            raise DataError(path, f"line {number} has {len(line)} columns; expected at least {needed + 1}")
        values = {name: line[pos].strip() for name, pos in where.items() if pos < len(line)}
        rows.append(CsvRow(values, f"{path.name} line {number}"))
    return rows


def require_dir(path: Path, what: str) -> Path:
    """A folder the layout needs; a clear error when it is not there."""
    if not path.is_dir():
        raise DataError(path, f"folder not found: expected {what}")
    return path


def split_of(row: CsvRow, path: Path, aliases: dict[str, str] | None = None) -> str:
    split = (aliases or {}).get(row.get("split"), row.get("split"))
    if split not in SPLITS:
        raise DataError(path, f"{row.origin}: split '{row.get('split')}' is not one of {SPLITS}")
    return split
