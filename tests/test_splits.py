"""Split strategies on the real bundled CoRE MOF set (48 parents × 4 configurations).

Properties, not constants: parent-level disjointness, fractions, determinism, whole clusters
held out, every parent with an element in test, and test sets of max_separation and cluster
farther from train (median nearest-train distance) than random splits of the same sizes.
Descriptors are computed once per module in this process (the Ray path is tested in
test_descriptors.py).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from farfield.data.chemspace import chemical_space, store_descriptors
from farfield.data.config import SplitConfig
from farfield.data.datasets import bundled_store
from farfield.data.splits import SIDES, Split, random_split
from farfield.data.splitting import make_split, parents_table_path, side_counts, split_parents

CLUSTERS = {"min_cluster_size": 3}  # 48 parents: two HDBSCAN clusters plus noise


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """Small matrices: threaded BLAS is up to 100x slower on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def store(workspace):
    return bundled_store(workspace)


@pytest.fixture(scope="module")
def descriptors(store, workspace):
    return store_descriptors(store, cache_dir=workspace / "descriptors", n_workers=0)


@pytest.fixture(scope="module")
def space(descriptors):
    return chemical_space(descriptors)


def _split(space, store, **config) -> Split:
    return split_parents(space, SplitConfig(**config), store.content_hash).split


def _rows(space, ids) -> np.ndarray:
    row_of = {p: r for r, p in enumerate(space.parent_ids)}
    return np.array([row_of[p] for p in ids], dtype=int)


def _median_nearest_train(space, split: Split) -> float:
    return float(np.median(space.nearest_distance(_rows(space, split.test), _rows(space, split.train))))


def _random_median(space, n_train: int, n_test: int, seeds=range(10)) -> float:
    """Mean over seeds of the median nearest-train distance of random splits of these sizes."""
    medians = []
    for seed in seeds:
        order = np.random.default_rng(1000 + seed).permutation(len(space))
        medians.append(np.median(space.nearest_distance(order[:n_test], order[n_test : n_test + n_train])))
    return float(np.mean(medians))


ALL = [dict(strategy="random"), dict(strategy="size"), dict(strategy="max_separation"),
       dict(strategy="max_separation", gap=0.9), dict(strategy="cluster", **CLUSTERS),
       dict(strategy="cluster", n_folds=2, fold=1, **CLUSTERS), dict(strategy="element", element="Cu"),
       dict(strategy="metal")]


