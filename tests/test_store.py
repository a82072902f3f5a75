"""Dataset store: lossless round trips, index/manifest, content hash, errors, import CLI."""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pandas as pd
import pytest
import typer
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from typer.testing import CliRunner

from farfield.data.readers import read_structures
from farfield.data.store import INDEX_COLUMNS, DatasetStore, StoreError, format_frame, write_store
from farfield.orchestrator.cli.data import data_app

BROKEN = Path(__file__).parent / "data" / "broken"


def make_frames() -> list[Atoms]:
    """Three NaCl configurations of one parent (charges, stress; one charged) and two
    H2O molecules without cell, charges or stress. Labels: seeded synthetic numbers."""
    rng = np.random.default_rng(7)
    frames = []
    for k in range(3):
        atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
        atoms.rattle(0.05, seed=k)
        charges = np.where(atoms.numbers == 11, 0.8, -0.8) + rng.normal(scale=0.01, size=8)
        total = 1.0 if k == 2 else 0.0
        atoms.arrays["charges"] = charges - charges.mean() + total / 8
        atoms.arrays["forces"] = rng.normal(scale=0.5, size=(8, 3))
        atoms.info.update(energy=-27.0 + rng.normal(), stress=rng.normal(scale=1e-3, size=6),
                          total_charge=total, structure_id=f"nacl-{k}", parent_id="nacl",
                          source="nacl.extxyz")
        frames.append(atoms)
    for k in range(2):
        atoms = molecule("H2O")
        atoms.rattle(0.02, seed=10 + k)
        atoms.arrays["forces"] = rng.normal(scale=0.5, size=(3, 3))
        atoms.info.update(energy=-14.0 + rng.normal(), total_charge=0.0,
                          structure_id=f"{k:04d}", parent_id="T", source="water.db")
        frames.append(atoms)
    return frames


def assert_same(expected: list[Atoms], actual: list[Atoms], atol: float = 0.0) -> None:
    """Exact (or within ``atol``) equality of every record field, cell and pbc."""
    assert len(actual) == len(expected)
    for a, b in zip(expected, actual):
        assert b.calc is None
        assert b.get_chemical_symbols() == a.get_chemical_symbols()
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=atol)
        np.testing.assert_allclose(b.cell.array, a.cell.array, rtol=0, atol=atol)
        np.testing.assert_array_equal(b.pbc, a.pbc)
        assert set(b.arrays) == set(a.arrays)
        for key in a.arrays:
            np.testing.assert_allclose(b.arrays[key], a.arrays[key], rtol=0, atol=atol)
        assert set(b.info) == set(a.info)
        for key, value in a.info.items():
            if isinstance(value, str):
                assert b.info[key] == value, key
            else:
                np.testing.assert_allclose(b.info[key], value, rtol=0, atol=atol, err_msg=key)


@pytest.fixture
def frames() -> list[Atoms]:
    return make_frames()


def test_store_round_trip_is_exact(tmp_path, frames):
    store = write_store(frames, tmp_path / "store", label_method="synthetic", shard_size=2)
    assert len(store) == 5
    assert_same(frames, store.read())
    reopened = DatasetStore.open(tmp_path / "store")
    assert_same(frames[3:], reopened.read(["0000", "0001"]))
    assert_same(frames[:3], reopened.read_parents(["nacl"]))
    assert [a.info["structure_id"] for a in reopened.read(["0001", "nacl-0"])] == \
        ["nacl-0", "0001"]  # index order
    shards = list(reopened.iter_shards())
    assert [name for name, _ in shards] == [f"shard-0000{k}.extxyz" for k in range(3)]
    assert [len(chunk) for _, chunk in shards] == [2, 1, 2]  # one parent spans two shards
    reopened.verify()


