"""The paper's split protocol: kmeans, farthest_from_seed, size with max_train_atoms,
the SOAP cosine metric, rare-element filtering and unseen-element exclusion.

Stores are crafted (tests/README-style provenance: built here from ASE's G2 molecules, seeded):
each parent is one molecule plus one metal atom 3 Å above it in an 8 Å cubic cell, repeated
1, 2 or 4 times (so sizes differ while the per-atom chemistry does not), two rattled
configurations each, synthetic seeded labels. Expected values come from the construction
or from an independent computation (dscribe called directly, numpy cosine), never from the
code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from pydantic import ValidationError
from typer.testing import CliRunner

from farfield.data.config import DataConfig, SplitConfig
from farfield.data.splitting import SIDES, drop_rare_elements, make_split, parent_space
from farfield.data.store import write_store

MOLECULES = ("H2O", "NH3", "CH4", "CH3OH", "C2H6", "HCOOH", "C6H6", "CH3CN")
METALS = ("Zn", "Cu", "Co")
REPEATS = ((1, 1, 1), (2, 1, 1), (2, 2, 1))
CD_PARENTS = (5, 14)  # both (2, 2, 1) repeats of > 20 atoms: Cd occurs only in large parents
CELL = 8.0  # Å


def _parent_frames(index: int, metal: str, extra: dict[int, str] | None = None) -> list[Atoms]:
    """Two configurations of parent ``p{index:02d}``; ``extra``: configuration → symbol of one
    additional atom (1.8 Å below the molecule)."""
    rng = np.random.default_rng(index)
    frames = []
    for conf in range(2):
        atoms = molecule(MOLECULES[index % len(MOLECULES)])
        atoms.positions += CELL / 2
        atoms += Atoms(metal, positions=[[CELL / 2, CELL / 2, CELL / 2 + 3.0]])
        if extra and conf in extra:
            atoms += Atoms(extra[conf], positions=[[CELL / 2 + 1.5, CELL / 2 + 1.5, CELL / 2 - 1.8]])
        atoms.cell, atoms.pbc = np.eye(3) * CELL, True
        atoms = atoms.repeat(REPEATS[index % 3])
        atoms.rattle(0.03, seed=100 * index + conf)
        atoms.arrays["forces"] = rng.normal(scale=0.1, size=(len(atoms), 3))
        atoms.info.update(energy=-3.0 * len(atoms) + rng.normal(), structure_id=f"p{index:02d}-{conf}",
                          parent_id=f"p{index:02d}", source="crafted")
        frames.append(atoms)
    return frames


def _metal(index: int) -> str:
    return "Cd" if index in CD_PARENTS else METALS[index // len(MOLECULES)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """24 parents (8 molecules × Zn/Cu/Co, Cd in two large ones), 48 structures."""
    frames = [f for i in range(24) for f in _parent_frames(i, _metal(i))]
    return write_store(frames, tmp_path_factory.mktemp("paper") / "store", label_method="synthetic")


@pytest.fixture(scope="module")
def rare_store(tmp_path_factory):
    """As ``store`` without Cd, and: p00 has Pt instead of its metal and an extra Mn; p01, p02 an extra Mn;
    p03's second configuration an extra I. With min_element_parents=3: Pt and I are rare at
    once; dropping p00 leaves Mn in 2 parents, so Mn goes next (p01, p02): 3 parents and
    7 structures dropped, p03 partly."""
    frames = []
    for i in range(24):
        metal, extra = METALS[i // len(MOLECULES)], None
        if i == 0:
            metal, extra = "Pt", {0: "Mn", 1: "Mn"}
        elif i in (1, 2):
            extra = {0: "Mn", 1: "Mn"}
        elif i == 3:
            extra = {1: "I"}
        frames += _parent_frames(i, metal, extra)
    return write_store(frames, tmp_path_factory.mktemp("rare") / "store", label_method="synthetic")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("descriptors")


def _make(store, cache, **config):
    return make_split(store, SplitConfig(**config), cache_dir=cache)


def _atoms_of(store) -> dict[str, float]:
    return store.index.groupby("parent_id")["n_atoms"].mean().to_dict()


def _elements_of(index) -> dict[str, set[str]]:
    return {p: {e for entry in rows["elements"] for e in entry.split()} for p, rows in index.groupby("parent_id")}


def _direct_mean_soap(store) -> tuple[list[str], np.ndarray]:
    """The paper's descriptor computed here, independently: dscribe per-atom SOAP of each
    parent's first configuration, averaged over atoms with numpy, unit-normalised."""
    from dscribe.descriptors import SOAP

    soap = SOAP(species=store.manifest["elements"], r_cut=4.0, n_max=9, l_max=9, sigma=0.1, rbf="gto",
                compression={"mode": "crossover"}, periodic=True, average="off")
    first = store.index.drop_duplicates("parent_id")
    frames = store.read(first["structure_id"])
    vectors = np.array([soap.create(atoms).mean(axis=0) for atoms in frames])
    order = np.argsort(first["parent_id"].to_numpy())
    return list(first["parent_id"].to_numpy()[order]), (vectors / np.linalg.norm(vectors, axis=1, keepdims=True))[order]


