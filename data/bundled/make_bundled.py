"""Build the bundled CoRE MOF + GFN1-xTB dataset (``coremof-small-gfn1.extxyz.xz``).

Usage (from the repository root)::

    python data/bundled/make_bundled.py --parents 48 --configs-per-parent 4 \\
        --max-atoms 90 --seed 0 --out data/bundled/coremof-small-gfn1.extxyz.xz

Per parent MOF (the smallest usable CoRE MOF 2019-ASR structures, spread over size
bins and metals, see :func:`farfield.data.coremof.pick_smallest_usable`) it writes
``c0`` = the CIF geometry, ``c1 … c{k-2}`` = Gaussian-rattled copies (σ in Å) and
``c{k-1}`` = a randomly strained cell (symmetric strain, components uniform in
±``--max-strain``, atoms scaled with the cell), each labelled with a periodic
GFN1-xTB single point (:func:`farfield.data.labelling.label_gfn_xtb`). Frames carry
the fields of :mod:`farfield.data.records` plus ``label_method``, ``coremof_entry``.

Unless ``--raw-hydrogens`` is given, X–H bonds of the CIF geometry are first set to
neutron lengths (:func:`farfield.data.coremof.normalise_hydrogens`): X-ray H positions
are ~0.1 Å short and otherwise dominate the forces. Parents whose ``c0`` has an atomic
force above ``--max-force`` (broken structures) or whose SCF fails are replaced by
spare candidates.

Extxyz stores positions, forces and charges with 8 decimals (energy and stress in
full precision): positions are quantised *before* labelling and forces/charges after,
so the file round-trips exactly; ``ase.io.read(path, ":")`` puts energy, forces,
charges and stress (Voigt 6) into ``atoms.calc.results``. A provenance JSON is
written next to the output. ``--tests-data DIR`` also writes ``mof_small.extxyz``
(smallest parent's ``c0``), ``water_dimer.extxyz`` and ``nacl_rocksalt.extxyz`` for tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import lzma
import multiprocessing as mp
import shlex
import sys
import time
import warnings
import zlib
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from farfield.data.coremof import (
    Candidate,
    Rejection,
    StructureRejected,
    normalise_hydrogens,
    pick_smallest_usable,
    validate_atoms,
)
from farfield.data.labelling import (
    check_stress_sign,
    label_gfn_xtb,
    limit_threads,
    strained,
)
from farfield.data.records import (
    CHARGES,
    ENERGY,
    FORCES,
    PARENT_ID,
    SOURCE,
    STRESS,
    STRUCTURE_ID,
)
from tqdm import tqdm

log = logging.getLogger("make_bundled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parents", type=int, default=48, help="number of parent MOFs")
    p.add_argument("--configs-per-parent", type=int, default=4, help="frames per parent (>= 2)")
    p.add_argument("--min-atoms", type=int, default=10)
    p.add_argument("--max-atoms", type=int, default=90)
    p.add_argument("--size-bins", type=int, default=8, help="atom-count bins to spread over")
    p.add_argument("--max-per-metal", type=int, default=3, help="parents per metal family")
    p.add_argument("--subsets", nargs="+", default=["2019-ASR"], help="CoRE MOF subsets")
    p.add_argument("--rattle", type=float, default=0.05, help="Gaussian σ on positions, Å")
    p.add_argument("--max-strain", type=float, default=0.02, help="max |strain component|")
    p.add_argument("--method", default="GFN1-xTB")
    p.add_argument("--max-force", type=float, default=30.0,
                   help="drop a parent if its input geometry has a force above this, eV/Å")
    p.add_argument("--raw-hydrogens", action="store_true",
                   help="keep the CIF's X-ray H positions (default: normalise X–H lengths)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--spare", type=int, default=10, help="extra candidates in case labelling fails")
    p.add_argument("--out", type=Path, default=Path("data/bundled/coremof-small-gfn1.extxyz.xz"))
    p.add_argument("--check-stress", action="store_true", help="finite-difference stress check")
    p.add_argument("--tests-data", type=Path, default=None, help="also write test frames here")
    args = p.parse_args(argv)
    if args.configs_per_parent < 2:
        p.error("--configs-per-parent must be >= 2 (input geometry + strained cell)")
    return args


def quantise(x: np.ndarray) -> np.ndarray:
    """Round to the 8 decimals extxyz writes, exactly as its reader will parse them."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([float(f"{v:.8f}") for v in x.ravel()]).reshape(x.shape)