def test_index_and_manifest(tmp_path, frames):
    store = write_store(frames, tmp_path / "store", label_method="synthetic",
                        provenance={"note": "test"})
    index = store.index
    assert tuple(index.columns) == INDEX_COLUMNS
    first = index.iloc[0]
    assert (first.structure_id, first.parent_id, first.n_atoms, first.formula) == \
        ("nacl-0", "nacl", 8, "Cl4Na4")
    assert first.elements == "Cl Na" and json.loads(first.element_counts) == {"Cl": 4, "Na": 4}
    assert first.energy_per_atom == pytest.approx(frames[0].info["energy"] / 8, abs=0)
    assert list(index.has_charges) == [True] * 3 + [False] * 2
    assert list(index.periodic) == [True] * 3 + [False] * 2
    assert list(index.frame) == [0, 1, 2, 3, 4]
    assert index.iloc[3].formula == "H2O"
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest == store.manifest
    assert manifest["schema_version"] == 1
    assert (manifest["n_structures"], manifest["n_parents"], manifest["n_shards"]) == (5, 2, 1)
    assert manifest["elements"] == ["Cl", "H", "Na", "O"]
    assert manifest["has_charges"] == {"with": 3, "without": 2}
    assert manifest["sources"] == ["nacl.extxyz", "water.db"]
    assert manifest["provenance"] == {"note": "test"}
    assert set(manifest["created_with"]) == {"farfield", "ase"}
    assert store.content_hash.startswith("sha256:") and len(store.content_hash) == 71


def test_content_hash_is_stable_and_content_sensitive(tmp_path, frames):
    first = write_store(frames, tmp_path / "a", label_method="x")
    second = write_store(make_frames(), tmp_path / "b", label_method="y")
    assert first.content_hash == second.content_hash
    changed = make_frames()
    changed[4].info["energy"] += 1e-12
    assert write_store(changed, tmp_path / "c", label_method="x").content_hash != \
        first.content_hash


def test_write_store_leaves_inputs_untouched(tmp_path, frames):
    atoms = frames[0].copy()
    atoms.calc = SinglePointCalculator(atoms, energy=atoms.info.pop("energy"),
                                       forces=atoms.arrays.pop("forces"))
    store = write_store([atoms], tmp_path / "s", label_method="x")
    assert atoms.calc is not None and "energy" not in atoms.info
    assert store.read()[0].info["energy"] == atoms.calc.results["energy"]


def test_extxyz_file_round_trip(tmp_path, frames):
    path = tmp_path / "frames.extxyz"
    path.write_text("".join(format_frame(atoms) for atoms in frames))
    result = read_structures(path)
    assert result.problems == []
    assert_same(frames, result.valid)
    packed = tmp_path / "frames.extxyz.xz"
    packed.write_bytes(lzma.compress(path.read_bytes()))
    assert_same(frames, read_structures(packed).valid)
    # ase.io.write keeps only 8 decimals in atom columns: close, not exact
    plain = tmp_path / "ase.extxyz"
    ase.io.write(plain, frames, format="extxyz")
    relabelled = read_structures(plain).valid
    # ...and ASE's parser turns id strings that look like numbers/booleans into them
    assert [a.info["structure_id"] for a in relabelled[3:]] == ["0", "1"]
    assert [a.info["parent_id"] for a in relabelled[3:]] == ["True", "True"]
    for atoms, original in zip(relabelled, frames):
        for key in ("structure_id", "parent_id", "source"):
            atoms.info[key] = original.info[key]
    assert_same(frames, relabelled, atol=1e-8)


