"""Importers for users' data: extxyz key maps, ASE db, QMOF-style, ODAC-style; the forces rule.

Inputs are written in each test from real structures (tests/data/mof_small.extxyz,
ASE builders) with seeded labels; expected values are the numbers the test wrote,
never outputs of the code under test.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
import typer
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

from farfield.data.importers.odac import OdacOptions, read_odac
from farfield.data.importers.qmof import QmofOptions, read_qmof
from farfield.data.importing import import_files, validate_files
from farfield.data.store import DatasetStore, write_store
from farfield.orchestrator.cli.data import data_app

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).parents[1] / "docs" / "data.md"


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    return app


def run(*args: str):
    return CliRunner().invoke(_cli(), ["data", *map(str, args)])


def figxau() -> Atoms:
    """The 13-atom erbium formate cell of tests/data (real CoRE MOF geometry), no labels."""
    atoms = ase.io.read(DATA / "mof_small.extxyz")
    atoms.calc = None
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)


def zero_sum(rng, n: int, scale: float = 0.4) -> np.ndarray:
    charges = rng.normal(scale=scale, size=n)
    return charges - charges.mean()


def structures() -> dict[str, Atoms]:
    """Three periodic structures keyed by a QMOF-like id."""
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    nacl.rattle(0.02, seed=3)
    mgo = bulk("MgO", "rocksalt", a=4.21, cubic=True)
    return {"qmof-0a1b2c3": figxau(), "qmof-4d5e6f7": nacl, "qmof-89abcde": mgo}


def write_qmof_cif(path: Path, atoms: Atoms, charges: dict[str, np.ndarray]) -> None:
    """A P1 CIF with per-site charge columns as QMOF's writer names them."""
    loop_keys = {f"atom_site_pbe_{scheme}_charge": [values.tolist()]
                 for scheme, values in charges.items()}
    ase.io.write(path, atoms, format="cif", loop_keys=loop_keys)


def qmof_folder(tmp_path: Path, table_format: str = "csv") -> tuple[Path, Path, dict]:
    """relaxed_structures/*.cif with DDEC columns + a table with energies and CM5 lists.

    Returns (cif folder, table path, expected) with expected[id] = (energy, ddec, cm5).
    """
    rng = np.random.default_rng(11)
    folder = tmp_path / "relaxed_structures"
    folder.mkdir()
    expected, rows = {}, []
    for key, atoms in structures().items():
        ddec, cm5 = zero_sum(rng, len(atoms)), zero_sum(rng, len(atoms), 0.3)
        energy = float(-5.3 * len(atoms) + rng.normal())
        write_qmof_cif(folder / f"{key}.cif", atoms, {"ddec": ddec})
        expected[key] = (energy, ddec, cm5)
        rows.append({"qmof_id": key, "name": key.upper(), "energy": energy, "cm5": cm5.tolist()})
    if table_format == "csv":
        table = tmp_path / "qmof.csv"
        with open(table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["qmof_id", "name", "outputs.pbe.energy_total", "cm5_charges"])
            for row in rows:
                writer.writerow([row["qmof_id"], row["name"], repr(row["energy"]),
                                 json.dumps(row["cm5"])])
    else:
        table = tmp_path / "qmof.json"
        table.write_text(json.dumps([
            {"qmof_id": r["qmof_id"], "name": r["name"],
             "outputs": {"pbe": {"energy_total": r["energy"]}}, "charges": {"cm5": r["cm5"]}}
            for r in rows]))
    return folder, table, expected


# --- QMOF-style ---------------------------------------------------------------------