def make_configs(
    cand: Candidate, n_configs: int, seed: int, sigma: float, max_strain: float
) -> list[Atoms]:
    """Input geometry, ``n_configs - 2`` rattled copies and one strained cell.

    The random stream depends only on ``seed`` and the CoRE MOF entry name, so a
    parent's frames do not change when other parents are added or removed.
    """
    rng = np.random.default_rng([seed, zlib.crc32(cand.name.encode())])
    base = cand.atoms.copy()
    base.info = {"coremof_entry": cand.name}
    frames = [base.copy()]
    for _ in range(n_configs - 2):
        rattled = base.copy()
        rattled.positions = base.positions + rng.normal(0.0, sigma, size=base.positions.shape)
        frames.append(rattled)
    eps = rng.uniform(-max_strain, max_strain, size=(3, 3))
    frames.append(strained(base, (eps + eps.T) / 2))
    for k, atoms in enumerate(frames):
        atoms.positions = quantise(atoms.positions)
        atoms.info.update({
            STRUCTURE_ID: f"{cand.refcode}-c{k}", PARENT_ID: cand.refcode,
            SOURCE: f"coremof-{cand.subset}",
        })
    return frames


def label_parent(task: tuple[list[Atoms], str, float]) -> tuple[list[Atoms] | None, str, str, list]:
    """Worker: label all frames of one parent.

    Returns ``(frames, "", "", seconds)`` or ``(None, reason, detail, seconds)`` with
    reason ``"label_failed"`` (tblite error, e.g. SCF not converged) or
    ``"label_outlier"`` (an atomic force above ``max_force`` eV/Å in the first frame,
    the input geometry: a broken structure, e.g. disorder the CIF checks missed).
    """
    frames, method, max_force = task
    out, seconds = [], []
    for k, atoms in enumerate(frames):
        t0 = time.perf_counter()
        try:
            labelled = label_gfn_xtb(atoms, method=method)
        except ValueError as exc:
            return None, "label_failed", str(exc), seconds
        seconds.append(time.perf_counter() - t0)
        f_max = float(np.linalg.norm(labelled.arrays[FORCES], axis=1).max())
        if k == 0 and f_max > max_force:
            detail = f"{atoms.info[STRUCTURE_ID]}: max |F| {f_max:.1f} eV/Å > {max_force}"
            return None, "label_outlier", detail, seconds
        labelled.arrays[FORCES] = quantise(labelled.arrays[FORCES])
        labelled.arrays[CHARGES] = quantise(labelled.arrays[CHARGES])
        out.append(labelled)
    return out, "", "", seconds


def write_extxyz_xz(frames: list[Atoms], path: Path) -> None:
    """Write frames as xz-compressed extended XYZ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", preset=9 | lzma.PRESET_EXTREME) as fh:
        ase.io.write(fh, frames, format="extxyz")


def _field(atoms: Atoms, key: str, per_atom: bool):
    results = atoms.calc.results if atoms.calc is not None else {}
    store = atoms.arrays if per_atom else atoms.info
    return store[key] if key in store else results.get(key)


def check_round_trip(frames: list[Atoms], path: Path) -> None:
    """Read ``path`` back with ``ase.io.read(path, ":")``; raise ValueError on any difference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        back = ase.io.read(path, ":")
    if len(back) != len(frames):
        raise ValueError(f"{path}: wrote {len(frames)} frames, read {len(back)}")
    for i, (a, b) in enumerate(zip(frames, back)):
        sid = a.info[STRUCTURE_ID]
        checks = {
            "numbers": np.array_equal(a.numbers, b.numbers),
            "positions": np.array_equal(a.positions, b.positions),
            "cell": np.array_equal(a.cell.array, b.cell.array),
            "pbc": np.array_equal(a.pbc, b.pbc),
            "ids": all(a.info[k] == b.info.get(k) for k in (STRUCTURE_ID, PARENT_ID, SOURCE)),
            ENERGY: _field(b, ENERGY, False) == a.info[ENERGY],
            FORCES: np.array_equal(_field(b, FORCES, True), a.arrays[FORCES]),
            CHARGES: np.array_equal(_field(b, CHARGES, True), a.arrays[CHARGES]),
        }
        if STRESS in a.info:
            checks[STRESS] = np.array_equal(_field(b, STRESS, False), a.info[STRESS])
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"{path}: frame {i} ({sid}) does not round-trip: {bad}")


