"""A parsed, cleaned catalogue of CIF structures (CoRE MOF subsets or a user folder).

The catalogue is one table with a row per CIF: where it came from, whether it is
usable and, if not, why (a key of :data:`farfield.data.coremof.REJECTION_REASONS`),
and for usable ones the formula, atom count, elements, metals and formula skeleton
used to pick diverse parents. Parsing all ~24,000 CoRE MOF CIFs takes minutes, so
:func:`build_catalogue` splits them into batches parsed by Ray tasks (one CPU each)
and caches the table as parquet under ``cache_dir``, keyed by the sources and
:data:`CATALOGUE_VERSION` (for the package archives: the ``core-mof`` version; for a
folder: the names, sizes and sha256 of its CIFs).

Columns (:data:`COLUMNS`): ``source`` (``coremof-2019-ASR``, ``dir:<folder name>``),
``name`` (CIF stem), ``refcode`` (CSD refcode family for CoRE MOF, the CIF stem for a
folder; parents are named after it), ``status`` (``ok`` or
``rejected``), ``reason``, ``detail``, ``n_sites`` (rows of the atom-site loop),
``n_atoms``, ``formula`` (reduced, Hill), ``skeleton`` (formula with metals as M),
``elements`` and ``metals`` (space-separated symbols).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from farfield.data.coremof import (
    SUBSETS,
    CifEntry,
    StructureRejected,
    check_metadata,
    cif_to_atoms,
    count_atom_sites,
    formula_skeleton,
    iter_coremof_cifs,
    load_metadata,
    metals_of,
    refcode_of,
)
from farfield.data.ray_runtime import map_shards

__all__ = ["CATALOGUE_VERSION", "COLUMNS", "build_catalogue", "catalogue_rows",
           "iter_source_cifs", "source_key"]

#: Bump when parsing or cleaning rules change: old caches are then ignored.
CATALOGUE_VERSION = 2
COLUMNS = ("source", "name", "refcode", "status", "reason", "detail", "n_sites", "n_atoms",
           "formula", "skeleton", "elements", "metals")
#: CIFs per Ray task: large enough to amortise task overhead (~ms), small enough to balance.
BATCH_SIZE = 200


def _is_subset(source: str) -> bool:
    return source in SUBSETS


def source_label(source: str) -> str:
    """``"2019-ASR"`` → ``"coremof-2019-ASR"``; a folder → ``"dir:<name>"``."""
    return f"coremof-{source}" if _is_subset(source) else f"dir:{Path(source).name}"


def _folder_cifs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: not a CoRE MOF subset ({', '.join(SUBSETS)}) nor a folder of CIFs")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".cif" and p.is_file())


def source_key(source: str) -> str:
    """Content key of one source: package version for a subset, file digests for a folder."""
    if _is_subset(source):
        return f"{source}@core-mof-{version('core-mof')}"
    digest = hashlib.sha256()
    for path in _folder_cifs(Path(source)):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return f"dir:{Path(source).resolve()}@{digest.hexdigest()[:16]}"


def iter_source_cifs(source: str) -> Iterator[CifEntry]:
    """CIF texts of a subset (archive streamed once) or of every ``*.cif`` in a folder."""
    if _is_subset(source):
        yield from iter_coremof_cifs([source])
        return
    folder = Path(source)
    for path in _folder_cifs(folder):
        text = path.read_text(encoding="utf-8", errors="replace")
        yield CifEntry(f"dir:{folder.name}", path.stem, text, count_atom_sites(text))


def catalogue_rows(entries: Sequence[CifEntry], metadata: dict[str, dict[str, str]] | None = None,
                   ) -> list[dict]:
    """Parse and check each entry; one catalogue row each (never raises per structure)."""
    rows = []
    for entry in entries:
        coremof = _is_subset(entry.subset)
        row = {"source": source_label(entry.subset) if coremof else entry.subset,
               "name": entry.name, "refcode": refcode_of(entry.name) if coremof else entry.name,
               "status": "ok",
               "reason": "", "detail": "", "n_sites": entry.n_sites, "n_atoms": 0,
               "formula": "", "skeleton": "", "elements": "", "metals": ""}
        try:
            check_metadata(entry, (metadata or {}).get(entry.name, {}))
            atoms = cif_to_atoms(entry.text, entry.name)
        except StructureRejected as exc:
            row.update(status="rejected", reason=exc.reason, detail=exc.detail)
        else:
            row.update(n_atoms=len(atoms), formula=atoms.symbols.formula.reduce()[0].format("hill"),
                       skeleton=formula_skeleton(atoms),
                       elements=" ".join(sorted(set(atoms.get_chemical_symbols()))),
                       metals=" ".join(metals_of(atoms)))
        rows.append(row)
    return rows


def _batches(entries: Iterable[CifEntry], size: int) -> Iterator[list[CifEntry]]:
    batch: list[CifEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _BatchRows:
    """Body of a catalogue task: ``(source, CIF batch)`` → its rows, with the source's metadata."""

    def __init__(self, metadata: dict[str, dict]):
        self.metadata = metadata

    def __call__(self, payload: tuple[str, list[CifEntry]]) -> list[dict]:
        source, batch = payload
        return catalogue_rows(batch, self.metadata[source])


def _parse_all(sources: Sequence[str], n_workers: int, address: str | None,
               progress: bool) -> list[dict]:
    """Stream every source's CIFs in batches to Ray tasks; rows in source/archive order."""
    metadata = {s: (load_metadata(s) if _is_subset(s) else {}) for s in sources}
    batches = ((source, batch) for source in sources for batch in _batches(iter_source_cifs(source), BATCH_SIZE))
    bar = tqdm(desc="catalogue", unit="CIF", disable=not progress, smoothing=0.1)
    results: dict[int, list[dict]] = {}
    # at most 2 * n_workers + 2 batches in flight: bounds the CIF text held at once
    for position, rows in map_shards(_BatchRows(metadata), batches, n_workers=n_workers, address=address,
                                     max_in_flight=2 * n_workers + 2, max_retries=3):
        results[position] = rows
        bar.update(len(rows))
    bar.close()
    return [row for key in sorted(results) for row in results[key]]


def _cache_path(sources: Sequence[str], cache_dir: Path) -> Path:
    key = hashlib.sha256(repr((CATALOGUE_VERSION, [source_key(s) for s in sources])).encode())
    return cache_dir / f"catalogue-{key.hexdigest()[:16]}.parquet"


def default_cache_dir() -> Path:
    """``$FARFIELD_CACHE`` or ``~/.cache/farfield``."""
    return Path(os.environ.get("FARFIELD_CACHE", Path.home() / ".cache" / "farfield"))


def build_catalogue(sources: Sequence[str] = SUBSETS, *, cache_dir: str | Path | None = None,
                    n_workers: int = 2, address: str | None = None, progress: bool = True,
                    refresh: bool = False) -> pd.DataFrame:
    """The catalogue of ``sources`` (CoRE MOF subset names and/or CIF folders).

    Reads the cached parquet if one exists for exactly these sources (unless
    ``refresh``), otherwise parses with ``n_workers`` Ray CPUs (0: in this process)
    and writes the cache atomically. Rows are in source order, then archive order.
    """
    sources = list(dict.fromkeys(sources))
    if not sources:
        raise ValueError("build_catalogue: no sources given")
    cache = _cache_path(sources, Path(cache_dir) if cache_dir else default_cache_dir())
    if cache.is_file() and not refresh:
        return pd.read_parquet(cache)
    table = pd.DataFrame(_parse_all(sources, n_workers, address, progress), columns=list(COLUMNS))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, cache)
    return table
