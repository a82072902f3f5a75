"""``farfield data import --format aselmdb``: fairchem-style ``.aselmdb`` shards written by
ase-db-backends in the test, imported through the sharded pipeline, with selection rules.

The source (``make_source``): three shards, five parents whose configurations are spread
over the shards, one row with a NaN force (a bad frame), one row without charges, one
charged row, one parent of another element (K instead of Na). Expected outcomes are
computed here from what was written, never from the importer.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.db
import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from pydantic import ValidationError
from typer.testing import CliRunner

import farfield.data.aselmdb_import as aselmdb_import
from farfield.data.aselmdb_import import import_aselmdb, work_dir_of
from farfield.data.importers.aselmdb import AselmdbOptions, read_rows
from farfield.data.selection import EXCLUDED_FILE, SelectionRules
from farfield.data.store import write_store

KEYS = {"charges": "ddec", "total_charge": "charge"}
OPTIONS = AselmdbOptions(id_key="sid", parent_key="mof")
#: (shard, parent) of each row, in write order; five parents over three shards.
LAYOUT = [(0, "p0"), (0, "p1"), (0, "p2"), (0, "p0"), (1, "p1"), (1, "p0"), (1, "p3"),
          (1, "p2"), (1, "p4"), (2, "p0"), (2, "p1"), (2, "p3"), (2, "p2"), (2, "p4")]


def _cell(metal: str, seed: int):
    atoms = bulk(f"{metal}Cl", "rocksalt", a=5.64 if metal == "Na" else 6.29, cubic=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def make_source(folder: Path) -> list[dict]:
    """Write the shards; return one truth record per row (file, row id, labels, flags)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    truth = []
    for k, (shard, parent) in enumerate(LAYOUT):
        atoms = _cell("K" if parent == "p4" else "Na", seed=k)
        energy = -27.0 - rng.random()
        forces = rng.normal(scale=0.3, size=(len(atoms), 3))
        record = {"sid": f"s{k:02d}", "parent": parent, "energy": energy, "forces": forces,
                  "positions": atoms.positions.copy(), "charges": np.tile([0.8, -0.8], 4),
                  "total_charge": 0.0, "bad": False}
        if k == 4:
            record["bad"] = True
            forces[2, 1] = np.nan
        if k == 5:  # no charges, and the lowest energy of p0
            record["charges"], record["energy"] = None, -29.5
        if k == 7:  # a cation: total charge +1 e, no reference charges
            record["charges"], record["total_charge"] = None, 1.0
        atoms.calc = SinglePointCalculator(atoms, energy=record["energy"], forces=forces)
        data = {"mof": parent, "sid": record["sid"], "charge": record["total_charge"]}
        if record["charges"] is not None:
            data["ddec"] = record["charges"]
        record["file"] = str(folder / f"data.{shard:04d}.aselmdb")
        with ase.db.connect(record["file"]) as db:
            record["row"] = db.write(atoms, data=data)
        truth.append(record)
    return truth


@pytest.fixture
def source(tmp_path):
    return tmp_path / "src", make_source(tmp_path / "src")


def run(folder, out, **kwargs):
    arguments = {"options": OPTIONS, "key_map": KEYS, "n_workers": 0, "chunk_rows": 2,
                 "progress": False, "skip_invalid": True}
    return import_aselmdb([folder], out, **{**arguments, **kwargs})


def stored(store) -> dict:
    return {atoms.info["structure_id"]: atoms for atoms in store.read()}


def test_every_valid_row_is_imported_bit_exact_and_the_bad_row_named(source, tmp_path):
    folder, truth = source
    report = run(folder, tmp_path / "store")
    good = [t for t in truth if not t["bad"]]
    records = stored(report.store)
    assert sorted(records) == sorted(t["sid"] for t in good)
    for t in good:
        atoms = records[t["sid"]]
        assert atoms.info["parent_id"] == t["parent"]
        assert atoms.info["energy"] == t["energy"]
        np.testing.assert_array_equal(atoms.arrays["forces"], t["forces"])
        np.testing.assert_array_equal(atoms.positions, t["positions"])
        assert atoms.info["total_charge"] == t["total_charge"]
        if t["charges"] is None:
            assert "charges" not in atoms.arrays
        else:
            np.testing.assert_array_equal(atoms.arrays["charges"], t["charges"])
    bad = next(t for t in truth if t["bad"])
    assert [str(p) for p in report.problems] == [
        f"{bad['file']}: row {bad['row']}: forces contain NaN (atom 2)"]
    rejects = [json.loads(line) for line in
               (report.store.path / "rejects.jsonl").read_text().splitlines()]
    assert rejects == [{"file": bad["file"], "row": bad["row"],
                        "message": "forces contain NaN (atom 2)"}]
    report.store.verify()
    manifest = report.store.manifest
    assert manifest["n_parents"] == len({t["parent"] for t in good})
    assert manifest["has_charges"]["without"] == sum(t["charges"] is None for t in good)
    assert manifest["provenance"]["format"] == "aselmdb"
    import hashlib

    assert {i["file"]: i["sha256"] for i in manifest["provenance"]["inputs"]} == {
        Path(f).name: hashlib.sha256(Path(f).read_bytes()).hexdigest()
        for f in {t["file"] for t in truth}}
    assert not (report.store.path / EXCLUDED_FILE).exists()
    assert not work_dir_of(tmp_path / "store").exists()