def _assert_partition(split, all_parents) -> None:
    sides = [set(split.train), set(split.val), set(split.test), set(split.excluded)]
    assert sum(map(len, sides)) == len(set().union(*sides)) == len(all_parents)
    assert set().union(*sides) == set(all_parents)
    assert split.train and split.val and split.test


def _test_side(split) -> set[str]:
    """What the strategy put in test: test plus parents excluded for unseen elements."""
    return set(split.test) | set(split.excluded)


# --- the SOAP cosine metric --------------------------------------------------------------------------------


def test_soap_cosine_matches_a_direct_dscribe_computation(store, cache):
    parents, unit = _direct_mean_soap(store)
    space, settings = parent_space(store, "soap_cosine", cache_dir=cache)
    assert list(space.parent_ids) == parents
    assert settings.species == ["H", "C", "N", "O", "Co", "Cu", "Zn", "Cd"]
    rows = np.arange(len(parents))
    np.testing.assert_allclose(space.distances(rows, rows), 1.0 - unit @ unit.T, atol=1e-10)
    # different molecules or metals are not identical in this metric, a parent is identical to itself
    assert np.allclose(np.diag(space.distances(rows, rows)), 0.0, atol=1e-10)
    assert (space.distances(rows, rows)[~np.eye(len(rows), dtype=bool)] > 1e-6).all()


def test_soap_cosine_distance_statistics_and_cache(store, cache, monkeypatch):
    parents, unit = _direct_mean_soap(store)
    outcome = _make(store, cache, strategy="farthest_from_seed", metric="soap_cosine", seed=1)
    split = outcome.split
    row = {p: r for r, p in enumerate(parents)}
    train = unit[[row[p] for p in split.train]]
    nearest = [1.0 - float((unit[row[p]] @ train.T).max()) for p in split.test]
    recorded = split.statistics["nearest_train_distance"]
    assert recorded["metric"] == "soap_cosine"
    assert recorded["test"]["q50"] == pytest.approx(float(np.median(nearest)), rel=1e-5, abs=1e-9)
    assert split.parameters["metric"] == "soap_cosine" and "weight" not in split.parameters
    assert split.parameters["mean_soap"]["n_max"] == 9 and split.parameters["mean_soap"]["compression"] == "crossover"
    # computed once: a second split reads the cache instead of describing again
    from farfield.data.chemspace import sharded

    def no_recompute(*args, **kwargs):
        raise AssertionError("descriptors were recomputed despite the cache")

    monkeypatch.setattr(sharded, "describe_shards", no_recompute)
    again = _make(store, cache, strategy="farthest_from_seed", metric="soap_cosine", seed=1)
    assert again.split.to_json() == split.to_json()


@pytest.mark.parametrize("strategy", ["max_separation", "cluster", "kmeans", "farthest_from_seed"])
@pytest.mark.parametrize("metric", ["joint", "soap_cosine"])
def test_every_chemical_space_strategy_takes_either_metric(store, cache, strategy, metric):
    extra = {"cluster": {"min_cluster_size": 3, "noise": "singleton"}, "kmeans": {"n_clusters": 6}}.get(strategy, {})
    split = _make(store, cache, strategy=strategy, metric=metric, **extra).split
    _assert_partition(split, _atoms_of(store))
    assert split.statistics["nearest_train_distance"]["metric"] == metric


# --- kmeans --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_clusters", [6, 7])
def test_kmeans_holds_out_half_the_clusters_whole(store, cache, n_clusters):
    from sklearn.cluster import KMeans

    outcome = _make(store, cache, strategy="kmeans", metric="soap_cosine", n_clusters=n_clusters, seed=3,
                    train=0.45, val=0.05, test=0.5)
    split, table = outcome.split, outcome.parents
    _assert_partition(split, _atoms_of(store))
    held_out = _test_side(split)
    clusters = table.groupby("cluster")["parent_id"].apply(set)
    assert len(clusters) == n_clusters
    whole = [c for c, members in clusters.items() if members <= held_out]
    assert all(not (members & held_out) for c, members in clusters.items() if c not in whole)  # never cut
    assert len(whole) == n_clusters // 2
    assert sorted(whole) == split.parameters["selection"]["held_out_clusters"]
    # the clusters are KMeans clusters of the unit mean SOAP vectors (same partition, any numbering)
    parents, unit = _direct_mean_soap(store)
    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=0).fit_predict(unit)
    independent = {frozenset(np.asarray(parents)[labels == c]) for c in range(n_clusters)}
    assert independent == {frozenset(m) for m in clusters}
    # validation is 10 % of the training side (val / (train + val) = 0.1)
    assert abs(len(split.val) - 0.1 * (len(split.train) + len(split.val))) <= 0.5


