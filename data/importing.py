"""Validate many structure files together and import their valid frames into a store.

This is what ``farfield data validate`` and ``farfield data import`` do; the CLI
only parses arguments and prints. Beyond per-frame validation, a structure_id that
occurs twice (in one file or across files) is a problem of its second occurrence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ase import Atoms

from farfield.data.readers import read_structures
from farfield.data.records import STRUCTURE_ID
from farfield.data.store import DatasetStore, write_store
from farfield.data.validation import Problem

__all__ = ["REJECTS_FILE", "FileReport", "ImportReport", "import_files", "validate_files"]

#: Written next to the manifest by an import that skipped invalid frames.
REJECTS_FILE = "rejects.jsonl"


@dataclass
class FileReport:
    """Validation outcome of one file; ``valid``/``frames``: records and their frame indices."""

    file: str
    n_frames: int
    problems: list[Problem]
    valid: list[Atoms] = field(default_factory=list, repr=False)
    frames: list[int] = field(default_factory=list, repr=False)

    @property
    def n_valid(self) -> int:
        return len(self.valid)

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


def _read_one(path: str | Path, format: str | None, key_map: dict[str, str] | None,
              require_labels: bool) -> FileReport:
    try:
        result = read_structures(path, format=format, key_map=key_map,
                                 require_labels=require_labels)
    except (OSError, ValueError) as err:
        message = str(err).removeprefix(f"{path}: ")
        return FileReport(str(path), 0, [Problem(str(path), None, message)])
    return FileReport(str(path), result.n_frames, result.problems, result.valid, result.frames)


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


def validate_files(paths: Iterable[str | Path], *, format: str | None = None,
                   key_map: dict[str, str] | None = None,
                   require_labels: bool = True) -> list[FileReport]:
    """Read and validate every frame of every file; one report per file, in order.

    A missing file or unknown format becomes a file-level problem rather than an
    exception, so every file is reported. See :func:`read_structures` for the args.
    """
    reports = [_read_one(path, format, key_map, require_labels) for path in paths]
    _reject_duplicates(reports)
    return reports


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_files(paths: Iterable[str | Path], out: str | Path, *, skip_invalid: bool = False,
                 label_method: str = "unspecified", format: str | None = None,
                 key_map: dict[str, str] | None = None, shard_size: int = 256,
                 overwrite: bool = False) -> ImportReport:
    """Validate ``paths`` and write their valid frames as a store at ``out``.

    Without ``skip_invalid``, any problem means nothing is written (the report's
    ``store`` is None). With it, the valid frames are written and every problem goes
    to ``out/rejects.jsonl`` (one ``{"file", "frame", "message"}`` object per line).
    Raises ValueError if no frame at all is valid; errors of write_store propagate.
    """
    reports = validate_files(paths, format=format, key_map=key_map)
    report = ImportReport(reports)
    if report.problems and not skip_invalid:
        return report
    frames = [atoms for file_report in reports for atoms in file_report.valid]
    if not frames:
        raise ValueError(f"no valid frames to import from {len(reports)} file(s)")
    inputs = [{"file": Path(r.file).name, "sha256": _sha256(r.file), "n_frames": r.n_frames,
               "n_valid": r.n_valid} for r in reports if Path(r.file).is_file()]
    provenance = {"inputs": inputs, "key_map": key_map or {}, "format": format,
                  "n_rejected_problems": len(report.problems)}
    rejects = "".join(json.dumps(problem.to_dict()) + "\n" for problem in report.problems)
    report.store = write_store(
        frames, out, label_method=label_method, shard_size=shard_size,
        sources=[Path(r.file).name for r in reports if r.n_valid], provenance=provenance,
        overwrite=overwrite, extra_files={REJECTS_FILE: rejects} if skip_invalid else None)
    return report