def test_ase_db_round_trip(tmp_path, frames):
    for k, atoms in enumerate(frames[3:]):  # ASE db refuses strings like "0000" or "T"
        atoms.info.update(structure_id=f"water-{k}", parent_id="water")
    path = tmp_path / "frames.db"
    with ase.db.connect(path) as db:
        for atoms in frames:
            copy = atoms.copy()
            results = {"energy": copy.info.pop("energy"), "forces": copy.arrays.pop("forces")}
            if "stress" in copy.info:
                results["stress"] = copy.info.pop("stress")
            if "charges" in copy.arrays:
                results["charges"] = copy.arrays.pop("charges")
            copy.calc = SinglePointCalculator(copy, **results)
            kvp = {k: copy.info.pop(k) for k in
                   ("structure_id", "parent_id", "source", "total_charge")}
            db.write(copy, key_value_pairs=kvp)
    result = read_structures(path)
    assert result.problems == []
    assert_same(frames, result.valid)


def test_duplicate_structure_id_names_both_frames(tmp_path, frames):
    frames[4].info["structure_id"] = "nacl-1"
    with pytest.raises(ValueError, match=r"duplicate structure_id 'nacl-1': frames 1 and 4"):
        write_store(frames, tmp_path / "s", label_method="x")
    assert not (tmp_path / "s").exists()


def test_invalid_frames_and_failed_writes_leave_nothing(tmp_path, frames):
    frames[2].arrays["forces"][3, 0] = np.nan
    with pytest.raises(ValueError, match=r"frames: frame 2: forces contain NaN \(atom 3\)"):
        write_store(frames, tmp_path / "s", label_method="x")
    good = make_frames()
    good[1].info["blob"] = object()
    with pytest.raises(ValueError, match=r"info\['blob'\] of type object cannot be stored"):
        write_store(good, tmp_path / "s", label_method="x")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_rules(tmp_path, frames):
    write_store(frames, tmp_path / "s", label_method="x")
    with pytest.raises(FileExistsError, match="already exists"):
        write_store(frames, tmp_path / "s", label_method="x")
    replaced = write_store(frames[:2], tmp_path / "s", label_method="x", overwrite=True)
    assert len(DatasetStore.open(tmp_path / "s")) == len(replaced) == 2
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="refusing to overwrite .*user: it is not a dataset store"):
        write_store(frames, tmp_path / "user", label_method="x", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "user"]


def test_open_errors_name_the_path(tmp_path, frames):
    with pytest.raises(StoreError, match=re.escape(f"{tmp_path / 'nope'} is not a dataset "
                                                   "store: no such directory")):
        DatasetStore.open(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match=re.escape(f"{tmp_path / 'plain'} is not a dataset "
                                                   "store: manifest.json is missing")):
        DatasetStore.open(tmp_path / "plain")
    store = write_store(frames, tmp_path / "s", label_method="x")
    manifest = store.manifest | {"schema_version": 99}
    (store.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="schema_version 99 is not supported; expected 1"):
        DatasetStore.open(store.path)
    (store.path / "manifest.json").write_text("{")
    with pytest.raises(StoreError, match="manifest.json: not valid JSON"):
        DatasetStore.open(store.path)


def test_read_errors_and_tampering(tmp_path, frames):
    store = write_store(frames, tmp_path / "s", label_method="x")
    with pytest.raises(StoreError, match=r"1 structure_id\(s\) not in the store, e.g. \['zz'\]"):
        store.read(["nacl-0", "zz"])
    shard = store.path / "shards" / "shard-00000.extxyz"
    shard.write_text(shard.read_text().replace("nacl-1", "nacl-9"))
    with pytest.raises(StoreError, match="content_hash"):
        store.verify()
    with pytest.raises(StoreError, match="frame 1 holds 'nacl-9', index says 'nacl-1'"):
        store.read()


# --- CLI import / info ----------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    return app


BROKEN_FILES = ["truncated.extxyz", "garbled.extxyz", "nan_force.extxyz", "charge_sum.extxyz",
                "overlapping.extxyz", "empty.extxyz"]


