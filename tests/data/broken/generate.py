"""Regenerate the deliberately broken files in this folder (run from anywhere).

Base structures: rocksalt NaCl (ase.build.bulk, a = 5.64 Å, cubic, 8 atoms, rattled)
and H2O (ase.build.molecule). Labels are synthetic (seeded numpy RNG): only the
I/O and validation paths are tested with these files, never physics.
See README.md for what is broken where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.build import bulk, molecule

HERE = Path(__file__).parent
RNG = np.random.default_rng(20260101)


def nacl(index: int):
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.05, seed=index)
    return atoms


def water(index: int):
    atoms = molecule("H2O")
    atoms.rattle(0.01, seed=index)
    return atoms


def frame_text(atoms, *, energy=None, forces=None, charges=None, info="",
               force_columns=3, symbols=None) -> str:
    """One extxyz frame as text, values with 10 decimals."""
    n = len(atoms)
    energy = -3.4 * n + RNG.normal() if energy is None else energy
    forces = RNG.normal(scale=0.5, size=(n, force_columns)) if forces is None else forces
    props = f"species:S:1:pos:R:3:forces:R:{force_columns}"
    if charges is not None:
        props += ":charges:R:1"
    header = []
    if atoms.pbc.any():
        header.append('Lattice="' + " ".join(f"{v:.10f}" for v in atoms.cell.array.ravel()) + '"')
    header += [f"Properties={props}", f"energy={energy:.10f}"]
    header.append('pbc="' + " ".join("T" if p else "F" for p in atoms.pbc) + '"')
    if info:
        header.append(info)
    lines = [str(n), " ".join(header)]
    symbols = symbols or atoms.get_chemical_symbols()
    for i in range(n):
        values = list(atoms.positions[i]) + list(forces[i])
        if charges is not None:
            values.append(charges[i])
        lines.append(symbols[i] + " " + " ".join(f"{v:.10f}" for v in values))
    return "\n".join(lines) + "\n"


def neutral_charges(atoms):
    charges = np.where(atoms.numbers == 11, 0.8, -0.8) + RNG.normal(scale=0.01, size=len(atoms))
    return charges - charges.mean()


def write(name: str, text: str) -> None:
    (HERE / name).write_text(text)


def main() -> None:
    # frames 0-1 valid, frame 2 cut mid-way (file ends in the middle of an atom line)
    text = frame_text(nacl(0)) + frame_text(nacl(1)) + frame_text(nacl(2))
    write("truncated.extxyz", text[: text.rindex("Na ") + 12])

    # frame 1 lost its last 3 atom lines (next frame follows), frame 3 has a non-number
    cut = frame_text(nacl(11)).splitlines(keepends=True)[:-3]
    lines = frame_text(water(13)).splitlines(keepends=True)
    tokens = lines[3].split()
    tokens[2] = "0.1.2"  # y coordinate of atom 1 is not a number
    bad = "".join(lines[:3]) + " ".join(tokens) + "\n" + "".join(lines[4:])
    write("garbled.extxyz", frame_text(nacl(10)) + "".join(cut) + frame_text(nacl(12))
          + bad + frame_text(water(14)))

    forces = RNG.normal(scale=0.5, size=(8, 3))
    forces[5, 1] = np.nan
    write("nan_force.extxyz", frame_text(nacl(20)) + frame_text(nacl(21), forces=forces))

    write("wrong_force_shape.extxyz",
          frame_text(water(30)) + frame_text(water(31), force_columns=2))

    write("unknown_element.extxyz",
          frame_text(water(40)) + frame_text(water(41), symbols=["Xx", "H", "H"]))

    flat = nacl(51)
    flat.cell = [[5.64, 0, 0], [0, 5.64, 0], [5.64, 5.64, 0]]
    write("zero_volume.extxyz", frame_text(nacl(50)) + frame_text(flat))

    close = nacl(61)
    close.positions[1] = close.positions[0] + [0.1, 0.0, 0.0]
    across = nacl(62)
    across.positions[0] = [0.05, 0.0, 0.0]
    across.positions[1] = [5.64 - 0.15, 0.0, 0.0]  # 0.2 Å apart only through the boundary
    write("overlapping.extxyz", frame_text(nacl(60)) + frame_text(close) + frame_text(across))

    good, off = nacl(70), nacl(71)
    write("charge_sum.extxyz",
          frame_text(good, charges=neutral_charges(good))
          + frame_text(off, charges=neutral_charges(off) + 0.5 / 8, info="total_charge=0.0"))

    write("empty.extxyz", "")


if __name__ == "__main__":
    main()
