"""Read CoRE MOF structures from the archives shipped by the ``CoRE-MOF`` package.

The package (import name ``CoRE_MOF``) ships one ``<subset>.tar.xz`` of CIF files and
one ``<subset>.csv`` of metadata per subset (``"2014"``, ``"2019-ASR"``,
``"2019-FSR"``). Its own ``get_structure`` rescans the whole tarball on every call
(seconds each), so this module streams each tarball once and does the rest in memory.
The CSVs have no atom counts; :func:`count_atom_sites` counts the rows of the
``_atom_site_`` loop instead, which equals the number of atoms for the P1 files that
make up almost all of CoRE MOF (a lower bound otherwise, so it is a safe pre-filter).

Structures come out as ASE ``Atoms`` (positions in Å, cell in Å, ``pbc`` all True)
and are checked by :func:`validate_atoms`. A structure that cannot be used raises
:class:`StructureRejected` (a ``ValueError``) whose ``reason`` is one of
:data:`REJECTION_REASONS`; :mod:`farfield.data.catalogue` records them per CIF.

Entry points: :func:`iter_coremof_cifs` (stream CIF texts), :func:`cif_to_atoms` (parse
and check one) and :func:`normalise_hydrogens` (X-ray → neutron X–H bond lengths); picking
diverse parents is :mod:`farfield.data.parent_selection`.
"""

from __future__ import annotations

import io
import re
import tarfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.io.cif import parse_cif
from ase.neighborlist import neighbor_list
from vesin import NeighborList as VesinNeighborList

from .cif_p1 import UnknownElement, read_p1_cif
from .records import MIN_INTERATOMIC_DISTANCE

SUBSETS = ("2014", "2019-ASR", "2019-FSR")
#: Heaviest element tblite's GFN1/GFN2 parametrisations cover (Rn).
MAX_ATOMIC_NUMBER = 86
#: Elements not counted as metals when describing a framework's metal content.
NON_METALS = frozenset([
    "H", "He", "B", "C", "N", "O", "F", "Ne", "Si", "P", "S", "Cl", "Ar", "Ge", "As", "Se",
    "Br", "Kr", "Sb", "Te", "I", "Xe", "At", "Rn",
])
#: Pairs closer than this fraction of the sum of covalent radii are rejected: catches
#: overlapping disorder sites (e.g. V–V at 0.60 Å) that pass the 0.5 Å test, while
#: X-ray hydrogen positions (X–H 0.82–0.95 Å, ratio >= 0.75) are kept.
SHORT_CONTACT_FACTOR = 0.7
#: Neutron-diffraction X–H bond lengths (Å; Allen & Bruno, Acta Cryst. B 66, 380 (2010)).
#: X-ray H positions in CIFs are ~0.1 Å too short, which GFN-xTB turns into forces of
#: tens of eV/Å; :func:`normalise_hydrogens` moves H out to these lengths.
XH_BOND_LENGTHS = {"C": 1.083, "N": 1.009, "O": 0.983}
#: La–Lu, grouped as one family ("Ln") when spreading a selection over metals.
LANTHANIDES = frozenset([
    "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu",
])

REJECTION_REASONS = {
    "unreadable": "the CIF could not be parsed into atoms",
    "unknown_element": "an atom-site type symbol is not a chemical element",
    "partial_occupancy": "some site has occupancy < 1 (disorder)",
    "disorder": "disorder groups in the CIF, or CoRE MOF's DISORDER flag is set",
    "charged_framework": "CoRE MOF marks the framework as charged (counter-ions removed)",
    "no_cell": "no complete three-dimensional unit cell",
    "heavy_element": f"an element with Z > {MAX_ATOMIC_NUMBER} (not covered by GFN-xTB)",
    "no_hydrogen": "no hydrogen at all (hydrogens probably missing)",
    "overlapping_atoms": f"two atoms closer than {MIN_INTERATOMIC_DISTANCE} Å",
    "short_contact": "two atoms closer than SHORT_CONTACT_FACTOR × sum of covalent radii",
    "atom_count": "atom count outside the requested range once symmetry is expanded",
    "duplicate_refcode": "same CSD refcode as an already selected structure",
    "duplicate_formula": "same reduced formula as an already selected structure",
    "duplicate_skeleton": "same formula up to metal substitution (isostructural series)",
}


