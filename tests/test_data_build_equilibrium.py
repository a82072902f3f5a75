"""Near-equilibrium builds: labelled relaxation steps, thermal frames, large-parent quota,
element coverage, force cap and reuse of earlier labels (real CoRE MOF CIFs, GFN1-xTB)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms

from farfield.data.build import BuildSettings, build_dataset
from farfield.data.extxyz import format_frame
from farfield.data.labelling import label_gfn_xtb
from farfield.data.parent_selection import element_parent_counts, select_covered_parents
from farfield.data.records import ENERGY, FORCES, PARENT_ID, STRUCTURE_ID
from farfield.data.sampling import CONFIG_KIND, SamplingSettings
from farfield.data.summary import force_statistics, store_summary
from tests.test_data_build import small_p1_cifs


@pytest.fixture(scope="module")
def relaxed_build(tmp_path_factory):
    """One small real MOF: input + 2 relaxation steps + 1 thermal frame, in process."""
    entry = min(small_p1_cifs(2), key=lambda e: e.n_sites)
    folder = tmp_path_factory.mktemp("cifs")
    (folder / f"{entry.name}.cif").write_text(entry.text)
    sampling = SamplingSettings(relax_steps=2, thermal_snapshots=1, thermal_sigma=0.02)
    settings = BuildSettings(sources=[str(folder)], parents=1, spare_fraction=0.0, min_atoms=1,
                             max_atoms=40, size_bins=1, max_per_metal=None, sampling=sampling,
                             min_configs=2)
    out = tmp_path_factory.mktemp("build") / "store"
    store, _ = build_dataset(settings, out, n_workers=0, progress=False,
                             cache_dir=tmp_path_factory.mktemp("cache"))
    return entry, settings, store, folder


def test_relaxation_frames_are_labelled_optimiser_steps_that_lower_the_energy(relaxed_build):
    entry, _, store, _ = relaxed_build
    frames = {a.info[STRUCTURE_ID]: a for a in store.read()}
    assert sorted(frames) == [f"{entry.name}-c{k}" for k in range(4)]
    kinds = [frames[f"{entry.name}-c{k}"].info[CONFIG_KIND] for k in range(4)]
    assert kinds == ["input", "relax", "relax", "thermal"]
    c0, c1, c2, c3 = (frames[f"{entry.name}-c{k}"] for k in range(4))
    # each relaxation step moved atoms by at most the optimiser's max step, along the forces
    for before, after in ((c0, c1), (c1, c2)):
        step = np.linalg.norm(after.positions - before.positions, axis=1)
        assert 0 < step.max() <= 0.15 + 1e-6
        assert np.sum((after.positions - before.positions) * before.arrays[FORCES]) > 0
    assert c2.info[ENERGY] < c0.info[ENERGY]
    # the thermal frame is the last relaxation geometry, strained ≤ 1 % and displaced
    scale = np.cbrt(c3.get_volume() / c2.get_volume())
    assert abs(scale - 1) <= 0.01 + 1e-9
    assert np.allclose(c3.cell.array, c2.cell.array * scale, atol=1e-6)
    # every frame's labels are a single point of exactly its geometry
    for frame in (c1, c3):
        bare = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=True)
        again = label_gfn_xtb(bare)
        assert abs(again.info[ENERGY] - frame.info[ENERGY]) <= 1e-7
        assert np.allclose(again.arrays[FORCES], frame.arrays[FORCES], atol=1e-6)


def test_reused_labels_replace_the_input_single_point(relaxed_build, tmp_path):
    """--reuse-labels: an identical labelled input geometry is taken as c0 (not recomputed);
    a doctored energy proves it was read rather than recalculated."""
    entry, settings, store, folder = relaxed_build
    c0 = next(a for a in store.read() if a.info[CONFIG_KIND] == "input")
    doctored = c0.copy()
    doctored.info[ENERGY] = c0.info[ENERGY] + 1.0
    path = tmp_path / "old.extxyz"
    path.write_text(format_frame(doctored))
    out = tmp_path / "again"
    store2, _ = build_dataset(settings.model_copy(update={"sampling": settings.sampling.model_copy(
        update={"relax_steps": 1, "thermal_snapshots": 0})}), out, n_workers=0, progress=False,
        cache_dir=tmp_path, reuse_labels=path)
    frames = {a.info[STRUCTURE_ID]: a for a in store2.read()}
    assert frames[f"{entry.name}-c0"].info[ENERGY] == pytest.approx(c0.info[ENERGY] + 1.0)
    assert np.allclose(frames[f"{entry.name}-c0"].arrays[FORCES], c0.arrays[FORCES])
    assert frames[f"{entry.name}-c1"].info[CONFIG_KIND] == "relax"


def test_reused_relaxation_is_taken_whole_when_its_frames_match(relaxed_build, tmp_path):
    """--reuse-labels with an earlier build's labelled shards: a parent whose input geometry
    and frame kinds match is not relabelled at all (doctored energies survive); with other
    counts asked for, only c0 is reused and the relaxation runs again."""
    entry, settings, store, folder = relaxed_build
    frames = sorted(store.read(), key=lambda a: a.info[STRUCTURE_ID])
    old = tmp_path / "labelled"
    old.mkdir()
    doctored = []
    for k, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.info[ENERGY] = atoms.info[ENERGY] + 1.0 + k
        doctored.append(atoms)
    (old / "shard-00000.extxyz").write_text("".join(map(format_frame, doctored)))
    later = tmp_path / "later.extxyz"  # a second source with the same parent: the first one wins
    later.write_text("".join(format_frame(a) for a in frames))
    store2, _ = build_dataset(settings, tmp_path / "same", n_workers=0, progress=False,
                              cache_dir=tmp_path, reuse_labels=[old, later])
    again = {a.info[STRUCTURE_ID]: a for a in store2.read()}
    assert sorted(again) == sorted(a.info[STRUCTURE_ID] for a in frames)
    for atoms in doctored:
        new = again[atoms.info[STRUCTURE_ID]]
        assert new.info[ENERGY] == pytest.approx(atoms.info[ENERGY])
        assert new.info[CONFIG_KIND] == atoms.info[CONFIG_KIND]
        assert np.allclose(new.positions, atoms.positions)
        assert np.allclose(new.arrays[FORCES], atoms.arrays[FORCES])
        assert "labels_reused" not in new.info
    fewer = settings.model_copy(update={"sampling": settings.sampling.model_copy(
        update={"relax_steps": 1, "thermal_snapshots": 0})})
    store3, _ = build_dataset(fewer, tmp_path / "fewer", n_workers=0, progress=False,
                              cache_dir=tmp_path, reuse_labels=old)
    third = {a.info[STRUCTURE_ID]: a for a in store3.read()}
    assert sorted(third) == [f"{entry.name}-c0", f"{entry.name}-c1"]
    assert third[f"{entry.name}-c0"].info[ENERGY] == pytest.approx(doctored[0].info[ENERGY])
    # c1 recomputed: the true GFN1 energy of the step, not the doctored one
    assert third[f"{entry.name}-c1"].info[ENERGY] == pytest.approx(frames[1].info[ENERGY], abs=1e-6)


def test_force_cap_drops_frames_and_records_them(relaxed_build, tmp_path):
    """max_label_force is an assembly filter: frames above it go to failures.jsonl."""
    entry, settings, store, _ = relaxed_build
    stats = force_statistics(store).set_index("kind")
    cap = float(stats.loc["thermal", "max_atom_force"]) - 1e-6  # just below the thermal frame's max
    capped = settings.model_copy(update={"max_label_force": cap})
    work_copy = tmp_path / "store"
    import shutil

    shutil.copytree(store.path.parent / f"{store.path.name}.build", tmp_path / "store.build")
    store2, _ = build_dataset(capped, work_copy, n_workers=0, progress=False, cache_dir=tmp_path)
    kept = [a for a in store2.read()]
    assert all(np.linalg.norm(a.arrays[FORCES], axis=1).max() <= cap for a in kept)
    failures = (store2.path / "failures.jsonl").read_text()
    assert '"force_cap"' in failures
    assert len(kept) == len(store.read()) - failures.count('"force_cap"')


def _catalogue(rows):
    return pd.DataFrame([{"source": "s", "name": f"E{k}", "refcode": f"R{k}", "status": "ok",
                          "reason": "", "detail": "", "n_sites": n, "n_atoms": n,
                          "formula": f"F{k}", "skeleton": f"S{k}", "elements": els,
                          "metals": els.split()[-1]} for k, (n, els) in enumerate(rows)])


def test_covered_selection_meets_quota_and_element_rule():
    rng = np.random.default_rng(1)
    # Pt: in 3 structures only, hopeless; Br (not a metal family, so no round-robin share)
    # in ~6 % of them: reaches 10 parents only if topped up or by chance
    rows = [(int(rng.integers(12, 200)),
             "C H O" + (" Br" if k % 16 == 5 else "") + (" Pt" if k < 3 else f" {('Zn', 'Cu')[k % 2]}"))
            for k in range(2000)]
    table = _catalogue(rows)
    sel = select_covered_parents(table, 120, n_large=40, large_atoms=100, min_element_parents=10,
                                 min_atoms=10, max_atoms=200, n_bins=3, size_exponent=1.0, seed=0)
    chosen = sel.chosen
    counts = element_parent_counts(chosen)
    assert min(counts.values()) >= 10
    assert "Pt" not in counts  # too rare in the selection to be covered: dropped, recorded
    banned = set(element_parent_counts(table)) - set(counts)
    carries_banned = table["elements"].map(lambda e: bool(banned & set(e.split())))
    rare = sel.skipped[sel.skipped["reason"] == "rare_element"]
    assert sorted(rare["name"]) == sorted(table.loc[carries_banned, "name"])
    assert (chosen["n_atoms"] > 100).sum() >= 40 and chosen["large"].sum() >= 40
    assert chosen["refcode"].is_unique
    again = select_covered_parents(table, 120, n_large=40, large_atoms=100, min_element_parents=10,
                                   min_atoms=10, max_atoms=200, n_bins=3, size_exponent=1.0, seed=0)
    pd.testing.assert_frame_equal(chosen, again.chosen)


def test_store_summary_counts_parents_per_element_and_size(relaxed_build):
    _, _, store, _ = relaxed_build
    summary = store_summary(store)
    frames = store.read()
    parents_with = {}
    for a in frames:
        for el in set(a.get_chemical_symbols()):
            parents_with.setdefault(el, set()).add(a.info[PARENT_ID])
    assert summary["element_parents"] == {el: len(p) for el, p in sorted(
        parents_with.items(), key=lambda kv: (-len(kv[1]), kv[0]))}
    assert sum(summary["parent_sizes"].values()) == summary["parents"] == 1
    forces = {row["kind"]: row for row in summary["forces"]}
    every = np.concatenate([np.abs(a.arrays[FORCES]).ravel() for a in frames])
    assert forces["all"]["mean_abs_component"] == pytest.approx(every.mean())
    assert forces["all"]["frames"] == len(frames)


def test_quota_cut_keeps_elements_the_spares_cover():
    """The first-N quota may leave an element below min_element_parents although the spares
    carry it; the spares carrying it are kept (rather than every parent with it dropped)."""
    from farfield.data.build import _cover_elements, _drop_rare

    good = [f"P{k}" for k in range(30)]
    elements = {p: {"H", "C"} for p in good}
    for p in ("P3", "P8", "P25", "P27"):  # K: 2 in the first 20, 2 more among the spares
        elements[p] = {"H", "C", "K"}
    elements["P29"] = {"H", "Pt"}  # Pt: one spare only, cannot be covered
    kept = _cover_elements(good[:20], good, elements, 4)
    assert kept == good[:20] + ["P25", "P27"]  # plan order, only what K needed
    failures: list[dict] = []
    assert _drop_rare(kept, elements, 4, failures) == kept and not failures
    # without the cover, the same cut loses every K parent
    assert "P3" not in _drop_rare(good[:20], elements, 4, failures)