def test_qmof_csv_round_trip_with_cif_ddec_charges(tmp_path):
    folder, table, expected = qmof_folder(tmp_path)
    report = import_files([folder], tmp_path / "store", format="qmof",
                          options=QmofOptions(table=table, charges="ddec"))
    assert report.problems == []
    store = DatasetStore.open(tmp_path / "store")
    stored = {atoms.info["structure_id"]: atoms for atoms in store.read()}
    assert sorted(stored) == sorted(expected)
    for key, (energy, ddec, _) in expected.items():
        atoms = stored[key]
        assert atoms.info["energy"] == energy  # bit-exact from the CSV text
        np.testing.assert_array_equal(atoms.arrays["charges"], ddec)
        assert "forces" not in atoms.arrays
        assert atoms.info["parent_id"] == key and atoms.info["source"] == f"{key}.cif"
        original = structures()[key]
        assert atoms.get_chemical_symbols() == original.get_chemical_symbols()
        np.testing.assert_allclose(atoms.cell.cellpar(), original.cell.cellpar(), atol=1e-8)
        offset = atoms.get_scaled_positions() - original.get_scaled_positions()
        np.testing.assert_allclose(offset - np.round(offset), 0, atol=1e-8)
    manifest = store.manifest
    assert manifest["forces_required"] is False
    assert manifest["has_forces"] == {"with": 0, "without": 3}
    assert manifest["has_charges"] == {"with": 3, "without": 0}
    qmof = manifest["provenance"]["qmof"]
    assert qmof["columns"] == {"id": "qmof_id", "energy": "outputs.pbe.energy_total",
                               "parent": None, "charges": None}
    assert qmof["charges_from"] == "CIF column _atom_site_pbe_ddec_charge"
    assert qmof["table"]["file"] == "qmof.csv" and qmof["table"]["n_rows"] == 3
    assert manifest["provenance"]["format"] == "qmof"


def test_qmof_json_table_with_charges_column_and_parent(tmp_path):
    folder, table, expected = qmof_folder(tmp_path, table_format="json")
    options = QmofOptions(table=table, charges="cm5", charges_column="charges.cm5",
                          parent_column="name")
    result = run("import", "--format", "qmof", folder, "--table", table, "--charges", "cm5",
                 "--charges-column", "charges.cm5", "--parent-column", "name",
                 "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert "3 structure(s) have an energy but no forces" in result.stdout
    stored = {a.info["structure_id"]: a for a in DatasetStore.open(tmp_path / "store").read()}
    for key, (energy, _, cm5) in expected.items():
        assert stored[key].info["energy"] == energy
        assert stored[key].info["parent_id"] == key.upper()
        np.testing.assert_array_equal(stored[key].arrays["charges"], cm5)
    provenance = DatasetStore.open(tmp_path / "store").manifest["provenance"]["qmof"]
    assert provenance["columns"]["charges"] == "charges.cm5"
    assert provenance["columns"]["parent"] == "name"
    assert read_qmof(folder, options).rows_without_cif == []


def test_qmof_broken_cif_and_missing_rows_are_reported_good_ones_imported(tmp_path):
    folder, table, _ = qmof_folder(tmp_path)
    (folder / "qmof-broken.cif").write_text("data_broken\n_cell_length_a 5.0\nloop_\n_atom_site\n")
    lines = table.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("qmof-89abcde")]
    kept.append("qmof-e1e1e1e,X,,[]")  # a row with an empty energy
    kept.append("qmof-not-in-folder,Y,-1.0,[]")  # a row without a CIF: counted, not a problem
    table.write_text("\n".join(kept) + "\n")
    write_qmof_cif(folder / "qmof-e1e1e1e.cif", bulk("Cu", "fcc", a=3.6, cubic=True),
                   {"ddec": np.zeros(4)})

    refused = run("import", "--format", "qmof", folder, "--table", table, "--out",
                  tmp_path / "refused")
    assert refused.exit_code == 1 and "nothing written" in refused.stderr
    assert not (tmp_path / "refused").exists()

    result = run("import", "--format", "qmof", folder, "--table", table, "--out",
                 tmp_path / "store", "--skip-invalid")
    assert result.exit_code == 0, result.output
    problems = [line for line in result.stdout.splitlines() if ": frame 0: " in line]
    by_file = {line.split(": frame 0: ")[0]: line for line in problems}
    assert set(by_file) == {str(folder / f"{k}.cif")
                            for k in ("qmof-89abcde", "qmof-broken", "qmof-e1e1e1e")}
    missing = by_file[str(folder / "qmof-89abcde.cif")]
    assert "no row with qmof_id='qmof-89abcde' in qmof.csv" in missing
    assert "outputs.pbe.energy_total is empty" in by_file[str(folder / "qmof-e1e1e1e.cif")]
    assert "qmof.csv line 4" in by_file[str(folder / "qmof-e1e1e1e.cif")]
    assert "expected one structure per CIF, found 0" in by_file[str(folder / "qmof-broken.cif")]
    assert f"note: {table}: 1 of 4 row(s) have no CIF" in result.stdout
    store = DatasetStore.open(tmp_path / "store")
    assert sorted(store.index.structure_id) == ["qmof-0a1b2c3", "qmof-4d5e6f7"]
    rejects = [json.loads(line) for line in (tmp_path / "store" / "rejects.jsonl").read_text()
               .splitlines()]
    assert sorted(Path(r["file"]).name for r in rejects) == \
        ["qmof-89abcde.cif", "qmof-broken.cif", "qmof-e1e1e1e.cif"]
    assert store.manifest["provenance"]["qmof"]["table"]["n_rows_without_cif"] == 1


