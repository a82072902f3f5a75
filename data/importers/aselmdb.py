"""Read fairchem ``.aselmdb`` files (ASE databases on LMDB) row by row, validated.

ODAC25, OMol25 and the other fairchem datasets ship as ``*.aselmdb`` shards: ASE databases
whose LMDB backend lives in the ``ase-db-backends`` package (``ase.db.connect(path)`` picks it
from the suffix). A row keeps its labels where fairchem put them: energy, forces and stress
as calculator results, everything else (``charge``, ``spin``, ``source``, ``mof_name``,
``lowdin_charges``, ...) in ``row.data`` or the key-value pairs. Each row becomes a record
the way the ``db`` reader (:mod:`farfield.data.readers`) builds one: calculator results,
key-value pairs and ``data`` are flattened into ``info``/``arrays``, then names are mapped
with ``key_map`` (``--key``), e.g. ``{"charges": "lowdin_charges", "total_charge": "charge"}``.

Ids (:class:`AselmdbOptions`):

* ``structure_id`` = the row key ``id_key`` (joined with ``frame_key`` as ``"{id}-{frame}"``),
  or, with no ``id_key``, ``"<file stem>-<row id>"``, unique as long as shard names are;
* ``parent_id`` = the row key ``parent_key``; with ``parent_pattern`` only the part of it
  matching the regular expression (group 1 if it has groups), and rows whose key does not
  match are *left out* (counted, not problems): OMol25's system is the first four parts of
  its ``source`` path, ODAC25's MOF the ``mof_name``. No ``parent_key``: each structure is
  its own parent.

Problems name the file and the **row id** (1-based, what ``ase db FILE id=N`` shows), as
``FILE: row N: what is wrong`` (:class:`RowProblem`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ase import Atoms
from pydantic import field_validator, model_validator

from farfield.data.config import StrictModel
from farfield.data.importers.odac import row_key_values
from farfield.data.readers import _check_key_map, _put, normalise_atoms
from farfield.data.records import PARENT_ID, SOURCE, STRUCTURE_ID
from farfield.data.validation import Problem, validate_atoms

__all__ = ["ASELMDB_SUFFIX", "AselmdbOptions", "RowProblem", "check_key_map", "count_rows", "list_aselmdb",
           "open_aselmdb", "read_rows"]

ASELMDB_SUFFIX = ".aselmdb"


class RowProblem(Problem):
    """A problem of one row of an ASE database: ``frame`` holds the row id (1-based, as in
    ``ase db FILE id=N``), or None for a problem of the whole file."""

    def __str__(self) -> str:
        if self.frame is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}: row {self.frame}: {self.message}"

    def to_dict(self) -> dict:
        """JSON-ready ``{"file", "row", "message"}``."""
        return {"file": self.file, "row": self.frame, "message": self.message}

    @classmethod
    def duplicate(cls, file: str, row: int, structure_id: str, first_file: str, first_row: int) -> "RowProblem":
        """Row ``row`` of ``file`` repeats a structure id first seen in ``first_file`` row ``first_row``."""
        return cls(file, row, f"duplicate structure_id {structure_id!r} (first seen in {first_file} row {first_row})")


class AselmdbOptions(StrictModel):
    """Which row keys name a structure and its parent (see the module docstring).

    ``id_key``: row key holding the structure id (None: ``<file stem>-<row id>``);
    ``frame_key``: row key numbering frames of one trajectory, joined to the id;
    ``parent_key``: row key naming the parent (None: each structure is its own parent);
    ``parent_pattern``: regular expression searched in the parent key's value; rows whose
    value does not match are left out, the parent id is the match (or its group 1).
    """

    id_key: str | None = None
    frame_key: str | None = None
    parent_key: str | None = None
    parent_pattern: str | None = None

    @field_validator("parent_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"parent_pattern {value!r} is not a regular expression: {err}") \
                    from err
        return value

    @model_validator(mode="after")
    def _keys_fit_together(self) -> AselmdbOptions:
        if self.frame_key and not self.id_key:
            raise ValueError("frame_key (--frame-key) needs id_key (--id-key): the frame number "
                             "is joined to the structure id")
        if self.parent_pattern and not self.parent_key:
            raise ValueError("parent_pattern (--parent-pattern) needs parent_key (--parent-key): "
                             "the pattern is matched against that key's value")
        return self


def check_key_map(key_map: dict[str, str]) -> None:
    """ValueError for a ``--key`` name that is not a record field, or one that maps an id
    (ids come from the row keys of :class:`AselmdbOptions`)."""
    _check_key_map(key_map)
    clash = sorted({STRUCTURE_ID, PARENT_ID} & set(key_map))
    if clash:
        raise ValueError(f"--key {clash[0]}=...: with --format aselmdb the ids come from "
                         f"--id-key / --parent-key / --frame-key")


def list_aselmdb(paths: list[str | Path]) -> list[Path]:
    """The ``.aselmdb`` files named by ``paths`` (files, or folders whose ``*.aselmdb`` are
    taken in name order). Raises FileNotFoundError / ValueError naming the path."""
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix == ASELMDB_SUFFIX and p.is_file())
            if not found:
                raise ValueError(f"{path}: no {ASELMDB_SUFFIX} files in the folder")
            files += found
        elif path.suffix != ASELMDB_SUFFIX:
            raise ValueError(f"{path}: --format aselmdb reads {ASELMDB_SUFFIX} files or folders "
                             f"of them, got a {path.suffix or 'suffix-less'} file")
        else:
            files.append(path)
    seen: set[Path] = set()
    return [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]


def open_aselmdb(path: str | Path):
    """The file as a read-only ``ase_db_backends`` LMDB database; ValueError naming the file
    when it is not one."""
    import lmdb
    from ase_db_backends.aselmdb import LMDBDatabase

    try:
        # Probe with lmdb itself first: an LMDBDatabase whose __init__ fails raises again
        # from its __del__ (it reopens the environment to close it).
        lmdb.open(str(path), subdir=False, readonly=True, lock=False).close()
        return LMDBDatabase(Path(path), readonly=True)
    except (lmdb.Error, OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot open as an ASE LMDB database ({type(err).__name__}: "
                         f"{err})") from err


def count_rows(path: str | Path) -> list[int]:
    """Row ids of the database file ``path`` in order (ValueError naming the file if it is
    not an ASE LMDB database)."""
    db = open_aselmdb(path)
    try:
        return list(db.ids)
    finally:
        db.close()


def _row_atoms(row) -> Atoms:
    """One row as ``Atoms`` with calculator results, key-value pairs and data on it."""
    atoms = row.toatoms()
    atoms.info.update(row.key_value_pairs)
    for key, value in (row.get("data") or {}).items():
        _put(atoms, key, value)
    return atoms


def _ids(atoms: Atoms, options: AselmdbOptions) -> list[str] | None:
    """Set structure_id / parent_id from the row keys; the problems, or None when the row is
    left out by ``parent_pattern``."""
    values, messages = row_key_values(atoms, options.id_key, options.frame_key, options.parent_key)
    if messages:
        return messages
    if options.id_key:
        structure_id = values["--id-key"]
        atoms.info[STRUCTURE_ID] = (f"{structure_id}-{values['--frame-key']}"
                                    if options.frame_key else structure_id)
    parent = values.get("--parent-key")
    if parent is not None and options.parent_pattern:
        match = re.search(options.parent_pattern, parent)
        if match is None:
            return None
        parent = match.group(1) if match.re.groups else match.group(0)
    if parent is not None:
        atoms.info[PARENT_ID] = parent
    return []


def read_rows(path: str | Path, row_ids: list[int], options: AselmdbOptions, *,
              key_map: dict[str, str] | None = None,
              require_forces: bool = True) -> Iterator[tuple[int, Atoms | list[Problem] | None]]:
    """Yield ``(row id, item)`` for the rows ``row_ids`` of the database ``path``: a valid
    record (``Atoms``), its problems (each a :class:`RowProblem`), or None for a row left out
    by ``options.parent_pattern``. Rows are read one at a time (memory: one row).

    ``key_map``: record key → row key (``--key``); ``require_forces``: False accepts rows with
    an energy but no forces. Raises ValueError naming the file if it cannot be opened.
    """
    file = str(path)
    db = open_aselmdb(path)
    try:
        for row_id in row_ids:
            try:
                atoms = normalise_atoms(_row_atoms(db._get_row(row_id)), key_map)
            except Exception as err:  # noqa: BLE001 - any undecodable row is a problem, not a crash
                yield row_id, [RowProblem(file, row_id, f"cannot decode the row "
                                                        f"({type(err).__name__}: {err})")]
                continue
            messages = _ids(atoms, options)
            if messages is None:
                yield row_id, None
                continue
            atoms.info.setdefault(SOURCE, Path(path).name)
            found = validate_atoms(atoms, file=file, frame=row_id, require_forces=require_forces)
            problems = [RowProblem(file, row_id, m) for m in messages]
            problems += [RowProblem(file, row_id, p.message) for p in found]
            yield row_id, problems or atoms
    finally:
        db.close()