@pytest.mark.parametrize("config", ALL, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_parents_are_partitioned_and_deterministic(space, store, config):
    split = _split(space, store, **config)
    sides = [set(split.train), set(split.val), set(split.test), set(split.excluded)]
    assert sum(map(len, sides)) == len(set().union(*sides)) == len(space)  # disjoint and complete
    assert all(split.train) and split.test and split.val
    again = _split(space, store, **config)
    assert again.to_json() == split.to_json()
    assert split.statistics["test"]["n_parents"] == len(split.test)
    assert split.dataset_hash == store.content_hash


@pytest.mark.parametrize("strategy", ["random", "size", "max_separation"])
def test_fractions_within_one_parent(space, store, strategy):
    split = _split(space, store, strategy=strategy, train=0.7, val=0.1, test=0.2, seed=3)
    # biased strategies move test parents with elements absent from train to `excluded`
    assert split.statistics.get("test_unseen_elements", {"n_parents": 0})["n_parents"] == len(split.excluded)
    sizes = {"train": len(split.train), "val": len(split.val), "test": len(split.test) + len(split.excluded)}
    for side, fraction in (("train", 0.7), ("val", 0.1), ("test", 0.2)):
        assert abs(sizes[side] - fraction * len(space)) <= 1


def test_seed_changes_the_split_and_file_is_byte_identical(space, store, workspace, tmp_path):
    assert _split(space, store, strategy="random", seed=2).test != _split(space, store, strategy="random", seed=9).test
    assert _split(space, store, strategy="size", seed=2).val != _split(space, store, strategy="size", seed=9).val
    paths = []
    for name in ("a", "b"):
        outcome = make_split(store, SplitConfig(strategy="cluster", seed=7, **CLUSTERS),
                             cache_dir=workspace / "descriptors")
        paths.append(outcome.save(tmp_path / name / "split.json"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert parents_table_path(paths[0]).is_file()
    assert Split.load(paths[0]).to_json() == paths[0].read_text()


@pytest.mark.parametrize("config", [dict(strategy="max_separation"), dict(strategy="cluster", **CLUSTERS)],
                         ids=["max_separation", "cluster"])
def test_biased_test_sets_are_farther_from_train_than_random(space, store, config):
    for seed in (0, 1):
        split = _split(space, store, seed=seed, **config)
        biased = _median_nearest_train(space, split)
        baseline = _random_median(space, len(split.train), len(split.test))
        assert biased > baseline, (config, seed, biased, baseline)
        recorded = split.statistics["nearest_train_distance"]
        assert recorded["test"]["q50"] == pytest.approx(biased, rel=1e-5)


def test_cluster_split_never_cuts_a_cluster_and_folds_partition(space, store):
    outcome = split_parents(space, SplitConfig(strategy="cluster", **CLUSTERS), store.content_hash)
    table = outcome.parents
    for _, members in table.groupby("cluster"):
        assert members["side"].eq("test").all() or not members["side"].eq("test").any()
    n_clusters = outcome.split.statistics["clusters"]["n_clusters"]
    assert n_clusters >= 2
    folds = [set(f.test) | set(f.excluded)  # test parents with elements unseen in train are excluded
             for f in (_split(space, store, strategy="cluster", n_folds=2, fold=k, **CLUSTERS) for k in range(2))]
    assert not folds[0] & folds[1] and len(folds[0] | folds[1]) == len(space)


def test_element_and_metal_hold_out_every_parent_with_it(space, store):
    split = _split(space, store, strategy="element", element="Cu")
    with_cu = {p for p, elements in zip(space.parent_ids, space.elements) if "Cu" in elements}
    # the held-out element is exempt from the unseen-element rule; other unseen elements are excluded
    assert with_cu and set(split.test) | set(split.excluded) == with_cu and split.test
    assert "Cu" not in split.statistics["train"]["elements"]
    assert "Cu" in split.statistics["test_elements_missing_from_train"]
    metal = _split(space, store, strategy="metal", seed=4)
    chosen = metal.parameters["selection"]["element"]
    assert set(metal.test) | set(metal.excluded) == {p for p, e in zip(space.parent_ids, space.elements) if chosen in e}


def test_size_and_gap_properties(space, store):
    split = _split(space, store, strategy="size")
    atoms = dict(zip(space.parent_ids, space.n_atoms))
    assert min(atoms[p] for p in split.test) >= max(atoms[p] for p in split.train + split.val)
    def selected(split):  # the strategy's test set: test + test parents excluded for unseen elements
        unseen = split.statistics["test_unseen_elements"]["parent_ids"]
        return sorted(set(split.test) | set(unseen)), set(split.excluded) - set(unseen)

    plain = _split(space, store, strategy="max_separation")
    to_test = space.nearest_distance(_rows(space, plain.train + plain.val), _rows(space, selected(plain)[0]))
    gap = float(np.sort(to_test)[3]) + 1e-9  # the 4 nearest non-test parents lie inside the gap
    gapped = _split(space, store, strategy="max_separation", gap=gap)
    test, in_gap = selected(gapped)
    assert test == selected(plain)[0] and len(in_gap) == 4
    rest = _rows(space, gapped.train + gapped.val)
    assert space.distances(rest, _rows(space, test)).min() >= gap
    near = space.distances(_rows(space, sorted(in_gap)), _rows(space, test)).min(axis=1)
    assert (near < gap).all()


def test_impossible_requests_are_clear_errors(space, store):
    with pytest.raises(ValidationError, match="less than 1"):
        SplitConfig(test=1.5)
    with pytest.raises(ValueError, match="fraction 'test' must be in"):
        side_counts(48, {"train": 0.5, "val": 0.1, "test": 1.2})
    with pytest.raises(ValueError, match="'U' is in no parent.*elements present: H"):
        _split(space, store, strategy="element", element="U")
    with pytest.raises(ValueError, match="not an element symbol"):
        _split(space, store, strategy="element", element="Xy")
    with pytest.raises(ValueError, match="n_folds=40 but HDBSCAN found only"):
        _split(space, store, strategy="cluster", n_folds=40, fold=0, **CLUSTERS)
    with pytest.raises(ValueError, match="clusters \\[99\\] do not exist"):
        _split(space, store, strategy="cluster", held_out_clusters=[99], **CLUSTERS)
    with pytest.raises(ValueError, match="'O' is not a metal"):
        _split(space, store, strategy="metal", element="O")
    with pytest.raises(ValidationError, match="split.element is set but split.strategy is 'size'"):
        SplitConfig(strategy="size", element="Zn")
    with pytest.raises(ValidationError, match="split.fold .* and split.n_folds .* must be set together"):
        SplitConfig(strategy="cluster", fold=1)
    with pytest.raises(ValidationError, match="needs split.element"):
        SplitConfig(strategy="element")
    with pytest.raises(ValueError, match="remain for val"):
        _split(space, store, strategy="max_separation", gap=50.0)


def test_random_split_of_an_index_is_seeded(store):
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    a = random_split(store.index, store.content_hash, fractions, seed=0)
    assert a.to_json() == random_split(store.index, store.content_hash, fractions, seed=0).to_json()
    assert a.test != random_split(store.index, store.content_hash, fractions, seed=1).test
    assert a.statistics["test"]["n_structures"] == int(store.index["parent_id"].isin(a.test).sum())


def test_trial_make_split_uses_the_configured_strategy(store, workspace):
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial_pipeline import make_split as trial_make_split

    config = TrialConfig(workspace=workspace, split=SplitConfig(strategy="size"))
    split = trial_make_split(config, store)
    assert split.strategy == "size"
    assert list((workspace / "splits").glob("size-*.parents.parquet"))


def test_cli_make_and_report(workspace, tmp_path):
    from farfield.orchestrator.cli import app

    out = tmp_path / "split.json"
    runner = CliRunner()
    result = runner.invoke(app, ["split", "make", "--workspace", str(workspace), "--strategy", "max_separation",
                                 "-w", "0.7", "--workers", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["strategy"] == "max_separation" and saved["parameters"]["weight"] == 0.7
    report = runner.invoke(app, ["split", "report", str(out), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert len(list((tmp_path / "report").glob("*.png"))) == 4
    bad = runner.invoke(app, ["split", "make", "--workspace", str(workspace), "--strategy", "element",
                              "--workers", "0"])
    assert bad.exit_code == 1 and "needs split.element" in bad.output


def test_cli_and_trial_write_the_same_random_split_file(store, workspace, tmp_path):
    """One random split, one file: `farfield split make --strategy random` and a trial with the
    same split config save byte-identical JSON (the same split hash); the CLI adds the report's table."""
    from farfield.data.splitting import split_path
    from farfield.orchestrator.cli import app
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial_pipeline import make_split as trial_split

    out = tmp_path / "random.json"
    made = CliRunner().invoke(app, ["split", "make", "--workspace", str(workspace), "--strategy", "random",
                                    "--seed", "3", "--min-element-parents", "2", "--workers", "0",
                                    "--out", str(out)])
    assert made.exit_code == 0, made.output
    config = TrialConfig.model_validate({"workspace": str(tmp_path / "trial"), "data": {"min_element_parents": 2},
                                         "split": {"strategy": "random", "seed": 3}})
    split = trial_split(config, store)
    saved = split_path(tmp_path / "trial", split)
    assert saved.read_bytes() == out.read_bytes()
    assert Split.load(out).content_hash == split.content_hash
    assert split.statistics["rare_elements"]["min_element_parents"] == 2
    parents = pd.read_parquet(parents_table_path(out))  # the CLI's report table covers the same parents
    assert set(parents.loc[parents["side"] == "test", "parent_id"]) == set(split.test)
    assert not parents_table_path(saved).exists()
    report = CliRunner().invoke(app, ["split", "report", str(out), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "report.html").read_text().count("data:image/png;base64,") == 4


def test_tiny_dataset_splits_without_clusters_but_cluster_strategy_says_why():
    from farfield.data.chemspace import ChemicalSpace

    rng = np.random.default_rng(0)
    n = 4
    space = ChemicalSpace(np.array([f"p{i}" for i in range(n)]), np.arange(n) + 10.0, np.ones(n, dtype=int),
                          [("H", "C")] * n, rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), ["a", "b"], 0.5)
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    outcome = split_parents(space, SplitConfig(strategy="max_separation", **fractions), "sha256:toy")
    assert outcome.split.parameters["clustering"]["hdbscan"] == "skipped"
    assert len(outcome.split.test) == 1 and len(outcome.split.train) == 2
    with pytest.raises(ValueError, match="cannot cluster 4 parents with min_cluster_size=5"):
        split_parents(space, SplitConfig(strategy="cluster", **fractions), "sha256:toy")


@pytest.mark.parametrize("strategy", ["random", "size"])
def test_trial_split_with_max_structures_covers_only_the_kept_parents(strategy, store, workspace):
    """data.max_structures: the split is made over the kept parents, every side non-empty
    (120 structures: on fewer, every largest parent has an element no smaller one has)."""
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial_pipeline import make_split as trial_split

    config = TrialConfig.model_validate({
        "workspace": str(workspace), "data": {"dataset": "bundled", "max_structures": 120},
        "split": {"strategy": strategy, "train": 0.6, "val": 0.2, "test": 0.2}})
    kept = set(store.index["parent_id"].iloc[:120])
    split = trial_split(config, store)
    sides = {side: set(getattr(split, side)) for side in SIDES}
    assert set().union(*sides.values(), split.excluded) == kept
    assert all(len(ids) >= 2 for ids in (sides["train"], sides["val"])) and sides["test"], \
        {k: len(v) for k, v in sides.items()}


def test_concurrent_saves_of_one_split_never_fail_or_leave_temporaries(store, tmp_path):
    """Trials that make the same split at once all save it: each through its own temporary."""
    import threading

    split = random_split(store.index, store.content_hash, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    errors: list[Exception] = []

    def save_many():
        try:
            for _ in range(40):
                split.save(tmp_path / "split.json")
        except Exception as exc:  # collected: a failure in a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]
    assert Split.load(tmp_path / "split.json").to_json() == split.to_json()
