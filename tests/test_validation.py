"""Per-frame validation, readers on deliberately broken files, and `farfield data validate`."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
import typer
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

from farfield.data.readers import read_structures
from farfield.data.validation import Problem, validate_atoms
from farfield.orchestrator.cli.data import data_app

BROKEN = Path(__file__).parent / "data" / "broken"


def labelled_nacl(seed: int = 0) -> Atoms:
    """Rattled cubic NaCl (8 atoms) with synthetic energy, forces and neutral charges."""
    rng = np.random.default_rng(seed)
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.05, seed=seed)
    atoms.info["energy"] = -27.0 + rng.normal()
    atoms.arrays["forces"] = rng.normal(scale=0.5, size=(8, 3))
    charges = np.where(atoms.numbers == 11, 0.8, -0.8) + rng.normal(scale=0.01, size=8)
    atoms.arrays["charges"] = charges - charges.mean()
    return atoms


def messages(atoms: Atoms) -> list[str]:
    return [p.message for p in validate_atoms(atoms, file="x.extxyz", frame=3)]


# --- validate_atoms ---------------------------------------------------------------


def test_valid_record_has_no_problems_and_gets_default_ids():
    atoms = labelled_nacl()
    assert validate_atoms(atoms, file="runs/mof-a.extxyz.gz", frame=3) == []
    assert atoms.info["structure_id"] == "mof-a-3"
    assert atoms.info["parent_id"] == "mof-a-3"
    assert atoms.info["total_charge"] == 0.0


def test_problem_str_names_file_and_frame():
    assert str(Problem("a/b.extxyz", 3, "forces contain NaN (atom 5)")) == \
        "a/b.extxyz: frame 3: forces contain NaN (atom 5)"
    assert str(Problem("a/b.extxyz", None, "file is empty")) == "a/b.extxyz: file is empty"


def _set(key, value):
    def mutate(atoms):
        if key in ("forces", "charges", "positions") and np.ndim(value) and len(value) == len(atoms):
            atoms.arrays[key] = np.asarray(value, dtype=float)
        else:
            atoms.arrays.pop(key, None)
            atoms.info[key] = value
    return mutate


def _drop(key):
    return lambda atoms: (atoms.info.pop(key, None), atoms.arrays.pop(key, None))


def _set_number(atoms):
    atoms.numbers[2] = 0


def _flat_cell(atoms):
    atoms.cell = [[5.64, 0, 0], [0, 5.64, 0], [0, 0, 0]]


def _overlap(atoms):
    atoms.positions[4] = atoms.positions[2] + [0.0, 0.3, 0.0]


def _inf_position(atoms):
    atoms.positions[6, 2] = np.inf


@pytest.mark.parametrize(("mutate", "expected"), [
    (_drop("energy"), "energy missing"),
    (_set("energy", np.nan), "energy is nan"),
    (_set("energy", "abc"), "expected a real number"),
    (_drop("forces"), "forces missing"),
    (_set("forces", np.zeros((8, 2))), r"forces have shape (8, 2), expected (8, 3)"),
    (_set("forces", np.zeros((7, 3))), r"forces have shape (7, 3), expected (8, 3)"),
    (_set("forces", np.where(np.eye(8, 3) > 0, np.inf, 0.0)), "forces contain inf (atom 0)"),
    (_inf_position, "positions contain inf (atom 6)"),
    (_set_number, "unknown element: atomic number 0 at atom 2"),
    (_flat_cell, "cell is degenerate: volume 0"),
    (_overlap, "overlapping atoms: atoms 2 and 4 are 0.300 Å apart"),
    (_set("charges", np.full(8, 0.1)), "charges sum to 0.8 e but total_charge is 0 e"),
    (_set("charges", np.zeros(5)), "charges have shape (5,), expected (8,)"),
    (_set("stress", np.zeros(4)), "stress has shape (4,)"),
    (_set("stress", np.array([0, 0, np.nan, 0, 0, 0])), "stress contains NaN"),
])
def test_each_check_reports_its_problem(mutate, expected):
    atoms = labelled_nacl()
    mutate(atoms)
    found = messages(atoms)
    assert any(expected in m for m in found), found


def test_total_charge_is_respected_and_3x3_stress_accepted():
    atoms = labelled_nacl()
    atoms.arrays["charges"] = atoms.arrays["charges"] + 1.0 / 8
    atoms.info["total_charge"] = 1.0
    atoms.info["stress"] = np.eye(3) * 0.01
    assert messages(atoms) == []


def test_molecule_without_cell_is_valid_and_tiny_periodic_cell_overlaps_itself():
    water = molecule("H2O")
    water.info["energy"] = -14.0
    water.arrays["forces"] = np.zeros((3, 3))
    assert messages(water) == []
    single = Atoms("Ar", cell=np.eye(3) * 0.4, pbc=True)
    single.info["energy"] = -1.0
    single.arrays["forces"] = np.zeros((1, 3))
    assert any("atom 0 and its own periodic image" in m for m in messages(single))


def test_unlabelled_structures_pass_when_labels_not_required():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    assert validate_atoms(atoms, file="a.cif", frame=0, require_labels=False) == []
    assert validate_atoms(atoms, file="a.cif", frame=0) != []


# --- physically absurd structures (farfield.data.plausibility) -----------------------

MOF = Path(__file__).parent / "data" / "mof_small.extxyz"


def labelled_mof() -> Atoms:
    """The 13-atom CoRE MOF fixture (Er, GFN1-xTB labels) as a normalised record."""
    (atoms,) = read_structures(MOF).valid
    return atoms


def _scaled(factor):
    """Positions and cell multiplied by ``factor``: what a file in other length units looks like."""
    def mutate(atoms):
        atoms.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return mutate


def _scale(key, factor):
    def mutate(atoms):
        if key in atoms.arrays:
            atoms.arrays[key] = atoms.arrays[key] * factor
        else:
            atoms.info[key] = np.asarray(atoms.info[key]) * factor
    return mutate


def _force_on_atom(atoms):
    atoms.arrays["forces"][5] = [2000.0, 0.0, 0.0]


@pytest.mark.parametrize(("mutate", "expected"), [
    (_scaled(1.0 / 0.529177), "atoms are not bonded: the median atom"),  # Bohr read as Å
    (_scaled(100.0), "cell too large for its atoms"),  # pm read as Å
    (_scaled(100.0), "atoms are not bonded"),
    (_scaled(0.1), "cell too small for its atoms"),  # nm read as Å
    (_scale("energy", 1000.0), "is beyond any total energy of these 13 atoms"),  # meV
    (_scale("forces", 1000.0), "eV/Å, which no physical structure reaches"),  # meV/Å
    (_force_on_atom, "force on atom 5 is 2000 eV/Å"),
    (_set("stress", np.array([50.0, 50.0, 50.0, 0.0, 0.0, 0.0])), "is the stress in kBar or GPa"),
    (_scale("charges", 20.0), "beyond ±10 e"),
])
def test_physically_absurd_records_are_rejected_with_one_line(mutate, expected):
    atoms = labelled_mof()
    assert messages(atoms) == []
    mutate(atoms)
    found = messages(atoms)
    assert any(expected in m for m in found), found
    assert all("\n" not in m for m in found)


def test_bohr_message_gives_the_typical_bond_ratio_and_an_example():
    atoms = labelled_mof()
    _scaled(1.0 / 0.529177)(atoms)
    (message,) = messages(atoms)
    assert re.search(r"^atoms are not bonded: the median atom's nearest neighbour is 1\.[6-9]\d× their covalent bond "
                     r"length \(e\.g\. atom \d+ \(\w+\) is [\d.]+ Å from atom \d+ \(\w+\)\), at most 1\.5× expected; "
                     r"are positions in Å \(not Bohr", message), message


def test_unusual_but_real_structures_stay_valid():
    """Vacuum boxes, single atoms, noble-gas solids, dense metals and all-electron energies pass."""
    def labelled(atoms, energy):
        atoms.info["energy"] = energy
        atoms.arrays["forces"] = np.zeros((len(atoms), 3))
        return atoms

    water_in_box = molecule("H2O")
    water_in_box.set_cell(np.eye(3) * 40.0)
    water_in_box.pbc = True
    single_atom_box = Atoms("C", positions=[[5, 5, 5]], cell=np.eye(3) * 30.0, pbc=True)
    argon = bulk("Ar", "fcc", a=5.26)  # nearest neighbours 1.8x the covalent bond length
    osmium = bulk("Os")  # the densest element, 22.6 g/cm^3
    all_electron = labelled_nacl()
    all_electron.info["energy"] = 4 * (-162.25 - 460.15) * 27.2114  # Na + Cl Hartree-Fock energies, eV
    cases = [labelled(water_in_box, -14.0), labelled(single_atom_box, -0.1), labelled(argon, -0.08),
             labelled(osmium, -22.0), all_electron]
    stretched = molecule("H2O")  # a hot MD frame: one O-H bond at 1.5x, the other still bonded
    stretched.positions[1] = stretched.positions[0] + 1.5 * (stretched.positions[1] - stretched.positions[0])
    cases.append(labelled(stretched, -13.0))
    hydride = bulk("LiH", "rocksalt", a=4.08)  # nearest neighbours 1.28x the covalent bond length
    co2_in_mof = labelled_mof() + Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]])
    co2_in_mof.positions[-3:] += [3.2, 1.5, 2.9]
    cases += [labelled(hydride, -6.0), co2_in_mof]
    for atoms in cases:
        assert messages(atoms) == [], atoms.get_chemical_formula()


def test_unit_confused_frame_in_a_file_is_one_line_naming_file_and_frame(tmp_path):
    good, bohr = labelled_mof(), labelled_mof()
    _scaled(1.0 / 0.529177)(bohr)
    path = tmp_path / "mixed.extxyz"
    ase.io.write(path, [good, bohr, good], format="extxyz")
    result = read_structures(path)
    assert result.frames == [0, 2]
    (problem,) = result.problems
    assert str(problem).startswith(f"{path}: frame 1: atoms are not bonded")
    assert "\n" not in str(problem)


# --- readers on broken files ------------------------------------------------------

BROKEN_CASES = [
    ("truncated.extxyz", [0, 1], {2: "truncated frame: line 21 announces 8 atoms but the file ends"}),
    ("garbled.extxyz", [0, 2, 4], {1: "truncated frame", 3: "pos value '0.1.2'"}),
    ("nan_force.extxyz", [0], {1: "forces contain NaN (atom 5)"}),
    ("wrong_force_shape.extxyz", [0], {1: "forces have shape (3, 2), expected (3, 3)"}),
    ("unknown_element.extxyz", [0], {1: "unknown element 'Xx' at atom 0"}),
    ("zero_volume.extxyz", [0], {1: "cell is degenerate"}),
    ("overlapping.extxyz", [0], {1: "atoms 0 and 1 are 0.100 Å apart",
                                  2: "atoms 0 and 1 (periodic image) are 0.200 Å apart"}),
    ("charge_sum.extxyz", [0], {1: "charges sum to 0.5 e but total_charge is 0 e"}),
]


@pytest.mark.parametrize(("name", "valid_frames", "expected"), BROKEN_CASES)
def test_broken_file_names_file_and_frame_and_keeps_valid_frames(name, valid_frames, expected):
    path = BROKEN / name
    result = read_structures(path)
    assert result.frames == valid_frames
    assert len(result.valid) == len(valid_frames)
    assert [a.info["structure_id"] for a in result.valid] == \
        [f"{path.stem}-{f}" for f in valid_frames]
    assert sorted({p.frame for p in result.problems}) == sorted(expected)
    for problem in result.problems:
        assert str(problem).startswith(f"{path}: frame {problem.frame}: ")
        assert expected[problem.frame] in problem.message, str(problem)


def test_empty_file_is_one_file_level_problem():
    result = read_structures(BROKEN / "empty.extxyz")
    assert result.valid == [] and result.n_frames == 0
    assert [str(p) for p in result.problems] == \
        [f"{BROKEN / 'empty.extxyz'}: file is empty / contains no frames"]


def test_truncated_gzip_keeps_frames_before_the_cut(tmp_path):
    text = (BROKEN / "nan_force.extxyz").read_bytes() * 3  # 6 frames, 1, 3, 5 bad
    packed = gzip.compress(text)
    path = tmp_path / "cut.extxyz.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    result = read_structures(path)
    assert any(p.frame is None and "cannot read past line" in p.message for p in result.problems)
    assert result.frames[:1] == [0] and len(result.valid) >= 1


def test_ase_db_row_with_wrong_force_shape(tmp_path):
    path = tmp_path / "rows.db"
    with ase.db.connect(path) as db:
        for n_components in (3, 2):
            atoms = labelled_nacl(n_components)
            atoms.calc = SinglePointCalculator(
                atoms, energy=atoms.info.pop("energy"),
                forces=np.zeros((8, n_components)))
            db.write(atoms, structure_id=f"row-{n_components}")
    result = read_structures(path)
    assert [a.info["structure_id"] for a in result.valid] == ["row-3"]
    (problem,) = result.problems
    assert str(problem).startswith(f"{path}: frame 1: row id 2: ASE cannot decode the row")
    assert "forces" in problem.message


def test_ase_db_data_forces_with_wrong_shape(tmp_path):
    path = tmp_path / "data.db"
    with ase.db.connect(path) as db:
        for n_components in (3, 2):
            atoms = labelled_nacl(n_components)
            db.write(atoms, structure_id=f"row-{n_components}", energy_eV=atoms.info["energy"],
                     data={"dft_forces": np.zeros((8, n_components))})
    result = read_structures(path, key_map={"energy": "energy_eV", "forces": "dft_forces"})
    assert [a.info["structure_id"] for a in result.valid] == ["row-3"]
    assert [str(p) for p in result.problems] == \
        [f"{path}: frame 1: forces have shape (8, 2), expected (8, 3) (n_atoms=8)"]


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "file is empty / contains no frames"),
    (b"not a database at all", "not an ASE database"),
])
def test_bad_db_files_are_file_level_problems(tmp_path, content, expected):
    path = tmp_path / "bad.db"
    path.write_bytes(content)
    result = read_structures(path)
    assert result.valid == [] and len(result.problems) == 1
    assert result.problems[0].frame is None and expected in result.problems[0].message
    assert path.read_bytes() == content  # reading never modifies the file


def test_key_map_renames_user_keys(tmp_path):
    path = tmp_path / "user.extxyz"
    atoms = labelled_nacl()
    lines = ["8", 'Lattice="5.64 0 0 0 5.64 0 0 0 5.64" '
             "Properties=species:S:1:pos:R:3:DFT_forces:R:3:ddec:R:1 "
             f"DFT_energy={atoms.info['energy']!r} mof=0042 pbc=\"T T T\""]
    for s, p, f, q in zip(atoms.get_chemical_symbols(), atoms.positions,
                          atoms.arrays["forces"], atoms.arrays["charges"]):
        lines.append(" ".join([s, *map(repr, p.tolist()), *map(repr, f.tolist()), repr(float(q))]))
    path.write_text("\n".join(lines) + "\n")
    key_map = {"energy": "DFT_energy", "forces": "DFT_forces", "charges": "ddec",
               "parent_id": "mof"}
    (read,) = read_structures(path, key_map=key_map).valid
    assert read.info["energy"] == atoms.info["energy"]
    np.testing.assert_array_equal(read.arrays["forces"], atoms.arrays["forces"])
    np.testing.assert_array_equal(read.arrays["charges"], atoms.arrays["charges"])
    assert read.info["parent_id"] == "42"  # ASE parses 0042 as an integer
    assert read.calc is None
    unmapped = read_structures(path)
    assert any("energy missing" in p.message and "DFT_energy" in p.message
               for p in unmapped.problems)
    with pytest.raises(ValueError, match="key_map key 'energie' is not a record field"):
        read_structures(path, key_map={"energie": "DFT_energy"})


def test_cif_structures_need_labels_unless_told_otherwise(tmp_path):
    path = tmp_path / "nacl.cif"
    ase.io.write(path, bulk("NaCl", "rocksalt", a=5.64, cubic=True), format="cif")
    strict = read_structures(path)
    assert strict.valid == [] and strict.n_frames == 1
    assert [p.frame for p in strict.problems] == [0, 0]  # energy and forces missing
    (atoms,) = read_structures(path, require_labels=False).valid
    assert len(atoms) == 8 and atoms.info["structure_id"] == "nacl-0"


def test_argument_errors_are_raised_not_reported(tmp_path):
    with pytest.raises(ValueError, match=r"cannot tell the format .* '\.txt'"):
        read_structures(tmp_path / "a.txt")
    with pytest.raises(FileNotFoundError, match="missing.extxyz: no such file"):
        read_structures(tmp_path / "missing.extxyz")


# --- CLI ----------------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    return app


def test_cli_validate_lists_every_problem_and_exits_1():
    paths = [str(BROKEN / name) for name, _, _ in BROKEN_CASES] + [str(BROKEN / "empty.extxyz")]
    result = CliRunner().invoke(_cli(), ["data", "validate", *paths])
    assert result.exit_code == 1, result.output
    expected = [str(p) for path in paths for p in read_structures(path).problems]
    assert len(expected) == 11
    lines = result.stdout.splitlines()
    for line in expected:
        assert line in lines
    assert "Validation summary" in result.stdout
    assert "Traceback" not in result.output


def test_cli_validate_valid_file_exits_0(tmp_path):
    path = tmp_path / "ok.extxyz"
    path.write_text("".join((BROKEN / "nan_force.extxyz").read_text().splitlines(True)[:10]))
    result = CliRunner().invoke(_cli(), ["data", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "all 1 frame(s) valid" in result.stdout


def test_cli_validate_bad_key_and_missing_file_are_one_line_errors(tmp_path):
    result = CliRunner().invoke(_cli(), ["data", "validate", str(tmp_path / "x.extxyz"),
                                         "--key", "energy"])
    assert result.exit_code == 1 and "expected RECORD=FILEKEY" in result.stderr
    result = CliRunner().invoke(_cli(), ["data", "validate", str(tmp_path / "x.extxyz")])
    assert result.exit_code == 1 and "x.extxyz: no such file" in result.stdout
    assert "Traceback" not in result.output