def test_a_bad_row_stops_the_import_without_skip_invalid(source, tmp_path):
    folder, truth = source
    report = run(folder, tmp_path / "store", skip_invalid=False)
    assert report.store is None and not (tmp_path / "store").exists()
    bad = next(t for t in truth if t["bad"])
    assert [(p.file, p.frame) for p in report.problems] == [(bad["file"], bad["row"])]
    assert all("\n" not in str(p) for p in report.problems)


def expected_lowest(records: list[dict], k: int) -> set[str]:
    by_parent: dict[str, list[dict]] = {}
    for t in records:
        by_parent.setdefault(t["parent"], []).append(t)
    return {t["sid"] for group in by_parent.values()
            for t in sorted(group, key=lambda t: t["energy"])[:k]}


def test_lowest_energy_per_parent_picks_across_shards(source, tmp_path):
    folder, truth = source
    good = [t for t in truth if not t["bad"]]
    report = run(folder, tmp_path / "store", rules=SelectionRules(lowest_energy_per_parent=2))
    assert set(stored(report.store)) == expected_lowest(good, 2)
    excluded = pd.read_parquet(report.store.path / EXCLUDED_FILE)
    assert set(excluded["structure_id"]) == {t["sid"] for t in good} - expected_lowest(good, 2)
    assert set(excluded["reason"]) == {"lowest_energy_per_parent"}
    rows = {(t["file"], t["row"]) for t in good if t["sid"] in set(excluded["structure_id"])}
    assert set(zip(excluded["file"], excluded["row"])) == rows
    selection = report.store.manifest["provenance"]["selection"]
    assert selection["rules"]["lowest_energy_per_parent"] == 2
    assert selection["valid"] == len(good)
    assert selection["kept"] == len(expected_lowest(good, 2))


def test_require_charges_acts_before_the_lowest_energy_rule(source, tmp_path):
    folder, truth = source
    good = [t for t in truth if not t["bad"]]
    lowest = run(folder, tmp_path / "a", rules=SelectionRules(lowest_energy_per_parent=1))
    no_charges = next(t for t in good if t["sid"] == "s05")
    assert no_charges["sid"] in set(stored(lowest.store))  # lowest of p0, has no charges
    report = run(folder, tmp_path / "b", rules=SelectionRules(require_charges=True,
                                                              lowest_energy_per_parent=1))
    with_charges = [t for t in good if t["charges"] is not None]
    assert set(stored(report.store)) == expected_lowest(with_charges, 1)
    excluded = pd.read_parquet(report.store.path / EXCLUDED_FILE).set_index("structure_id")
    assert excluded.loc["s05", "reason"] == "require_charges"
    assert report.store.manifest["has_charges"]["without"] == 0


def test_neutral_max_atoms_and_rare_elements(source, tmp_path):
    folder, truth = source
    good = [t for t in truth if not t["bad"]]
    report = run(folder, tmp_path / "store", rules=SelectionRules(
        neutral_only=True, max_atoms=8, min_element_parents=2))
    # p4 is the only parent with K: K is in 1 < 2 parents, so p4 goes
    expected = {t["sid"] for t in good if t["total_charge"] == 0 and t["parent"] != "p4"}
    assert set(stored(report.store)) == expected
    reasons = pd.read_parquet(report.store.path / EXCLUDED_FILE).set_index("structure_id")["reason"]
    assert reasons["s07"] == "neutral_only"
    assert {reasons[t["sid"]] for t in good if t["parent"] == "p4"} == {"min_element_parents"}
    rare = report.store.manifest["provenance"]["selection"]["rare_elements"]
    assert rare["elements"] == ["K"]
    with pytest.raises(ValueError, match=r"keeps none of the 13 valid structure\(s\)"):
        run(folder, tmp_path / "none", rules=SelectionRules(max_atoms=7))
    assert not (tmp_path / "none").exists()


