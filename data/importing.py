"""Validate many structure files together and import their valid frames into a store.

This is what ``farfield data validate`` and ``farfield data import`` do; the CLI
only parses arguments and prints. Beyond per-frame validation, a structure_id that
occurs twice (in one file or across files) is a problem of its second occurrence.

Formats: the file formats of :mod:`farfield.data.readers` (``extxyz``, ``db``,
``cif``) and two dataset layouts (:mod:`farfield.data.importers`):

* ``qmof``: one directory of CIFs + a table (``options=QmofOptions(table=...)``);
  energies only, so forces are not required;
* ``odac``: ASE SQLite databases with id/parent row keys (``options=OdacOptions()``).

The forces rule: energy is always required; forces are required unless
``require_forces=False`` (default: required, except for ``qmof``). The choice is
recorded in the store's manifest (``forces_required``) and provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ase import Atoms

from tqdm import tqdm

from farfield.data.importers.aselmdb import (
    AselmdbOptions,
    RowProblem,
    check_key_map,
    count_rows,
    list_aselmdb,
    read_rows,
)
from farfield.data.importers.odac import OdacOptions, read_odac
from farfield.data.importers.qmof import QmofOptions, read_qmof
from farfield.data.readers import FORMATS, ReadResult, read_structures
from farfield.data.records import PARENT_ID, STRUCTURE_ID
from farfield.data.store import DatasetStore, write_store
from farfield.data.validation import Problem

__all__ = ["IMPORT_FORMATS", "REJECTS_FILE", "FileReport", "file_sha256", "ImportReport", "OdacOptions",
           "QmofOptions", "VALIDATE_FORMATS", "import_files", "validate_files"]

#: Written next to the manifest by an import that skipped invalid frames.
REJECTS_FILE = "rejects.jsonl"
#: ``format=`` values of validate_files / import_files.
IMPORT_FORMATS = (*FORMATS, "qmof", "odac")
#: ``format=`` values of validate_files only (``aselmdb`` imports through
#: :func:`farfield.data.aselmdb_import.import_aselmdb`).
VALIDATE_FORMATS = (*IMPORT_FORMATS, "aselmdb")


@dataclass
class FileReport:
    """Validation outcome of one file; ``valid``/``frames``: records and their frame indices
    (``valid`` stays empty where a validation keeps no records: ``format="aselmdb"``, whose
    ``frames`` are the valid row ids); ``notes``: facts worth printing that are not problems
    (e.g. table rows without a CIF)."""

    file: str
    n_frames: int
    problems: list[Problem]
    valid: list[Atoms] = field(default_factory=list, repr=False)
    frames: list[int] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def n_valid(self) -> int:
        return len(self.frames)

    @property
    def n_invalid(self) -> int:
        """Frames with at least one problem (file-level problems count no frame)."""
        return len({p.frame for p in self.problems if p.frame is not None})


@dataclass
class ImportReport:
    """Outcome of :func:`import_files`; ``store`` is None when nothing was written."""

    files: list[FileReport]
    store: DatasetStore | None = None

    @property
    def problems(self) -> list[Problem]:
        return [problem for report in self.files for problem in report.problems]

    @property
    def n_valid(self) -> int:
        return sum(report.n_valid for report in self.files)


def _report(file: str, result: ReadResult) -> FileReport:
    return FileReport(file, result.n_frames, result.problems, result.valid, result.frames)


def _file_error(path: str | Path, err: Exception) -> FileReport:
    message = str(err).removeprefix(f"{path}: ")
    return FileReport(str(path), 0, [Problem(str(path), None, message)])


def _read_one(path: str | Path, format: str | None, key_map: dict[str, str] | None,
              require_labels: bool, require_forces: bool | None,
              options: OdacOptions | None) -> FileReport:
    try:
        if format == "odac":
            forces = True if require_forces is None else require_forces
            return _report(str(path), read_odac(path, options, key_map=key_map,
                                                require_forces=forces))
        return _report(str(path), read_structures(path, format=format, key_map=key_map,
                                                  require_labels=require_labels,
                                                  require_forces=require_forces))
    except (OSError, ValueError) as err:
        return _file_error(path, err)


@dataclass
class _Read:
    """Reports of one validation, plus what a store built from them should record."""

    reports: list[FileReport]
    provenance: dict
    sources: list[str] | None = None


def _read_qmof(paths: list[str | Path], options: QmofOptions) -> _Read:
    if len(paths) != 1:
        raise ValueError(f"--format qmof reads one directory of CIFs, got {len(paths)} paths")
    (directory,) = paths
    read = read_qmof(directory, options)
    table = read.table
    notes = []
    if read.rows_without_cif:
        shown = ", ".join(read.rows_without_cif[:3])
        notes.append(f"{len(read.rows_without_cif)} of {table.n_rows} row(s) have no CIF in "
                     f"{directory} (e.g. {shown}); they are not imported")
    reports = [FileReport(table.file, 0, list(table.problems), notes=notes)]
    reports += [_report(file, result) for file, result in read.files]
    provenance = {"qmof": {
        "directory": Path(directory).name, "n_cifs": len(read.files),
        "cifs_sha256": read.cifs_sha256,
        "table": {"file": Path(table.file).name, "sha256": file_sha256(table.file),
                  "n_rows": table.n_rows, "n_rows_without_cif": len(read.rows_without_cif)},
        "columns": {"id": options.id_column, "energy": options.energy_column,
                    "parent": options.parent_column, "charges": options.charges_column},
        "charges": options.charges, "charges_from": options.charges_from,
    }}
    return _Read(reports, provenance, sources=[Path(directory).name, Path(table.file).name])


def _read(paths: Iterable[str | Path], format: str | None, key_map: dict[str, str] | None,
          require_labels: bool, require_forces: bool | None,
          options: QmofOptions | OdacOptions | None) -> _Read:
    paths = list(paths)
    if format is not None and format not in IMPORT_FORMATS:
        raise ValueError(f"format={format!r} is not supported; choose one of "
                         f"{', '.join(IMPORT_FORMATS)}")
    expected = {"qmof": QmofOptions, "odac": OdacOptions}.get(format)
    if options is not None and not isinstance(options, expected or ()):
        raise ValueError(f"options={type(options).__name__} does not fit format={format!r}")
    if format == "qmof":
        if options is None:
            raise ValueError("--format qmof needs the table of energies (--table FILE)")
        if require_forces:
            raise ValueError("QMOF-style data has no forces: require_forces must be False/None")
        if key_map:
            raise ValueError("--key does not apply to --format qmof; name table columns with "
                             "--id-column / --energy-column / --charges-column")
        read = _read_qmof(paths, options)
    else:
        clash = sorted({STRUCTURE_ID, PARENT_ID} & set(key_map or {}))
        if format == "odac" and clash:
            raise ValueError(f"--key {clash[0]}=...: with --format odac the ids come from "
                             f"--id-key / --parent-key / --frame-key")
        reports = [_read_one(path, format, key_map, require_labels, require_forces, options)
                   for path in paths]
        odac = {"odac": asdict(options or OdacOptions())} if format == "odac" else {}
        read = _Read(reports, odac)
    _reject_duplicates(read.reports)
    return read


def _reject_duplicates(reports: list[FileReport]) -> None:
    """Move second and later occurrences of a structure_id from valid to problems."""
    first: dict[str, tuple[str, int]] = {}
    for report in reports:
        keep_atoms, keep_frames = [], []
        for atoms, frame in zip(report.valid, report.frames):
            structure_id = atoms.info[STRUCTURE_ID]
            if structure_id in first:
                file, other = first[structure_id]
                report.problems.append(Problem(report.file, frame, (
                    f"duplicate structure_id {structure_id!r} (first seen in {file} frame {other})")))
                continue
            first[structure_id] = (report.file, frame)
            keep_atoms.append(atoms)
            keep_frames.append(frame)
        report.valid, report.frames = keep_atoms, keep_frames
        report.problems.sort(key=lambda p: (-1 if p.frame is None else p.frame))


def _validate_aselmdb(paths: list[str | Path], key_map: dict[str, str] | None,
                      require_forces: bool | None, options: AselmdbOptions | None,
                      progress: bool) -> list[FileReport]:
    """``format="aselmdb"``: every row of every ``.aselmdb`` file (or folder of them), read
    one at a time and not kept (memory: one row and the ids seen); a row whose structure_id
    was seen before is a problem of that row, as in the import."""
    check_key_map(key_map or {})
    options = options or AselmdbOptions()
    files = list_aselmdb(paths)
    rows, reports = {}, {}
    for file in files:
        try:
            rows[file] = count_rows(file)
        except ValueError as err:
            reports[file] = _file_error(file, err)
    first: dict[str, tuple[str, int]] = {}
    bar = tqdm(total=sum(map(len, rows.values())), unit="row", disable=not progress,
               desc="validating .aselmdb", smoothing=0.05)
    try:
        for file, row_ids in rows.items():
            report = reports[file] = FileReport(str(file), len(row_ids), [])
            left_out = 0
            for row_id, item in read_rows(file, row_ids, options, key_map=key_map,
                                          require_forces=True if require_forces is None else require_forces):
                bar.update(1)
                if item is None:
                    left_out += 1
                elif isinstance(item, list):
                    report.problems += item
                elif (seen := first.setdefault(item.info[STRUCTURE_ID], (str(file), row_id))) != (str(file), row_id):
                    report.problems.append(RowProblem.duplicate(str(file), row_id, item.info[STRUCTURE_ID], *seen))
                else:
                    report.frames.append(row_id)
            if left_out:
                report.notes.append(f"{left_out} of {len(row_ids)} row(s) left out by --parent-pattern")
    finally:
        bar.close()
    return [reports[file] for file in files]


def validate_files(paths: Iterable[str | Path], *, format: str | None = None,
                   key_map: dict[str, str] | None = None, require_labels: bool = True,
                   require_forces: bool | None = None,
                   options: QmofOptions | OdacOptions | AselmdbOptions | None = None,
                   progress: bool = False) -> list[FileReport]:
    """Read and validate every frame of every file; one report per file, in order.

    A missing file or a suffix of unknown format becomes a file-level problem rather
    than an exception, so every file is reported; an unsupported ``format=`` raises
    ValueError. See :func:`read_structures` for the args.
    ``format="qmof"``: ``paths`` is one directory, ``options`` a QmofOptions; the
    first report is the table's. ``format="odac"``: ``options`` an OdacOptions
    (default keys sid / mof_id). ``require_forces``: None means required, except
    for qmof. Raises ValueError for arguments that do not fit together, and for a
    QMOF directory or table that cannot be used at all. ``format="aselmdb"``: ``paths`` are
    ``.aselmdb`` files or folders of them, ``options`` an AselmdbOptions; records are not kept
    (``valid`` empty, ``frames`` the valid row ids); ``progress`` shows a bar of rows read.
    """
    if format == "aselmdb":
        if options is not None and not isinstance(options, AselmdbOptions):
            raise ValueError(f"options={type(options).__name__} does not fit format='aselmdb'")
        return _validate_aselmdb(list(paths), key_map, require_forces, options, progress)
    return _read(paths, format, key_map, require_labels, require_forces, options).reports


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks (input files recorded in manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_files(paths: Iterable[str | Path], out: str | Path, *, skip_invalid: bool = False,
                 label_method: str = "unspecified", format: str | None = None,
                 key_map: dict[str, str] | None = None, shard_size: int = 256,
                 overwrite: bool = False, require_forces: bool | None = None,
                 options: QmofOptions | OdacOptions | None = None) -> ImportReport:
    """Validate ``paths`` and write their valid frames as a store at ``out``.

    Without ``skip_invalid``, any problem means nothing is written (the report's
    ``store`` is None). With it, the valid frames are written and every problem goes
    to ``out/rejects.jsonl`` (one ``{"file", "frame", "message"}`` object per line).
    ``format``/``options``/``require_forces``: see :func:`validate_files`; the
    provenance records them with the column/key maps and input checksums.
    Raises ValueError if no frame at all is valid; errors of write_store propagate.
    """
    read = _read(paths, format, key_map, True, require_forces, options)
    reports = read.reports
    report = ImportReport(reports)
    if report.problems and not skip_invalid:
        return report
    frames = [atoms for file_report in reports for atoms in file_report.valid]
    if not frames:
        raise ValueError(f"no valid frames to import from {len(reports)} file(s)")
    forces_required = format != "qmof" if require_forces is None else require_forces
    inputs = [] if format == "qmof" else [
        {"file": Path(r.file).name, "sha256": file_sha256(r.file), "n_frames": r.n_frames,
         "n_valid": r.n_valid} for r in reports if Path(r.file).is_file()]
    provenance = {"inputs": inputs, "key_map": key_map or {}, "format": format,
                  "forces_required": forces_required,
                  "n_rejected_problems": len(report.problems), **read.provenance}
    rejects = "".join(json.dumps(problem.to_dict()) + "\n" for problem in report.problems)
    sources = read.sources or [Path(r.file).name for r in reports if r.n_valid]
    report.store = write_store(
        frames, out, label_method=label_method, shard_size=shard_size, sources=sources,
        provenance=provenance, overwrite=overwrite, require_forces=forces_required,
        extra_files={REJECTS_FILE: rejects} if skip_invalid else None)
    return report