def test_cli_import_refuses_invalid_input(tmp_path):
    paths = [str(BROKEN / name) for name in BROKEN_FILES]
    result = CliRunner().invoke(_cli(), ["data", "import", *paths, "--out", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "nothing written" in result.stderr and "--skip-invalid" in result.stderr
    assert f"{BROKEN / 'nan_force.extxyz'}: frame 1: forces contain NaN (atom 5)" in result.stdout
    assert not (tmp_path / "s").exists()


def test_cli_import_skip_invalid_writes_valid_frames_and_rejects(tmp_path):
    paths = [str(BROKEN / name) for name in BROKEN_FILES]
    out = tmp_path / "s"
    result = CliRunner().invoke(_cli(), ["data", "import", *paths, "--out", str(out),
                                         "--skip-invalid", "--label-method", "synthetic"])
    assert result.exit_code == 0, result.output
    expected_ids, expected_problems = [], []
    for path in paths:
        read = read_structures(path)
        expected_ids += [a.info["structure_id"] for a in read.valid]
        expected_problems += [p.to_dict() for p in read.problems]
    store = DatasetStore.open(out)
    assert list(store.index.structure_id) == expected_ids
    assert len(expected_ids) == 2 + 3 + 1 + 1 + 1
    assert store.manifest["label_method"] == "synthetic"
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert rejects == expected_problems and len(rejects) == 8
    assert f"imported {len(expected_ids)} structure(s)" in result.stdout
    info = CliRunner().invoke(_cli(), ["data", "info", str(out)])
    assert info.exit_code == 0, info.output
    assert store.content_hash in info.stdout and "synthetic" in info.stdout
    assert "nan_force.extxyz" in info.stdout  # per-source table


def test_cli_info_on_non_store_is_one_line_error(tmp_path):
    result = CliRunner().invoke(_cli(), ["data", "info", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {tmp_path} is not a dataset store: manifest.json "
                                     "is missing (expected a directory written by write_store / "
                                     "`farfield data import`)")


def test_cli_help_has_examples():
    for command in ("validate", "import", "info"):
        result = CliRunner().invoke(_cli(), ["data", command, "--help"])
        assert result.exit_code == 0 and f"farfield data {command}" in result.stdout


def test_index_parquet_is_plain_pandas(tmp_path, frames):
    write_store(frames, tmp_path / "s", label_method="x")
    index = pd.read_parquet(tmp_path / "s" / "index.parquet")
    assert len(index) == 5 and index["n_atoms"].dtype.kind == "i"


def test_bundled_store_is_built_once_per_file_and_copied_into_workspaces(tmp_path, frames, monkeypatch):
    """The first workspace builds the bundled store in the user cache; a second workspace gets
    a copy with the same content hash without reading the file again; an unwritable cache
    falls back to building in the workspace."""
    from farfield.data import datasets

    bundled = tmp_path / "bundled.extxyz.xz"
    with lzma.open(bundled, "wt") as handle:
        ase.io.write(handle, frames, format="extxyz")
    monkeypatch.setattr(datasets, "BUNDLED_FILE", bundled)
    monkeypatch.setenv("FARFIELD_CACHE", str(tmp_path / "cache"))
    first = datasets.bundled_store(tmp_path / "ws1")
    assert (tmp_path / "cache" / "stores" / first.path.name / "manifest.json").is_file()

    def no_reading(*args, **kwargs):
        raise AssertionError("the bundled file was read again")

    monkeypatch.setattr(datasets, "read_structures", no_reading)
    second = datasets.bundled_store(tmp_path / "ws2")
    assert second.path == tmp_path / "ws2" / "datasets" / first.path.name
    assert second.manifest["content_hash"] == first.manifest["content_hash"]
    assert len(second.read()) == len(frames)

    monkeypatch.setattr(datasets, "read_structures", read_structures)
    (tmp_path / "readonly").write_text("a file, not a directory")
    monkeypatch.setenv("FARFIELD_CACHE", str(tmp_path / "readonly"))
    third = datasets.bundled_store(tmp_path / "ws3")
    assert third.manifest["content_hash"] == first.manifest["content_hash"]
