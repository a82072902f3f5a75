"""Read a table of per-structure values (CSV or JSON) keyed by a structure id column.

Used by the QMOF-style importer for ``qmof.csv`` / ``qmof.json``. Values are kept as
the text or JSON value of the file, never parsed by pandas, so a float written with
17 significant digits comes back bit-exact.

* CSV: a header line, then one row per structure (``csv`` module, UTF-8).
* JSON: a list of objects (``qmof.json``); nested objects are flattened with dots,
  ``{"outputs": {"pbe": {"energy_total": -1.0}}}`` → ``"outputs.pbe.energy_total"``,
  as ``pandas.json_normalize`` does. Lists stay lists.

A row is named ``line N`` (CSV, 1-based file line) or ``entry N`` (JSON, 0-based).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from farfield.data.validation import Problem

__all__ = ["Table", "parse_number", "parse_per_atom", "read_table"]


@dataclass
class Table:
    """A table indexed by id. ``rows``: id → flattened row; ``where``: id → "line N";
    ``duplicates``: id → every place it occurs (ids that occur more than once);
    ``problems``: rows that could not be indexed (empty id)."""

    file: str
    columns: list[str]
    rows: dict[str, dict] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0


def _flatten(entry: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in entry.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[str, dict]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = [(f"line {reader.line_num}", row) for row in reader]
    return columns, rows


def _json_rows(path: Path) -> tuple[list[str], list[tuple[str, dict]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise ValueError("expected a JSON list of objects (one per structure, like qmof.json)")
    rows = [(f"entry {n}", _flatten(entry)) for n, entry in enumerate(data)]
    columns = list(dict.fromkeys(key for _, row in rows for key in row))
    return columns, rows


def read_table(path: str | Path, id_column: str, *, required: tuple[str, ...] = ()) -> Table:
    """Read ``path`` (``.csv`` or ``.json``) and index its rows by ``id_column``.

    ``required``: further columns that must exist. Raises FileNotFoundError /
    ValueError (naming the file) when the table cannot be used at all: unreadable,
    unknown suffix, or a missing column.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{file}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"{file}: expected a .csv or .json table, got {path.suffix!r}")
    try:
        columns, rows = (_csv_rows if suffix == ".csv" else _json_rows)(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise ValueError(f"{file}: cannot read the table: {err}") from err
    for column in (id_column, *required):
        if column not in columns:
            shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
            raise ValueError(f"{file}: no column {column!r}; the table has: {shown or 'nothing'}")
    table = Table(file=file, columns=columns, n_rows=len(rows))
    by_id: dict[str, list[tuple[str, dict]]] = {}
    for where, row in rows:
        value = row.get(id_column)
        if value is None or str(value).strip() == "":
            table.problems.append(Problem(file, None, f"{where}: empty {id_column!r}; row skipped"))
            continue
        by_id.setdefault(str(value).strip(), []).append((where, row))
    for key, found in by_id.items():
        if len(found) > 1:
            table.duplicates[key] = [where for where, _ in found]
        else:
            table.where[key], table.rows[key] = found[0]
    return table


def parse_number(value) -> float | str:
    """``value`` as a finite-or-not float, or a message saying why it is not a number."""
    if isinstance(value, bool) or value is None:
        return "is empty" if value is None else f"is {value!r}, not a number"
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        return "is empty"
    try:
        return float(text)
    except ValueError:
        return f"is {text[:40]!r}, not a number"


def parse_per_atom(value) -> list[float] | str:
    """A per-atom list from a JSON list (JSON table) or JSON-encoded text (CSV), or a
    message saying why it is not one."""
    if isinstance(value, str):
        if not value.strip():
            return "is empty"
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return f"is {value[:40]!r}, not a JSON list of numbers"
    if value is None:
        return "is empty"
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"is {str(value)[:40]!r}, not a list of numbers"
    if not all(math.isfinite(v) for v in value):
        return "contains NaN or inf"
    return [float(v) for v in value]