def write_tests_data(smallest_c0: Atoms, method: str, out_dir: Path) -> list[Path]:
    """Write test frames: ``mof_small.extxyz`` (the smallest parent's ``c0``),
    ``water_dimer.extxyz`` (S22, molecular) and ``nacl_rocksalt.extxyz`` (8 atoms, a = 5.64 Å),
    all labelled with ``method``. Returns the paths written."""
    from ase.build import bulk
    from ase.collections import s22

    water = s22["Water_dimer"]
    water.info = {STRUCTURE_ID: "water-dimer-c0", PARENT_ID: "water-dimer", SOURCE: "ase-s22"}
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    nacl.info = {STRUCTURE_ID: "nacl-rocksalt-c0", PARENT_ID: "nacl-rocksalt", SOURCE: "ase-bulk"}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    frames = {"water_dimer": water, "nacl_rocksalt": nacl, "mof_small": smallest_c0}
    for name, atoms in frames.items():
        if name != "mof_small":
            atoms.positions = quantise(atoms.positions)
            labelled, _, detail, _ = label_parent(([atoms], method, float("inf")))
            if labelled is None:
                raise ValueError(f"tests data {name}: {detail}")
            atoms = labelled[0]
        path = out_dir / f"{name}.extxyz"
        ase.io.write(path, atoms, format="extxyz")
        check_round_trip([atoms], path)
        written.append(path)
    return written