class StructureRejected(ValueError):
    """A structure is unusable; ``reason`` is a key of :data:`REJECTION_REASONS`."""

    def __init__(self, entry: str, reason: str, detail: str = ""):
        if reason not in REJECTION_REASONS:
            raise KeyError(f"unknown rejection reason {reason!r}")
        self.entry, self.reason, self.detail = entry, reason, detail
        super().__init__(f"{entry}: rejected ({reason}): {detail or REJECTION_REASONS[reason]}")


@dataclass(frozen=True)
class CifEntry:
    """One CIF file from an archive: ``name`` is the CoRE MOF entry (file stem)."""

    subset: str
    name: str
    text: str
    n_sites: int  # rows in the _atom_site_ loop (= n_atoms for P1 files)


def archive_path(subset: str, suffix: str = ".tar.xz"):
    """Path (``importlib`` Traversable) of a subset's archive or CSV in ``CoRE_MOF``."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown CoRE MOF subset {subset!r}; expected one of {SUBSETS}")
    return resources.files("CoRE_MOF") / "data" / f"{subset}{suffix}"


def refcode_of(name: str) -> str:
    """CSD refcode family of a CoRE MOF entry: ``"ABAVIJ01_clean"`` → ``"ABAVIJ"``.

    Falls back to the stem before the first ``_`` when no 6-letter refcode is found
    (e.g. entries named after a DOI).
    """
    for token in name.split("_"):
        match = re.fullmatch(r"([A-Z]{6})(\d{0,2})(?:\d{5,})?", token)
        if match:
            return match.group(1)
    return name.split("_")[0]


def load_metadata(subset: str) -> dict[str, dict[str, str]]:
    """The subset's CSV as ``{entry name: {column: value}}`` (all strings).

    2019 subsets have columns such as ``All_Metals``, ``Extension``, ``DISORDER``;
    the 2014 CSV only lists file names.
    """
    import pandas as pd

    with archive_path(subset, ".csv").open("rb") as fh:
        table = pd.read_csv(fh, dtype=str, keep_default_na=False, low_memory=False)
    table = table.loc[:, [c for c in table.columns if c and not c.startswith("Unnamed")]]
    return {row["filename"]: row for row in table.to_dict("records")}


def count_atom_sites(text: str) -> int:
    """Number of data rows in the CIF loop that holds ``_atom_site_fract_x``."""
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line.lower() != "loop_":
            continue
        j = i + 1
        while j < len(lines) and lines[j].startswith("_"):
            j += 1
        if {"_atom_site_fract_x", "_atom_site_cartn_x"} & {t.lower() for t in lines[i + 1 : j]}:
            n = 0
            for row in lines[j:]:
                if row.lower().startswith(("loop_", "data_")) or row.startswith("_"):
                    break
                n += bool(row) and not row.startswith("#")
            return n
    return 0


def iter_coremof_cifs(
    subsets: Iterable[str] = ("2019-ASR",), max_sites: int | None = None
) -> Iterator[CifEntry]:
    """Stream CIF files from the archives, each tarball opened and read once.

    ``max_sites`` skips files whose atom-site loop has more rows (pre-filter).
    Yields entries in archive order.
    """
    for subset in subsets:
        with archive_path(subset).open("rb") as raw, tarfile.open(fileobj=raw, mode="r:xz") as tar:
            for member in tar:
                stem = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not stem.endswith(".cif") or stem.startswith("."):
                    continue
                text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                n_sites = count_atom_sites(text)
                if max_sites is None or n_sites <= max_sites:
                    yield CifEntry(subset, stem[: -len(".cif")], text, n_sites)


_SYMOP_TAGS = ("_space_group_symop_operation_xyz", "_space_group_symop.operation_xyz",
               "_symmetry_equiv_pos_as_xyz")


def _block_to_atoms(block) -> Atoms:
    """Atoms of a CIF block; P1 blocks skip ASE's (slow, O(N²)) symmetry expansion."""
    ops = next((block.get(t) for t in _SYMOP_TAGS if block.get(t) is not None), None)
    ops = [ops] if isinstance(ops, str) else ops
    if ops and all(re.sub(r"\s", "", op).lower() == "x,y,z" for op in ops):
        atoms = block.get_unsymmetrized_structure()
        atoms.pbc = True
        atoms.wrap()
        return atoms
    return block.get_atoms(fractional_occupancies=False)