def test_qmof_charge_problems_name_the_cif(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    write_qmof_cif(folder / "bad-sum.cif", nacl, {"ddec": np.full(8, 0.1)})
    write_qmof_cif(folder / "no-column.cif", nacl, {"cm5": np.zeros(8)})
    # Symmetry (Fm-3m) lists 2 sites for 8 atoms: per-site charges cannot be used.
    (folder / "symmetric.cif").write_text(
        "data_nacl\n_cell_length_a 5.64\n_cell_length_b 5.64\n_cell_length_c 5.64\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'F m -3 m'\n_symmetry_Int_Tables_number 225\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_pbe_ddec_charge\n"
        "Na1 Na 0 0 0 0.8\nCl1 Cl 0.5 0.5 0.5 -0.8\n")
    # P-1 with every site listed: ASE keeps 4 atoms but orders them Na, Na, Cl, Cl.
    (folder / "reordered.cif").write_text(
        "data_x\n_cell_length_a 6\n_cell_length_b 6\n_cell_length_c 6\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P -1'\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n"
        "_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_pbe_ddec_charge\n"
        "Na1 Na 0.1 0.1 0.1 0.8\nCl1 Cl 0.4 0.4 0.4 -0.8\nNa2 Na 0.9 0.9 0.9 0.8\n"
        "Cl2 Cl 0.6 0.6 0.6 -0.8\n")
    table = tmp_path / "t.csv"
    table.write_text("qmof_id,outputs.pbe.energy_total\nbad-sum,-27.5\nno-column,-27.5\n"
                     "symmetric,-27.5\nreordered,-10.0\n")
    reports = validate_files([folder], format="qmof", options=QmofOptions(table=table,
                                                                          charges="ddec"))
    messages = {Path(r.file).stem: [p.message for p in r.problems] for r in reports[1:]}
    assert any("charges sum to 0.8 e but total_charge is 0 e" in m for m in messages["bad-sum"])
    assert any("no _atom_site_pbe_ddec_charge column" in m and "_atom_site_pbe_cm5_charge" in m
               for m in messages["no-column"])
    assert any("has 2 values but the structure has 8 atoms" in m for m in messages["symmetric"])
    assert any("does not line up with the atoms: site 1 is not atom 1" in m
               for m in messages["reordered"])
    assert all(r.n_valid == 0 for r in reports)


def test_qmof_argument_errors_are_one_line(tmp_path):
    folder, table, _ = qmof_folder(tmp_path)
    cases = [
        (["validate", folder, "--table", table], "--table is only used with --format qmof"),
        (["validate", "--format", "qmof", folder], "--format qmof needs --table FILE"),
        (["validate", "--format", "qmof", folder, "--table", table, "--charges", "mulliken"],
         "--charges 'mulliken': choose one of none, ddec, cm5, bader"),
        (["validate", "--format", "qmof", folder, "--table", table, "--energy-column", "E"],
         f"{table}: no column 'E'; the table has: qmof_id, name"),
        (["validate", "--format", "qmof", folder, folder, "--table", table],
         "--format qmof reads one directory of CIFs, got 2 paths"),
        (["validate", "--format", "qmof", folder, "--table", table, "--charges-column", "x"],
         "a charges column needs a charge scheme"),
        (["validate", "--format", "qmof", tmp_path / "nope", "--table", table],
         "nope: no such directory"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_qmof_duplicate_table_rows_make_the_structure_ambiguous(tmp_path):
    folder, table, _ = qmof_folder(tmp_path)
    table.write_text(table.read_text() + "qmof-4d5e6f7,again,-1.0,[]\n")
    reports = validate_files([folder], format="qmof", options=QmofOptions(table=table))
    (report,) = [r for r in reports if r.file.endswith("qmof-4d5e6f7.cif")]
    assert report.n_valid == 0
    assert "2 rows of qmof.csv have qmof_id='qmof-4d5e6f7' (line 3, line 5)" in \
        report.problems[0].message


# --- ODAC-style ---------------------------------------------------------------------


def odac_db(path: Path) -> list[dict]:
    """Rows like ODAC's: two frames (fid) of one system (sid) per MOF; energy/forces in the
    calculator, sid/fid/mof_id/ads_symbols as key-value pairs, DDEC charges in row.data."""
    rng = np.random.default_rng(5)
    rows = []
    mofs = {"FIGXAU": figxau(), "NACL": bulk("NaCl", "rocksalt", a=5.64, cubic=True)}
    with ase.db.connect(path) as db:
        for sid, (mof, base) in enumerate(mofs.items()):
            for fid in range(2):
                atoms = base.copy()
                atoms.rattle(0.01, seed=10 * sid + fid)
                energy = float(-4.0 * len(atoms) + rng.normal())
                forces = rng.normal(scale=0.3, size=(len(atoms), 3))
                charges = zero_sum(rng, len(atoms))
                atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
                db.write(atoms, sid=100 + sid, fid=fid, mof_id=mof, ads_symbols="CO2",
                         data={"ddec_charges": charges})
                rows.append({"id": f"{100 + sid}-{fid}", "parent": mof, "energy": energy,
                             "forces": forces, "charges": charges,
                             "positions": atoms.positions.copy()})
    return rows


def test_odac_db_round_trip_with_id_parent_and_frame_keys(tmp_path):
    path = tmp_path / "odac.db"
    rows = odac_db(path)
    result = run("import", "--format", "odac", path, "--id-key", "sid", "--frame-key", "fid",
                 "--parent-key", "mof_id", "--key", "charges=ddec_charges",
                 "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    store = DatasetStore.open(tmp_path / "store")
    stored = {a.info["structure_id"]: a for a in store.read()}
    assert sorted(stored) == sorted(row["id"] for row in rows)
    for row in rows:
        atoms = stored[row["id"]]
        assert atoms.info["parent_id"] == row["parent"]
        assert atoms.info["energy"] == row["energy"]
        np.testing.assert_array_equal(atoms.arrays["forces"], row["forces"])
        np.testing.assert_array_equal(atoms.arrays["charges"], row["charges"])
        np.testing.assert_array_equal(atoms.positions, row["positions"])
        assert atoms.info["ads_symbols"] == "CO2"
    assert store.manifest["n_parents"] == 2
    provenance = store.manifest["provenance"]
    assert provenance["odac"] == {"id_key": "sid", "parent_key": "mof_id", "frame_key": "fid"}
    assert provenance["key_map"] == {"charges": "ddec_charges"}
    assert store.manifest["forces_required"] is True


def test_odac_rows_without_keys_and_duplicate_ids_are_reported(tmp_path):
    path = tmp_path / "odac.db"
    odac_db(path)
    with ase.db.connect(path) as db:
        atoms = bulk("MgO", "rocksalt", a=4.21, cubic=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-40.0, forces=np.zeros((8, 3)))
        db.write(atoms, sid=200, fid=0)  # no mof_id
    result = read_odac(path, OdacOptions(frame_key="fid"))
    assert [p.frame for p in result.problems] == [4]
    assert "row has no usable 'mof_id' (--parent-key)" in result.problems[0].message
    assert len(result.valid) == 4
    # Without --frame-key, the two frames of each sid collide: the second is reported.
    reports = validate_files([path], format="odac", options=OdacOptions())
    duplicates = [p for p in reports[0].problems if "duplicate structure_id" in p.message]
    assert [p.frame for p in duplicates] == [1, 3]
    assert str(duplicates[0]) == (f"{path}: frame 1: duplicate structure_id '100' "
                                  f"(first seen in {path} frame 0)")


def test_odac_missing_forces_follow_the_flag(tmp_path):
    path = tmp_path / "energies.db"
    with ase.db.connect(path) as db:
        atoms = figxau()
        atoms.calc = SinglePointCalculator(atoms, energy=-52.5)
        db.write(atoms, sid="a", mof_id="FIGXAU")
    strict = read_odac(path)
    assert strict.valid == [] and "forces missing" in strict.problems[0].message
    assert "--allow-missing-forces" in strict.problems[0].message
    (atoms,) = read_odac(path, require_forces=False).valid
    assert atoms.info["energy"] == -52.5 and "forces" not in atoms.arrays


def test_odac_argument_errors(tmp_path):
    lmdb = tmp_path / "train.aselmdb"
    lmdb.write_bytes(b"\0" * 16)
    result = run("validate", "--format", "odac", lmdb)
    assert result.exit_code == 1
    assert "LMDB-backed ASE db (.aselmdb): import it with --format aselmdb" in result.stdout
    with pytest.raises(ValueError, match="ids come from --id-key"):
        read_odac(tmp_path / "x.db", key_map={"structure_id": "sid"})
    result = run("validate", tmp_path / "x.db", "--id-key", "sid")
    assert result.exit_code == 1 and "--id-key is only used with --format odac" in result.stderr


# --- extxyz with a key map, ASE db, the forces rule -----------------------------------


def user_frames(n: int = 3) -> list[Atoms]:
    rng = np.random.default_rng(2)
    frames = []
    for k in range(n):
        atoms = figxau()
        atoms.rattle(0.01, seed=k)
        atoms.info.update(DFT_energy=float(-52.0 + rng.normal()), mof="FIGXAU",
                          structure_id=f"figxau-{k}")
        atoms.arrays["DFT_forces"] = rng.normal(scale=0.5, size=(13, 3))
        atoms.arrays["ddec"] = zero_sum(rng, 13)
        frames.append(atoms)
    return frames


def test_extxyz_key_map_round_trip(tmp_path):
    frames = user_frames()
    path = tmp_path / "dft.extxyz"
    ase.io.write(path, frames, format="extxyz")
    result = run("import", path, "--key", "energy=DFT_energy", "--key", "forces=DFT_forces",
                 "--key", "charges=ddec", "--key", "parent_id=mof", "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    store = DatasetStore.open(tmp_path / "store")
    stored = store.read()
    read_back = ase.io.read(path, ":")  # what ASE's own writer kept (%16.8f positions)
    for atoms, original, written in zip(stored, frames, read_back):
        assert atoms.info["structure_id"] == original.info["structure_id"]
        assert atoms.info["parent_id"] == "FIGXAU"
        assert atoms.info["energy"] == written.info["DFT_energy"]
        np.testing.assert_array_equal(atoms.arrays["forces"], written.arrays["DFT_forces"])
        np.testing.assert_array_equal(atoms.arrays["charges"], written.arrays["ddec"])
        np.testing.assert_allclose(atoms.arrays["forces"], original.arrays["DFT_forces"],
                                   atol=1e-8)
    assert store.manifest["provenance"]["key_map"] == {
        "energy": "DFT_energy", "forces": "DFT_forces", "charges": "ddec", "parent_id": "mof"}


def test_ase_db_round_trip_through_cli(tmp_path):
    path = tmp_path / "mine.db"
    frames = user_frames(2)
    with ase.db.connect(path) as db:
        for atoms in frames:
            labelled = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                             pbc=True)
            labelled.calc = SinglePointCalculator(labelled, energy=atoms.info["DFT_energy"],
                                                  forces=atoms.arrays["DFT_forces"])
            db.write(labelled, structure_id=atoms.info["structure_id"], parent_id="FIGXAU",
                     data={"charges": atoms.arrays["ddec"]})
    result = run("import", path, "--out", tmp_path / "store")
    assert result.exit_code == 0, result.output
    for atoms, original in zip(DatasetStore.open(tmp_path / "store").read(), frames):
        assert atoms.info["energy"] == original.info["DFT_energy"]
        np.testing.assert_array_equal(atoms.arrays["forces"], original.arrays["DFT_forces"])
        np.testing.assert_array_equal(atoms.arrays["charges"], original.arrays["ddec"])
        np.testing.assert_array_equal(atoms.positions, original.positions)


def test_energy_only_needs_the_flag_and_is_recorded(tmp_path):
    frames = user_frames(2)
    for atoms in frames:
        del atoms.arrays["DFT_forces"]
    path = tmp_path / "energies.extxyz"
    ase.io.write(path, frames, format="extxyz")
    args = ["import", path, "--key", "energy=DFT_energy", "--out", tmp_path / "store"]
    refused = run(*args)
    assert refused.exit_code == 1
    assert f"{path}: frame 0: forces missing" in refused.stdout
    result = run(*args, "--allow-missing-forces")
    assert result.exit_code == 0, result.output
    manifest = DatasetStore.open(tmp_path / "store").manifest
    assert manifest["forces_required"] is False
    assert manifest["provenance"]["forces_required"] is False
    assert manifest["has_forces"] == {"with": 0, "without": 2}
    energy_only = DatasetStore.open(tmp_path / "store").read()
    with pytest.raises(ValueError, match="forces missing"):
        write_store(energy_only, tmp_path / "strict", label_method="x")


def test_summary_of_many_files_lists_only_files_with_problems(tmp_path):
    folder, table, _ = qmof_folder(tmp_path)
    for k in range(18):  # 1 table + 3 valid + 18 invalid = 22 files, over the 20-row limit
        write_qmof_cif(folder / f"extra-{k:02d}.cif", bulk("Cu", "fcc", a=3.6), {})
    result = run("validate", "--format", "qmof", folder, "--table", table)
    assert result.exit_code == 1
    assert "(4 more file(s))" in result.stdout  # the table + 3 valid CIFs
    assert result.stdout.count("no row with qmof_id") == 18


# --- docs/data.md -----------------------------------------------------------------------


def _doc_examples() -> list[tuple[str, list[str], list[str]]]:
    """(section title, python blocks, farfield command lines) per '## ... example' section."""
    text = DOCS.read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    examples = []
    for section in sections:
        title = section.splitlines()[0]
        python = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
        bash = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
        commands = [line.strip() for block in bash
                    for line in block.replace("\\\n", " ").splitlines()
                    if line.strip().startswith("farfield data ")]
        if python and commands:
            examples.append((title, python, commands))
    return examples


def test_docs_have_one_runnable_example_per_format():
    titles = [title for title, _, _ in _doc_examples()]
    for name in ("extxyz", "ASE db", "QMOF", "ODAC"):
        assert sum(name in title for title in titles) == 1, (name, titles)
    text = DOCS.read_text()
    assert text.index("## Building the CoRE MOF + GFN-xTB dataset") < text.index("## extxyz")
    build = text[text.index("## Building the CoRE MOF + GFN-xTB dataset"):text.index("## extxyz")]
    assert "farfield data build" in build and "libopenblas0-pthread" in build


@pytest.mark.parametrize("index", range(4))
def test_docs_example_runs(tmp_path, monkeypatch, index):
    title, python, commands = _doc_examples()[index]
    monkeypatch.chdir(tmp_path)
    for block in python:
        code = compile(block, f"docs/data.md: {title}", "exec")
        exec(code, {})  # noqa: S102 (runs the doc's own snippet)
    for command in commands:
        args = shlex.split(command)[2:]  # drop "farfield data"
        result = run(*args)
        assert result.exit_code == 0, (title, command, result.output)
        if args[0] == "import":
            out = Path(args[args.index("--out") + 1])
            store = DatasetStore.open(out)
            assert f"imported {len(store)} structure(s)" in result.stdout
            assert len(store) >= 2 and store.manifest["provenance"]["n_rejected_problems"] \
                == len(result.stdout.split(": frame ")) - 1


def test_training_on_an_energy_only_store_needs_a_zero_force_weight(tmp_path):
    """A QMOF-style store has no forces: a trial with a force loss is refused up front."""
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial_pipeline import check_labels

    folder, table, _ = qmof_folder(tmp_path)
    import_files([folder], tmp_path / "store", format="qmof", options=QmofOptions(table=table))
    store = DatasetStore.open(tmp_path / "store")
    config = TrialConfig.model_validate({"data": {"dataset": str(tmp_path / "store")}})
    with pytest.raises(ValueError, match="3 of 3 structures have no forces.*loss.forces: 0"):
        check_labels(config, store)
    config.training.loss.forces = 0.0
    check_labels(config, store)