def test_the_store_equals_write_store_of_the_same_records(source, tmp_path):
    """The sharded writer (byte ranges of the chunks' frames files) against write_store."""
    folder, truth = source
    report = run(folder, tmp_path / "store", shard_size=3,
                 rules=SelectionRules(lowest_energy_per_parent=2))
    kept = set(stored(report.store))
    frames = []
    for file in sorted({t["file"] for t in truth}):
        rows = [t["row"] for t in truth if t["file"] == file]
        frames += [atoms for _, atoms in read_rows(file, rows, OPTIONS, key_map=KEYS)
                   if not isinstance(atoms, list) and atoms.info["structure_id"] in kept]
    reference = write_store(frames, tmp_path / "reference", label_method="unspecified",
                            shard_size=3)
    assert report.store.manifest["n_shards"] == reference.manifest["n_shards"] > 1
    assert report.store.content_hash == reference.content_hash
    pd.testing.assert_frame_equal(report.store.index, reference.index)


def test_an_interrupted_import_resumes_where_it_stopped(source, tmp_path, monkeypatch):
    folder, _ = source
    original, calls = aselmdb_import.read_chunk, []

    def interrupted(*args):
        calls.append(args[1]["name"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(aselmdb_import, "read_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(folder, tmp_path / "store")
    assert not (tmp_path / "store").exists()
    monkeypatch.setattr(aselmdb_import, "read_chunk", original)
    with pytest.raises(ValueError, match="other inputs or read options.*options"):
        run(folder, tmp_path / "store", options=AselmdbOptions(id_key="sid"))
    resumed = run(folder, tmp_path / "store")
    assert resumed.reading["chunks_done_before"] == 2
    assert resumed.reading["chunks_read"] == resumed.reading["chunks"] - 2
    fresh = run(folder, tmp_path / "fresh")
    assert resumed.store.content_hash == fresh.store.content_hash


def test_another_selection_of_kept_work_reads_nothing_again(source, tmp_path):
    folder, truth = source
    first = run(folder, tmp_path / "store", keep_work=True)
    assert first.work_dir is not None and first.work_dir.is_dir()
    again = run(folder, tmp_path / "store", overwrite=True, keep_work=True,
                rules=SelectionRules(lowest_energy_per_parent=1), label_method="DFT")
    assert again.reading["chunks_read"] == 0
    assert set(stored(again.store)) == expected_lowest([t for t in truth if not t["bad"]], 1)
    assert again.store.manifest["label_method"] == "DFT"


def test_parent_pattern_keeps_matching_rows_and_takes_the_group(source, tmp_path):
    folder, truth = source
    options = AselmdbOptions(id_key="sid", parent_key="mof", parent_pattern=r"^p([0-2])$")
    report = run(folder, tmp_path / "store", options=options)
    good = [t for t in truth if not t["bad"] and t["parent"] in ("p0", "p1", "p2")]
    records = stored(report.store)
    assert sorted(records) == sorted(t["sid"] for t in good)
    assert {a.info["parent_id"] for a in records.values()} == {"0", "1", "2"}
    assert report.reading["n_left_out"] == sum(t["parent"] in ("p3", "p4") for t in truth)


def test_default_ids_and_parents_without_keys(source, tmp_path):
    folder, truth = source
    report = run(folder, tmp_path / "store", options=AselmdbOptions())
    records = stored(report.store)
    expected = {f"{Path(t['file']).stem}-{t['row']}" for t in truth if not t["bad"]}
    assert set(records) == expected
    assert all(a.info["parent_id"] == sid for sid, a in records.items())


def test_a_file_that_is_not_an_lmdb_database_is_a_problem_of_that_file(source, tmp_path):
    folder, truth = source
    (folder / "broken.aselmdb").write_bytes(b"not an lmdb file" * 100)
    report = run(folder, tmp_path / "store")
    file_level = [p for p in report.problems if p.frame is None]
    assert len(file_level) == 1 and str(file_level[0]).startswith(
        f"{folder / 'broken.aselmdb'}: cannot open as an ASE LMDB database")
    assert len(report.store) == sum(not t["bad"] for t in truth)


def test_ray_workers_write_the_same_store(source, tmp_path):
    folder, _ = source
    here = run(folder, tmp_path / "here", rules=SelectionRules(lowest_energy_per_parent=2))
    on_ray = run(folder, tmp_path / "ray", n_workers=2, chunk_rows=4,
                 rules=SelectionRules(lowest_energy_per_parent=2))
    assert on_ray.store.content_hash == here.store.content_hash
    assert {w["pid"] for w in on_ray.reading["workers"]} - {w["pid"] for w in here.reading["workers"]}
    assert all(w["peak_rss_mb"] > 0 for w in on_ray.reading["workers"])


def test_configs_reject_unknown_keys_and_options_that_do_not_fit():
    with pytest.raises(ValidationError, match="lowest_energy"):
        SelectionRules(lowest_energy=3)
    with pytest.raises(ValidationError, match="parent"):
        AselmdbOptions(parent="mof")
    with pytest.raises(ValidationError, match="needs id_key"):
        AselmdbOptions(frame_key="fid")
    with pytest.raises(ValidationError, match="not a regular expression"):
        AselmdbOptions(parent_key="mof", parent_pattern="(")


def _cli(*args):
    from farfield.orchestrator.cli import app

    return CliRunner().invoke(app, ["data", "import", *map(str, args)])


def test_cli_import_prints_the_bad_row_once_and_the_selection(source, tmp_path):
    folder, truth = source
    bad = next(t for t in truth if t["bad"])
    base = ["--format", "aselmdb", folder, "--id-key", "sid", "--parent-key", "mof",
            "--key", "charges=ddec", "--workers", "0", "--out", tmp_path / "store"]
    refused = _cli(*base)
    assert refused.exit_code == 1
    line = f"{bad['file']}: row {bad['row']}: forces contain NaN (atom 2)"
    assert refused.output.count(line) == 1
    assert not (tmp_path / "store").exists()
    result = _cli(*base, "--skip-invalid", "--lowest-energy-per-parent", "1")
    assert result.exit_code == 0, result.output
    kept = expected_lowest([t for t in truth if not t["bad"]], 1)
    assert f"selection: {len(kept)} of {sum(not t['bad'] for t in truth)} valid" in result.output
    from farfield.data.store import DatasetStore

    assert set(stored(DatasetStore.open(tmp_path / "store"))) == kept


@pytest.mark.parametrize("args, message", [
    (["--format", "extxyz", "--parent-pattern", "x"], "--parent-pattern is only used with --format aselmdb"),
    (["--format", "aselmdb", "--frame-key", "fid"], "needs id_key"),
    (["--format", "aselmdb", "--table", "t.csv"], "--table is only used with --format qmof"),
    (["--format", "aselmdb", "--key", "parent_id=mof"], "ids come from --id-key"),
])
def test_cli_argument_errors_are_one_line(source, tmp_path, args, message):
    folder, _ = source
    result = _cli(folder, "--out", tmp_path / "store", *args)
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]


def test_selection_options_work_for_in_memory_formats_too(tmp_path):
    """--format extxyz with --lowest-energy-per-parent: the same rules, through write_store."""
    import ase.io

    rng = np.random.default_rng(3)
    frames, energies = [], {}
    for k in range(6):
        atoms = _cell("Na", seed=100 + k)
        energies[f"x{k}"] = -27.0 - rng.random()
        atoms.info.update(energy=energies[f"x{k}"], structure_id=f"x{k}", parent_id=f"q{k % 2}")
        atoms.arrays["forces"] = rng.normal(scale=0.3, size=(len(atoms), 3))
        frames.append(atoms)
    ase.io.write(tmp_path / "f.extxyz", frames)
    result = _cli(tmp_path / "f.extxyz", "--lowest-energy-per-parent", "2", "--out",
                  tmp_path / "store")
    assert result.exit_code == 0, result.output
    records = [{"sid": sid, "parent": f"q{int(sid[1:]) % 2}", "energy": e}
               for sid, e in energies.items()]
    from farfield.data.store import DatasetStore

    store = DatasetStore.open(tmp_path / "store")
    assert set(stored(store)) == expected_lowest(records, 2)
    assert store.manifest["provenance"]["selection"]["excluded"] == {"lowest_energy_per_parent": 2}
    excluded = pd.read_parquet(store.path / EXCLUDED_FILE)
    assert set(excluded["structure_id"]) == set(energies) - expected_lowest(records, 2)


def test_docs_aselmdb_example_runs_and_prints_what_the_docs_show(tmp_path, monkeypatch):
    """docs/data.md's '.aselmdb' section: its Python snippet and its ```bash command run, and
    the output is the ```text block (the paper-subset commands are ```shell: real data)."""
    import re
    import shlex

    text = (Path(__file__).parents[1] / "docs" / "data.md").read_text()
    section = text[text.index("## The paper's datasets as distributed"):]
    python = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (command,) = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    (shown,) = re.findall(r"```text\n(.*?)```", section, flags=re.DOTALL)
    monkeypatch.chdir(tmp_path)
    for block in python:
        exec(compile(block, "docs/data.md: aselmdb", "exec"), {})  # noqa: S102
    args = shlex.split(command.replace("\\\n", " "))
    assert args[:3] == ["farfield", "data", "import"]
    result = _cli(*args[3:])
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()  # the progress bar goes to stderr
    assert printed[:-1] == shown.splitlines()[:-1]
    assert printed[-1].startswith("content hash: sha256:")


def _validate(*args):
    from farfield.orchestrator.cli import app

    return CliRunner().invoke(app, ["data", "validate", *map(str, args)])


def test_validate_names_the_bad_row_a_repeated_id_and_a_broken_file_and_counts_the_rest(source, tmp_path):
    folder, truth = source
    extra = truth[0]  # one more row, in the last shard, with the id of the first row
    atoms = ase.db.connect(extra["file"]).get_atoms(id=extra["row"], add_additional_information=False)
    with ase.db.connect(truth[-1]["file"]) as db:
        repeated_row = db.write(atoms, data={"mof": extra["parent"], "sid": extra["sid"], "charge": 0.0})
    (folder / "broken.aselmdb").write_bytes(b"not an lmdb file" * 100)
    bad = next(t for t in truth if t["bad"])
    result = _validate("--format", "aselmdb", folder, "--id-key", "sid", "--parent-key", "mof",
                       "--key", "charges=ddec")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()  # the progress bar goes to stderr
    assert lines.count(f"{bad['file']}: row {bad['row']}: forces contain NaN (atom 2)") == 1
    assert lines.count(f"{truth[-1]['file']}: row {repeated_row}: duplicate structure_id "
                       f"{extra['sid']!r} (first seen in {extra['file']} row {extra['row']})") == 1
    assert sum(line.startswith(f"{folder / 'broken.aselmdb'}: cannot open as an ASE LMDB database")
               for line in lines) == 1
    assert f"3 problem(s) in 3 of {len({t['file'] for t in truth}) + 1} file(s)" in result.stderr

    from farfield.data.importing import validate_files

    reports = validate_files([folder], format="aselmdb", key_map={"charges": "ddec"}, options=OPTIONS)
    by_file = {Path(r.file).name: r for r in reports}
    for file in {t["file"] for t in truth}:
        rows = [t for t in truth if t["file"] == file]
        report = by_file[Path(file).name]
        assert report.n_frames == len(rows) + (file == truth[-1]["file"])
        assert sorted(report.frames) == sorted(t["row"] for t in rows if not t["bad"])
        assert report.valid == []  # nothing kept in memory


def test_validate_counts_the_rows_a_parent_pattern_leaves_out_and_passes_clean_files(source, tmp_path):
    folder, truth = source
    clean = [t["file"] for t in truth if t["file"] != next(t for t in truth if t["bad"])["file"]]
    args = ["--format", "aselmdb", *sorted(set(clean)), "--id-key", "sid", "--parent-key", "mof",
            "--parent-pattern", "^p[0-2]$"]
    result = _validate(*args)
    assert result.exit_code == 0, result.output
    kept = [t for t in truth if t["file"] in clean and t["parent"] in ("p0", "p1", "p2")]
    assert f"all {len(kept)} frame(s) valid" in result.output
    for file in sorted(set(clean)):
        left_out = sum(t["file"] == file and t["parent"] in ("p3", "p4") for t in truth)
        n_rows = sum(t["file"] == file for t in truth)
        note = f"note: {file}: {left_out} of {n_rows} row(s) left out by --parent-pattern"
        assert (note in result.stdout) == (left_out > 0)
        assert (f"note: {file}:" in result.stdout) == (left_out > 0)
    wrong = _validate("--format", "extxyz", clean[0], "--parent-pattern", "x")
    assert wrong.exit_code == 1 and "--parent-pattern is only used with --format aselmdb" in wrong.output
    wrong = _validate("--format", "aselmdb", folder, "--table", "t.csv")
    assert wrong.exit_code == 1 and "--table is only used with --format qmof" in wrong.output