def _tag_values(block, tag: str) -> list[str]:
    """A loop column as strings, CIF's unknown/inapplicable markers (``?``, ``.``) dropped."""
    values = block.get(tag)
    values = [] if values is None else [values] if isinstance(values, (str, int, float)) else values
    return [str(v) for v in values if str(v) not in ("?", ".")]


def cif_to_atoms(text: str, name: str) -> Atoms:
    """Parse one CIF (text) into periodic ``Atoms``; raise :class:`StructureRejected`.

    Plain P1 files go through the fast reader :func:`farfield.data.cif_p1.read_p1_cif`;
    anything else through ASE (symmetry expansion included). Partial occupancy and
    disorder groups are checked on the raw CIF columns, then :func:`validate_atoms` runs.
    """
    try:
        fast = read_p1_cif(text)
    except UnknownElement as exc:
        raise StructureRejected(name, "unknown_element", exc.symbol) from exc
    if fast is not None:
        if not fast.has_cell:
            raise StructureRejected(name, "no_cell", "missing _cell_length_* tags")
        if fast.occupancy is not None and fast.occupancy.min() < 1.0 - 1e-6:
            raise StructureRejected(
                name, "partial_occupancy", f"min occupancy {fast.occupancy.min():g}")
        if fast.disorder_groups:
            raise StructureRejected(name, "disorder",
                                    f"disorder groups {sorted(fast.disorder_groups)}")
        atoms = fast.atoms
    else:
        atoms = _ase_cif_to_atoms(text, name)
    atoms.pbc = True
    validate_atoms(atoms, name)
    return atoms


def _ase_cif_to_atoms(text: str, name: str) -> Atoms:
    """ASE's full CIF reader with the occupancy/disorder/cell checks (slow path)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = [b for b in parse_cif(io.BytesIO(text.encode())) if b.has_structure()]
            if len(blocks) != 1:
                raise StructureRejected(name, "unreadable", f"{len(blocks)} structure blocks")
            block = blocks[0]
            if not {"_cell_length_a", "_cell_length_b", "_cell_length_c"} <= set(block):
                raise StructureRejected(name, "no_cell", "missing _cell_length_* tags")
            occupancy = [float(re.sub(r"\(.*\)", "", v))
                         for v in _tag_values(block, "_atom_site_occupancy")]
            if occupancy and min(occupancy) < 1.0 - 1e-6:
                raise StructureRejected(
                    name, "partial_occupancy", f"min occupancy {min(occupancy):g}"
                )
            groups = set(_tag_values(block, "_atom_site_disorder_group")) - {"0"}
            if groups:
                raise StructureRejected(name, "disorder", f"disorder groups {sorted(groups)}")
            return _block_to_atoms(block)
    except StructureRejected:
        raise
    except Exception as exc:  # ASE raises many types for malformed CIFs
        raise StructureRejected(name, "unreadable", f"{type(exc).__name__}: {exc}") from exc


def _pairs_within(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half list of atom pairs closer than ``cutoff`` Å (vesin): i, j, distance."""
    i, j, d = VesinNeighborList(cutoff=cutoff, full_list=False).compute(
        points=atoms.positions, box=atoms.cell.array, periodic=True, quantities="ijd")
    return np.asarray(i), np.asarray(j), np.asarray(d)