def test_kmeans_seed_chooses_the_half_and_is_deterministic(store, cache):
    def split_for(seed):
        return _make(store, cache, strategy="kmeans", metric="soap_cosine", n_clusters=6, seed=seed).split

    assert split_for(4).to_json() == split_for(4).to_json()
    chosen = {tuple(split_for(seed).parameters["selection"]["held_out_clusters"]) for seed in range(5)}
    assert len(chosen) > 1


def test_clusters_are_computed_once_per_space_for_every_seed(store, cache, monkeypatch):
    """A sweep makes one split per seed: the (seed-independent) clusters are computed once, and
    the splits are those a fresh computation gives."""
    from farfield.data.splitting import api

    calls = []
    real = api.kmeans_parents
    monkeypatch.setattr(api, "kmeans_parents", lambda *args: calls.append(args[1]) or real(*args))
    monkeypatch.setattr(api, "_CLUSTERINGS", type(api._CLUSTERINGS)())

    def split_for(seed, n_clusters=6):
        return _make(store, cache, strategy="kmeans", metric="soap_cosine", n_clusters=n_clusters, seed=seed).split

    cached = [split_for(seed).to_json() for seed in range(3)]
    assert calls == [6]
    split_for(0, n_clusters=5)
    assert calls == [6, 5]  # other parameters: clustered again
    api._CLUSTERINGS.clear()
    assert split_for(2).to_json() == cached[2] and calls == [6, 5, 6]


def test_kmeans_needs_enough_parents(store, cache):
    with pytest.raises(ValueError, match="cannot make 30 KMeans clusters of 24 parents"):
        _make(store, cache, strategy="kmeans", n_clusters=30)


# --- farthest_from_seed --------------------------------------------------------------------------------------


def test_farthest_from_seed_is_the_farthest_half(store, cache):
    parents, unit = _direct_mean_soap(store)
    row = {p: r for r, p in enumerate(parents)}
    for seed in (0, 1, 2):
        split = _make(store, cache, strategy="farthest_from_seed", metric="soap_cosine", seed=seed).split
        _assert_partition(split, parents)
        seed_parent = split.parameters["selection"]["seed_parent"]
        distance = {p: 1.0 - float(unit[row[p]] @ unit[row[seed_parent]]) for p in parents}
        held_out = _test_side(split)
        assert len(held_out) == len(parents) // 2
        assert seed_parent not in held_out
        assert min(distance[p] for p in held_out) >= max(distance[p] for p in parents if p not in held_out)
    seeds = {_make(store, cache, strategy="farthest_from_seed", metric="soap_cosine", seed=s).split.parameters[
        "selection"]["seed_parent"] for s in range(4)}
    assert len(seeds) > 1


# --- size with max_train_atoms and the unseen-element rule ---------------------------------------------------


def test_size_threshold_and_unseen_elements_are_counted(store, cache):
    atoms, elements = _atoms_of(store), _elements_of(store.index)
    split = _make(store, cache, strategy="size", max_train_atoms=20, seed=2).split
    _assert_partition(split, atoms)
    above = {p for p, n in atoms.items() if n > 20}
    assert _test_side(split) == above
    assert all(atoms[p] <= 20 for p in split.train + split.val)
    with_cd = {p for p, e in elements.items() if "Cd" in e}
    assert with_cd and set(split.excluded) == with_cd  # Cd occurs only above 20 atoms: never in train
    assert split.statistics["test_unseen_elements"] == {"n_parents": len(with_cd), "elements": ["Cd"],
                                                        "parent_ids": sorted(with_cd)}
    assert split.statistics["test_elements_missing_from_train"] == []
    assert split.parameters["max_train_atoms"] == 20
    # random splits are not biased: nothing is excluded, missing elements are only flagged
    assert "test_unseen_elements" not in _make(store, cache, strategy="random").split.statistics


def test_size_threshold_errors_name_the_fix(store, cache):
    with pytest.raises(ValueError, match="max_train_atoms=1000: no parent has more atoms"):
        _make(store, cache, strategy="size", max_train_atoms=1000)
    with pytest.raises(ValueError, match="max_train_atoms=1: every parent has more atoms"):
        _make(store, cache, strategy="size", max_train_atoms=1)


# --- min_element_parents -------------------------------------------------------------------------------------


