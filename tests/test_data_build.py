"""CoRE MOF catalogue, broken CIFs, parent selection, sampling and in-process labelling.

Real structures: small P1 frameworks streamed from the CoRE MOF archives of the
``core-mof`` package. Labels are GFN1-xTB single points from tblite (fractions of a
second for the 13–30-atom cells used here).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from ase import Atoms

from farfield.data.build import BuildSettings, build_dataset, work_dir_of
from farfield.data.catalogue import build_catalogue, catalogue_rows
from farfield.data.cif_p1 import read_p1_cif
from farfield.data.coremof import (
    StructureRejected,
    _ase_cif_to_atoms,
    cif_to_atoms,
    iter_coremof_cifs,
    refcode_of,
)
from farfield.data.labelling import label_gfn_xtb
from farfield.data.parent_selection import select_parents, size_bin_quotas
from farfield.data.records import ENERGY, FORCES, PARENT_ID, STRUCTURE_ID
from farfield.data.sampling import CONFIG_KIND, SamplingSettings, sample_configurations


def small_p1_cifs(n: int, max_atoms: int = 30):
    """The first ``n`` usable P1 CoRE MOF 2019-ASR entries with at most ``max_atoms`` atoms."""
    found, refcodes = [], set()
    for entry in iter_coremof_cifs(["2019-ASR"], max_sites=max_atoms):
        if read_p1_cif(entry.text) is None or refcode_of(entry.name) in refcodes:
            continue
        try:
            cif_to_atoms(entry.text, entry.name)
        except StructureRejected:
            continue
        found.append(entry)
        refcodes.add(refcode_of(entry.name))
        if len(found) == n:
            break
    return found


@pytest.fixture(scope="module")
def good_entries():
    return small_p1_cifs(3)


def _broken_variants(text: str) -> dict[str, tuple[str, str]]:
    """name → (CIF text, expected rejection reason), all derived from one good P1 CIF."""
    lines = text.splitlines()
    site_rows = [i for i, line in enumerate(lines) if len(line.split()) >= 5
                 and not line.lstrip().startswith(("_", "loop_"))]
    first, last = site_rows[0], site_rows[-1]
    fields = lines[first].split()

    def with_row(index: int, row: str) -> str:
        return "\n".join(lines[:index] + [row] + lines[index + 1:]) + "\n"

    symbol_at = next(k for k, v in enumerate(fields) if v.isalpha() and len(v) <= 2
                     and k > 0)
    unknown = fields.copy()
    unknown[symbol_at] = "Xx"
    occupancy_header = [i for i, line in enumerate(lines) if line.strip() == "_atom_site_occupancy"]
    header = [i for i, line in enumerate(lines) if line.strip().startswith("_atom_site_")]
    occ_col = occupancy_header[0] - header[0] if occupancy_header else None
    half = fields.copy()
    if occ_col is not None:
        half[occ_col] = "0.5"
    cut = lines[last]
    return {
        "truncated": ("\n".join(lines[:last] + [cut[: len(cut) // 2]]) + "\n", "unreadable"),
        "partial_occupancy": (with_row(first, "  ".join(half)), "partial_occupancy"),
        "no_cell": ("\n".join(ln for ln in lines if not ln.startswith("_cell_length")) + "\n",
                    "no_cell"),
        "unknown_element": (with_row(first, "  ".join(unknown)), "unknown_element"),
        "duplicate_atoms": ("\n".join(lines[: last + 1] + [lines[first]] + lines[last + 1:])
                            + "\n", "overlapping_atoms"),
    }


@pytest.fixture(scope="module")
def cif_folder(tmp_path_factory, good_entries):
    """Three good CoRE MOF CIFs and five broken ones derived from the first good one."""
    folder = tmp_path_factory.mktemp("cifs")
    for entry in good_entries:
        (folder / f"{entry.name}.cif").write_text(entry.text)
    broken = _broken_variants(good_entries[0].text)
    assert "_atom_site_occupancy" in good_entries[0].text  # the partial-occupancy case bites
    for name, (text, _) in broken.items():
        (folder / f"broken_{name}.cif").write_text(text)
    return folder, {f"broken_{k}": reason for k, (_, reason) in broken.items()}


def test_fast_p1_reader_equals_ase_on_real_coremof_cifs():
    checked = 0
    for entry in itertools.islice(iter_coremof_cifs(["2014"]), 0, 4764, 120):
        fast = read_p1_cif(entry.text)
        if fast is None:
            continue
        try:
            slow = _ase_cif_to_atoms(entry.text, entry.name)
        except StructureRejected:
            continue
        slow.pbc = True
        assert len(fast.atoms) == len(slow), entry.name
        np.testing.assert_array_equal(fast.atoms.numbers, slow.numbers, err_msg=entry.name)
        np.testing.assert_allclose(fast.atoms.cell.array, slow.cell.array, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.atoms.positions, slow.positions, rtol=0, atol=1e-9)
        checked += 1
    assert checked >= 30


def test_broken_cifs_are_reported_one_by_one_and_good_ones_kept(cif_folder, good_entries, tmp_path):
    folder, expected = cif_folder
    table = build_catalogue([str(folder)], cache_dir=tmp_path, n_workers=0, progress=False)
    by_name = table.set_index("name")
    for name, reason in expected.items():
        assert by_name.loc[name, "status"] == "rejected", name
        assert by_name.loc[name, "reason"] == reason, (name, by_name.loc[name, "detail"])
    for entry in good_entries:
        row = by_name.loc[entry.name]
        assert row["status"] == "ok" and row["n_atoms"] == len(cif_to_atoms(entry.text, entry.name))
    assert len(table) == len(expected) + len(good_entries)
    # the cache is reused: same table without parsing (a broken parser would show here)
    again = build_catalogue([str(folder)], cache_dir=tmp_path, n_workers=0, progress=False)
    pd.testing.assert_frame_equal(table, again)


def test_catalogue_rows_apply_coremof_metadata_flags(good_entries):
    entry = good_entries[0]
    rows = catalogue_rows([entry], {entry.name: {"DISORDER": "DISORDER"}})
    assert rows[0]["status"] == "rejected" and rows[0]["reason"] == "disorder"
    rows = catalogue_rows([entry], {entry.name: {"Extension": "charged"}})
    assert rows[0]["reason"] == "charged_framework"


def test_selection_spreads_over_sizes_and_metals_without_duplicates():
    rng = np.random.default_rng(0)
    metals = ["Zn", "Cu", "Co", "La", "Ce", "Mg"]
    rows = []
    for k in range(3000):
        n_atoms = int(rng.integers(10, 251))
        metal = metals[k % len(metals)]
        rows.append({"source": "s", "name": f"E{k}", "refcode": f"R{k // 2}", "status": "ok",
                     "reason": "", "detail": "", "n_sites": n_atoms, "n_atoms": n_atoms,
                     "formula": f"C{k % 700}H{n_atoms}{metal}", "skeleton": f"C{k % 700}H{n_atoms}M",
                     "elements": f"C H {metal}", "metals": metal})
    table = pd.DataFrame(rows)
    sel = select_parents(table, 60, min_atoms=10, max_atoms=250, n_bins=4, size_exponent=1.0,
                         max_per_metal=100, seed=3)
    chosen = sel.chosen
    assert len(chosen) == 60
    for key in ("refcode", "formula", "skeleton"):
        assert chosen[key].is_unique
    edges, quotas = size_bin_quotas(60, 10, 250, 4, 1.0)
    counts = np.histogram(chosen["n_atoms"], edges)[0]
    assert counts.tolist() == quotas and quotas == sorted(quotas, reverse=True)
    # lanthanides count as one family: La + Ce together get no more than any single metal + 1
    family = chosen["metals"].replace({"La": "Ln", "Ce": "Ln"}).value_counts()
    assert family.max() - family.min() <= 2
    assert set(sel.skipped["reason"]) <= {"atom_count", "duplicate_refcode", "duplicate_formula",
                                          "duplicate_skeleton"}
    again = select_parents(table, 60, min_atoms=10, max_atoms=250, n_bins=4, size_exponent=1.0,
                           max_per_metal=100, seed=3)
    pd.testing.assert_frame_equal(chosen, again.chosen)
    # places a bin cannot fill (no small parents at all) go to the other bins
    large_only = table[table["n_atoms"] > 40]
    sel = select_parents(large_only, 60, min_atoms=10, max_atoms=250, n_bins=4, seed=3)
    assert len(sel.chosen) == 60 and sel.chosen["n_atoms"].min() > 40


def test_sampling_kinds_strains_and_stable_random_streams(good_entries):
    atoms = cif_to_atoms(good_entries[0].text, good_entries[0].name)
    settings = SamplingSettings(configs_per_parent=4, rattle_sigma=0.05, isotropic_strain=0.03,
                                shear_strain=0.02)
    frames = sample_configurations(atoms, "P", "test", settings, seed=1)
    assert [f.info[CONFIG_KIND] for f in frames] == ["input", "rattle", "strain_iso", "strain_shear"]
    assert [f.info[STRUCTURE_ID] for f in frames] == [f"P-c{k}" for k in range(4)]
    assert all(f.info[PARENT_ID] == "P" for f in frames)
    np.testing.assert_allclose(frames[0].positions, atoms.positions, atol=1e-8)
    np.testing.assert_array_equal(frames[1].cell.array, atoms.cell.array)
    ratio = np.linalg.solve(atoms.cell.array, frames[2].cell.array)  # = I + ε, isotropic
    eps = ratio[0, 0] - 1
    assert 0 < abs(eps) <= 0.03 and np.allclose(ratio, (1 + eps) * np.eye(3), atol=1e-12)
    shear = np.linalg.solve(atoms.cell.array, frames[3].cell.array) - np.eye(3)
    assert np.allclose(np.diag(shear), 0, atol=1e-12) and np.allclose(shear, shear.T, atol=1e-12)
    assert 0 < np.abs(shear).max() <= 0.04
    displacement = frames[1].positions - atoms.positions
    assert 0.02 < displacement.std() < 0.08
    again = sample_configurations(atoms, "P", "test", settings, seed=1)
    other_seed = sample_configurations(atoms, "P", "test", settings, seed=2)
    np.testing.assert_array_equal(frames[1].positions, again[1].positions)
    assert not np.array_equal(frames[1].positions, other_seed[1].positions)


@pytest.fixture(scope="module")
def folder_build(cif_folder, tmp_path_factory):
    """An in-process build (no Ray) of the CIF folder: good parents, 2 configs each."""
    folder, _ = cif_folder
    out = tmp_path_factory.mktemp("build") / "store"
    settings = BuildSettings(sources=[str(folder)], parents=3, spare_fraction=0.0, min_atoms=1,
                             max_atoms=40, size_bins=1, max_per_metal=None, shard_size=2,
                             sampling=SamplingSettings(configs_per_parent=2))
    store, report = build_dataset(settings, out, n_workers=0, progress=False,
                                  cache_dir=tmp_path_factory.mktemp("cache"))
    return settings, store, report, out


def test_folder_build_labels_the_good_structures_and_records_rejections(folder_build, cif_folder,
                                                                         good_entries):
    settings, store, report, out = folder_build
    _, expected = cif_folder
    # parents of a CIF folder are named after the files
    assert sorted(store.index["parent_id"].unique()) == sorted(e.name for e in good_entries)
    assert len(store) == 2 * len(good_entries) and report["n_failures"] == 0
    rejections = pd.read_csv(work_dir_of(out) / "rejections.csv").set_index("name")
    for name, reason in expected.items():
        assert rejections.loc[name, "reason"] == reason
    manifest = store.manifest
    assert manifest["label_method"].startswith("GFN1-xTB")
    assert manifest["provenance"]["settings"]["sources"] == [str(cif_folder[0])]
    assert {"tblite", "ase", "ray"} <= set(manifest["provenance"]["versions"])


def test_labels_in_a_shard_equal_labels_alone(folder_build):
    _, store, _, _ = folder_build
    for atoms in store.read():
        bare = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        bare.info[STRUCTURE_ID] = atoms.info[STRUCTURE_ID]
        alone = label_gfn_xtb(bare)
        assert abs(alone.info[ENERGY] - atoms.info[ENERGY]) <= 1e-8
        np.testing.assert_allclose(alone.arrays[FORCES], atoms.arrays[FORCES], rtol=0, atol=1e-8)


def test_rerun_resumes_from_shards_and_refuses_other_settings(folder_build, tmp_path):
    settings, store, _, out = folder_build
    again, report = build_dataset(settings, out, n_workers=0, progress=False, cache_dir=tmp_path)
    assert report["labelling"]["shards_labelled"] == 0
    assert report["labelling"]["shards_done_before"] > 0
    assert again.content_hash == store.content_hash
    changed = settings.model_copy(update={"seed": 7})
    with pytest.raises(ValueError, match="other settings.*seed: 0 -> 7"):
        build_dataset(changed, out, n_workers=0, progress=False, cache_dir=tmp_path)


def test_failures_are_recorded_not_dropped(folder_build, tmp_path, monkeypatch):
    """An SCF failure goes to failures.jsonl with its reason; the other structures survive."""
    settings, store, _, out = folder_build
    import farfield.data.label_shards as label_shards

    victim = store.index["structure_id"].iloc[1]
    real = label_shards.label_gfn_xtb

    def flaky(atoms, *args, **kwargs):
        if atoms.info[STRUCTURE_ID] == victim:
            raise ValueError(f"{victim}: GFN1-xTB single point failed: SCF did not converge")
        return real(atoms, *args, **kwargs)

    monkeypatch.setattr(label_shards, "label_gfn_xtb", flaky)
    out2 = tmp_path / "store"
    settings2 = settings.model_copy(update={"parents": 3, "min_configs": 1})
    store2, report = build_dataset(settings2, out2, n_workers=0, progress=False,
                                   cache_dir=tmp_path)
    failures = [json.loads(line) for line in (out2 / "failures.jsonl").read_text().splitlines()]
    assert [f["structure_id"] for f in failures] == [victim]
    assert failures[0]["reason"] == "scf_not_converged"
    assert victim not in set(store2.index["structure_id"])
    assert len(store2) == len(store) - 1
    # by default a parent needs min(3, configs_per_parent) = 2 labelled frames: dropped, with why
    store3, _ = build_dataset(settings.model_copy(update={"parents": 3}), out2, n_workers=0,
                              progress=False, cache_dir=tmp_path)
    victim_parent = store.index.set_index("structure_id").loc[victim, "parent_id"]
    assert victim_parent not in set(store3.index["parent_id"])
    assert len(store3) == len(store) - 2
    reasons = [json.loads(line)["reason"] for line in (out2 / "failures.jsonl").read_text().splitlines()]
    assert sorted(reasons) == ["parent_dropped", "scf_not_converged"]


def test_md_snapshots_are_labelled_frames_of_a_real_gfn_xtb_trajectory(good_entries, tmp_path):
    """--md-snapshots: frames from a short GFN1-xTB Langevin run, labelled like the others."""
    folder = tmp_path / "one"
    folder.mkdir()
    entry = min(good_entries, key=lambda e: e.n_sites)
    (folder / f"{entry.name}.cif").write_text(entry.text)
    sampling = SamplingSettings(configs_per_parent=2, md_snapshots=2, md_interval=2,
                                md_temperature=600.0)
    settings = BuildSettings(sources=[str(folder)], parents=1, spare_fraction=0.0, min_atoms=1,
                             max_atoms=40, size_bins=1, max_per_metal=None, sampling=sampling)
    store, report = build_dataset(settings, tmp_path / "store", n_workers=0, progress=False,
                                  cache_dir=tmp_path)
    frames = {a.info[STRUCTURE_ID]: a for a in store.read()}
    assert sorted(frames) == [f"{entry.name}-c{k}" for k in range(4)]
    assert [frames[f"{entry.name}-c{k}"].info[CONFIG_KIND] for k in range(4)] == [
        "input", "rattle", "md", "md"]
    start, first, second = (frames[f"{entry.name}-c{k}"] for k in (0, 2, 3))
    moved = np.linalg.norm(first.positions - start.positions, axis=1)
    assert 0.001 < moved.mean() < 0.5  # 2 steps of 0.5 fs at 600 K: small but real motion
    assert not np.allclose(first.positions, second.positions)
    for frame in (first, second):
        assert frame.info[PARENT_ID] == start.info[PARENT_ID]
        bare = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=True)
        assert abs(label_gfn_xtb(bare).info[ENERGY] - frame.info[ENERGY]) <= 1e-8