def validate_atoms(atoms: Atoms, name: str) -> None:
    """Raise :class:`StructureRejected` unless ``atoms`` is a usable periodic MOF cell."""
    if atoms.cell.rank < 3 or atoms.cell.volume < 1.0:
        raise StructureRejected(name, "no_cell", f"cell rank {atoms.cell.rank}")
    symbols = atoms.get_chemical_symbols()
    heavy = sorted({s for s, z in zip(symbols, atoms.numbers) if z > MAX_ATOMIC_NUMBER})
    if heavy:
        raise StructureRejected(name, "heavy_element", ",".join(heavy))
    if 1 not in atoms.numbers:
        raise StructureRejected(name, "no_hydrogen", atoms.get_chemical_formula())
    if len(atoms) > 1:
        radii = covalent_radii[atoms.numbers]
        i, j, d = _pairs_within(atoms, max(MIN_INTERATOMIC_DISTANCE,
                                           2 * SHORT_CONTACT_FACTOR * radii.max()))
        close = d < MIN_INTERATOMIC_DISTANCE
        if close.any():
            k = np.flatnonzero(close)[np.argmin(d[close])]
            detail = f"atoms {min(i[k], j[k])},{max(i[k], j[k])} at {d[k]:.3f} Å"
            raise StructureRejected(name, "overlapping_atoms", detail)
        short = d < SHORT_CONTACT_FACTOR * (radii[i] + radii[j])
        if short.any():
            k = np.flatnonzero(short)[np.argmin(d[short])]
            a, b = sorted((int(i[k]), int(j[k])))
            pair = f"{symbols[a]}{a}–{symbols[b]}{b}"
            raise StructureRejected(name, "short_contact", f"{pair} at {d[k]:.3f} Å")


def normalise_hydrogens(
    atoms: Atoms, lengths: dict[str, float] = XH_BOND_LENGTHS, search: float = 1.4
) -> tuple[Atoms, np.ndarray]:
    """Move each H along the bond to its nearest non-H atom to the standard X–H length.

    Only H whose nearest non-H neighbour within ``search`` Å is an element in ``lengths``
    moves (others are left alone). Periodic images are respected. Returns the new
    ``Atoms`` (a copy) and the displacement of every atom, Å, shape (n_atoms,).
    """
    out = atoms.copy()
    i, j, vec = neighbor_list("ijD", atoms, search)  # vec = r_j - r_i (image-aware)
    keep = (atoms.numbers[i] == 1) & (atoms.numbers[j] != 1)
    i, j, vec = i[keep], j[keep], vec[keep]
    dist = np.linalg.norm(vec, axis=1)
    for h in np.unique(i):
        k = np.flatnonzero(i == h)[np.argmin(dist[i == h])]
        length = lengths.get(atoms[j[k]].symbol)
        if length is not None:
            out.positions[h] = atoms.positions[h] + vec[k] * (1.0 - length / dist[k])
    return out, np.linalg.norm(out.positions - atoms.positions, axis=1)


def metals_of(atoms: Atoms) -> tuple[str, ...]:
    """Sorted tuple of the metal (and metalloid) element symbols in ``atoms``."""
    return tuple(sorted(set(atoms.get_chemical_symbols()) - NON_METALS))


def formula_skeleton(atoms: Atoms) -> str:
    """Reduced formula with every metal counted as ``M``: ``C5HCoO4`` → ``C5HMO4``."""
    counts = Counter("M" if s not in NON_METALS else s for s in atoms.get_chemical_symbols())
    divisor = np.gcd.reduce(list(counts.values()))
    return "".join(
        f"{el}{n // divisor if n != divisor else ''}" for el, n in sorted(counts.items())
    )


def metal_family(metals: tuple[str, ...]) -> tuple[str, ...]:
    """``metals`` with every lanthanide replaced by ``"Ln"`` (isostructural Ln series)."""
    return tuple(sorted({"Ln" if m in LANTHANIDES else m for m in metals}))


def check_metadata(entry: CifEntry, row: dict[str, str]) -> None:
    """Raise :class:`StructureRejected` if CoRE MOF's CSV flags the entry as unusable."""
    if row.get("DISORDER", "").strip().upper() == "DISORDER":
        raise StructureRejected(entry.name, "disorder", "CoRE MOF DISORDER flag")
    if row.get("Extension", "").strip().lower() == "charged":
        raise StructureRejected(entry.name, "charged_framework")