def test_min_element_parents_drops_rare_elements_until_none_is_left(rare_store):
    rare = drop_rare_elements(rare_store.index, 3)
    assert rare.statistics["elements"] == ["Mn", "I", "Pt"]  # Z order; Mn only after p00 went
    assert rare.statistics["n_parents_dropped"] == 3 and rare.statistics["n_structures_dropped"] == 7
    assert rare.statistics["n_parents_partly_dropped"] == 1
    assert set(rare.index["structure_id"]) == set(rare_store.index["structure_id"]) - {
        "p00-0", "p00-1", "p01-0", "p01-1", "p02-0", "p02-1", "p03-1"}
    kept = _elements_of(rare.index)
    counts = {e: sum(e in s for s in kept.values()) for e in set().union(*kept.values())}
    assert min(counts.values()) >= 3
    assert drop_rare_elements(rare_store.index, None).index is rare_store.index
    with pytest.raises(ValueError, match="min_element_parents=100 drops every structure"):
        drop_rare_elements(rare_store.index, 100)


@pytest.mark.parametrize("strategy", ["random", "kmeans"])
def test_trial_applies_min_element_parents_and_records_it(rare_store, tmp_path, strategy):
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial_pipeline import make_split as trial_split
    from farfield.orchestrator.trial_pipeline import side_ids

    config = TrialConfig.model_validate({
        "workspace": str(tmp_path), "data": {"dataset": str(rare_store.path), "min_element_parents": 3},
        "split": {"strategy": strategy, **({"n_clusters": 4, "metric": "soap_cosine"} if strategy == "kmeans" else {})}})
    split = trial_split(config, rare_store)
    recorded = split.statistics["rare_elements"]
    assert recorded["min_element_parents"] == 3 and recorded["elements"] == ["Mn", "I", "Pt"]
    assert recorded["n_parents_dropped"] == 3 and recorded["n_structures_dropped"] == 7
    on_a_side = set(split.train + split.val + split.test + split.excluded)
    assert on_a_side == {f"p{i:02d}" for i in range(3, 24)}
    ids = side_ids(config, rare_store, split)
    used = [s for side in SIDES for s in ids[side]]
    assert len(used) == len(set(used))
    assert "p03-1" not in used and "p03-0" in used  # the configuration with I is dropped, not its parent
    assert not {s for s in used if s.startswith(("p00", "p01", "p02"))}


# --- configs and CLI -----------------------------------------------------------------------------------------


def test_config_errors_are_one_clear_line():
    with pytest.raises(ValidationError, match="split.weight applies only to metric 'joint'"):
        SplitConfig(metric="soap_cosine", weight=0.7)
    with pytest.raises(ValidationError, match="split.n_clusters is set but split.strategy is 'size'"):
        SplitConfig(strategy="size", n_clusters=10)
    with pytest.raises(ValidationError, match="split.max_train_atoms is set but split.strategy is 'kmeans'"):
        SplitConfig(strategy="kmeans", max_train_atoms=100)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        DataConfig(min_element_parents=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DataConfig(min_element_parent=10)
    with pytest.raises(ValidationError, match="'joint' or 'soap_cosine'"):
        SplitConfig(metric="cosine")


def test_cli_makes_a_paper_split(rare_store, tmp_path):
    from farfield.orchestrator.cli import app

    out = tmp_path / "split.json"
    runner = CliRunner()
    args = ["split", "make", "--dataset", str(rare_store.path), "--workspace", str(tmp_path), "--workers", "0"]
    result = runner.invoke(app, args + ["--strategy", "kmeans", "--metric", "soap_cosine", "--n-clusters", "4",
                                        "--min-element-parents", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "dropped before splitting" in result.output
    saved = json.loads(out.read_text())
    assert saved["strategy"] == "kmeans" and saved["statistics"]["rare_elements"]["n_parents_dropped"] == 3
    report = runner.invoke(app, ["split", "report", str(out), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "report.html").read_text()
    assert "cosine of mean SOAP" in page and "dropped before splitting" in page
    bad = runner.invoke(app, args + ["--strategy", "size", "--n-clusters", "4"])
    assert bad.exit_code == 1 and "split.n_clusters is set but split.strategy is 'size'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_split_distances_benchmark_runs_on_a_store(store, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "split_distances.py"
    spec = importlib.util.spec_from_file_location("split_distances", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "split_distances.json"
    result = module.main(["--dataset", str(store.path), "--workspace", str(tmp_path), "--workers", "0",
                          "--min-element-parents", "3", "--max-train-atoms", "20", "--n-clusters", "4",
                          "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert [row["strategy"] for row in saved["splits"]] == ["random", "size", "kmeans", "farthest_from_seed"]
    assert saved["rare_elements"]["elements"] == ["Cd"]  # in 2 of 24 parents
    table = capsys.readouterr().out
    for row in saved["splits"]:
        assert f"| {row['strategy']} |" in table
        assert row["median_nearest_train"] > 0 and row["median_nearest_train_random"] > 0