def label_stats(frames: list[Atoms]) -> dict[str, float]:
    """Ranges of the labels, for a quick sanity check (eV/atom, eV/Å, e, eV/Å³)."""
    e = np.array([f.info[ENERGY] / len(f) for f in frames])
    f_norm = np.concatenate([np.linalg.norm(f.arrays[FORCES], axis=1) for f in frames])
    q = np.concatenate([f.arrays[CHARGES] for f in frames])
    stress = np.array([f.info[STRESS] for f in frames if STRESS in f.info])
    return {"energy_per_atom_min": float(e.min()), "energy_per_atom_max": float(e.max()),
            "force_norm_median": float(np.median(f_norm)), "force_norm_max": float(f_norm.max()),
            "charge_min": float(q.min()), "charge_max": float(q.max()),
            "stress_abs_max": float(np.abs(stress).max()) if len(stress) else float("nan")}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    limit_threads(1)  # before any worker (or this process) loads tblite
    t_start = time.perf_counter()
    n_pick = args.parents + args.spare
    picked, rejected = pick_smallest_usable(
        n_pick, args.subsets, max_atoms=args.max_atoms, min_atoms=args.min_atoms,
        max_per_metal=args.max_per_metal, size_bins=args.size_bins,
    )
    log.info("selected %d candidates (%d rejected) in %.1f s", len(picked), len(rejected),
             time.perf_counter() - t_start)
    h_shift: dict[str, float] = {}
    if not args.raw_hydrogens:
        usable = []
        for cand in picked:
            moved, shift = normalise_hydrogens(cand.atoms)
            try:
                validate_atoms(moved, cand.name)
            except StructureRejected as exc:
                rejected.append(Rejection(cand.subset, cand.name, exc.reason, exc.detail))
                continue
            cand.atoms, h_shift[cand.name] = moved, round(float(shift.max()), 4)
            usable.append(cand)
        picked = usable
    tasks = [
        (make_configs(c, args.configs_per_parent, args.seed, args.rattle, args.max_strain),
         args.method, args.max_force)
        for c in picked
    ]
    done: list[tuple[Candidate, list[Atoms], list[float]]] = []
    failures: list[dict[str, str]] = []
    t_label = time.perf_counter()
    pool = mp.get_context("fork").Pool(args.workers)
    with pool, tqdm(total=args.parents, unit="parent") as bar:
        for cand, (frames, reason, detail, seconds) in zip(picked, pool.imap(label_parent, tasks)):
            if frames is None:
                failures.append({"entry": cand.name, "reason": reason, "detail": detail})
                log.warning("%s (%s)", detail, reason)
                continue
            done.append((cand, frames, seconds))
            bar.update()
            if len(done) == args.parents:
                pool.terminate()
                break
    t_label = time.perf_counter() - t_label
    if len(done) < args.parents:
        raise ValueError(f"only {len(done)} of {args.parents} parents could be labelled")
    done.sort(key=lambda d: (len(d[0].atoms), d[0].name))
    frames = [f for _, fs, _ in done for f in fs]
    write_extxyz_xz(frames, args.out)
    check_round_trip(frames, args.out)

    timings = [{"structure_id": f.info[STRUCTURE_ID], "n_atoms": len(f), "seconds": round(s, 3)}
               for _, fs, ss in done for f, s in zip(fs, ss)]
    reasons = Counter(r.reason for r in rejected)
    sizes = [len(c.atoms) for c, _, _ in done]
    provenance = {
        "description": "small CoRE MOF structures + rattled/strained copies, GFN1-xTB labels",
        "command": shlex.join(["python", *sys.argv]),
        "versions": {p: version(p) for p in ("tblite", "ase", "core-mof", "numpy")},
        "method": args.method, "accuracy": 1.0, "max_iterations": 250, "seed": args.seed,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "n_parents": len(done), "n_frames": len(frames),
        "n_atoms_range": [min(sizes), max(sizes)],
        "elements": sorted({s for f in frames for s in f.get_chemical_symbols()}),
        "label_stats": label_stats(frames),
        "parents": [{"parent_id": c.refcode, "coremof_entry": c.name, "subset": c.subset,
                     "n_atoms": len(c.atoms), "formula": c.formula, "metals": list(c.metals),
                     "h_max_shift": h_shift.get(c.name, 0.0)}
                    for c, _, _ in done],
        "rejected": {"counts": dict(reasons.most_common()),
                     "first_ids": {k: [r.name for r in rejected if r.reason == k][:5]
                                   for k in reasons},
                     "labelling": failures},
        "file": {"name": args.out.name, "bytes": args.out.stat().st_size,
                 "sha256": hashlib.sha256(args.out.read_bytes()).hexdigest()},
        "timing": {"total_s": None, "labelling_wall_s": round(t_label, 1), "workers": args.workers,
                   "per_structure": timings},
    }
    if args.check_stress:
        provenance["stress_check"] = {"structure_id": frames[0].info[STRUCTURE_ID],
                                      **check_stress_sign(frames[0], args.method)}
        log.info("stress sign check: %s", provenance["stress_check"]["sign"])
    if args.tests_data is not None:
        written = write_tests_data(frames[0], args.method, args.tests_data)
        provenance["tests_data"] = [p.name for p in written]
    provenance["timing"]["total_s"] = round(time.perf_counter() - t_start, 1)
    stem = args.out.name.removesuffix(".xz").removesuffix(".extxyz")
    json_path = args.out.with_name(stem + ".json")
    json_path.write_text(json.dumps(provenance, indent=1) + "\n")
    log.info("%d frames from %d parents -> %s (%d bytes) in %.0f s", len(frames), len(done),
             args.out, args.out.stat().st_size, provenance["timing"]["total_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
