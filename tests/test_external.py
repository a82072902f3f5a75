"""External trainers (``model.backbone: external``): the config, the data handed to the trainer,
the translation of the trial config, and farfield's metrics of external predictions.

These need neither mace-torch nor NequIP; tests/test_external_trial.py (slow) trains them.
"""

from __future__ import annotations

import subprocess
import sys

import ase.io
import numpy as np
import pytest
import torch

from farfield.data import records
from farfield.data.datasets import bundled_store
from farfield.models.training import build_graphs
from farfield.models.training.metrics import ErrorAccumulator
from farfield.models.graph import collate
from farfield.orchestrator.config import ConfigError, TrialConfig, validate_config
from farfield.orchestrator.external.commands import mace_options, nequip_config, render_arguments
from farfield.orchestrator.external.environment import requirements, runtime_env
from farfield.orchestrator.external.handoff import CHARGES_KEY, ENERGY_KEY, FORCES_KEY, STRESS_KEY, write_sides
from farfield.orchestrator.external.trial import evaluate_predictions, latent_charge_report
from farfield.orchestrator.sweep.config import SweepConfig, grid_cells, trial_data
from farfield.orchestrator.tracking import trial_title
from farfield.orchestrator.trial_pipeline import make_split, side_ids


def _trial(external: dict | None, **model) -> TrialConfig:
    data = {"model": {"backbone": "external", **model}}
    if external is not None:
        data["model"]["external"] = external
    return validate_config(TrialConfig, data, source="test.yaml")


# --- config ---------------------------------------------------------------------------------


def test_unknown_keys_are_rejected_with_the_valid_ones():
    with pytest.raises(ConfigError, match=r"model\.external\.verison: unknown key; did you mean 'version'"):
        _trial({"trainer": "mace", "verison": "0.3.16"})
    with pytest.raises(ConfigError, match=r"model\.external\.les\.branch: unknown key"):
        _trial({"trainer": "maceles", "version": "0.3.16", "les": {"branch": "main"}})
    with pytest.raises(ConfigError, match=r"model\.external\.trainer"):
        _trial({"trainer": "schnetpack", "version": "2.0.0"})


@pytest.mark.parametrize("version", [">=0.3.16", "0.3.*", "latest", "~=0.3", "0.3.16 ", ""])
def test_trainer_version_must_be_one_exact_release(version):
    with pytest.raises(ConfigError, match="must be one exact version"):
        _trial({"trainer": "mace", "version": version})


@pytest.mark.parametrize("requirement", ["numpy", "numpy>=1.26", "numpy<2", "cuequivariance-torch~=0.5"])
def test_further_requirements_must_be_pinned(requirement):
    with pytest.raises(ConfigError, match="is not pinned"):
        _trial({"trainer": "mace", "version": "0.3.16", "requirements": [requirement]})


def test_every_installed_requirement_is_pinned_and_torch_is_the_projects(tmp_path):
    config = _trial({"trainer": "maceles", "version": "0.3.16", "requirements": ["cuequivariance-torch==0.5.0"]})
    external = config.model.external
    import importlib.metadata

    assert external.torch == importlib.metadata.version("torch").split("+")[0]
    pins = requirements(external, tmp_path)
    assert pins[:2] == [f"torch=={external.torch}", "mace-torch==0.3.16"]
    assert "cuequivariance-torch==0.5.0" in pins
    les = [p for p in pins if p.startswith("les @ ")]
    assert les == [f"les @ git+https://github.com/ChengUCB/les@{external.les.commit}"]
    for pin in pins:
        assert "==" in pin or pin.endswith(external.les.commit), pin
    env = runtime_env(external, tmp_path)
    assert env["pip"]["packages"] == pins and env["config"]["setup_timeout_seconds"] > 600


def test_torch_index_reaches_the_installer(tmp_path):
    cpu = "https://download.pytorch.org/whl/cpu"
    pip = runtime_env(_trial({"trainer": "mace", "version": "0.3.16", "index_urls": [cpu]}).model.external, tmp_path)
    assert pip["pip"]["pip_install_options"][-2:] == ["--extra-index-url", cpu]
    uv = runtime_env(_trial({"trainer": "mace", "version": "0.3.16", "installer": "uv",
                             "index_urls": [cpu]}).model.external, tmp_path)
    assert uv["uv"]["uv_pip_install_options"] == ["--extra-index-url", cpu] and "pip" not in uv


def test_les_from_a_local_clone_is_exported_at_the_pinned_commit(tmp_path):
    repo = tmp_path / "les"
    repo.mkdir()
    run = lambda *args: subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "setup.py").write_text("from setuptools import setup\nsetup(name='les', version='0.1.0')\n")
    run("add", "setup.py")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    (repo / "setup.py").write_text("changed after the pinned commit\n")
    external = _trial({"trainer": "maceles", "version": "0.3.16",
                       "les": {"repository": str(repo), "commit": commit}}).model.external
    (pin,) = [p for p in requirements(external, tmp_path / "ws") if p.startswith("les @ ")]
    folder = tmp_path / "ws" / "external" / "sources" / f"les-{commit[:12]}"
    assert pin == f"les @ {folder.resolve().as_uri()}"
    assert "setup(name='les'" in (folder / "setup.py").read_text()  # the commit, not the working tree


def test_backbone_and_external_section_must_agree():
    with pytest.raises(ConfigError, match="model.external is missing"):
        _trial(None)
    with pytest.raises(ConfigError, match="model.external is set but model.backbone is 'painn'"):
        _trial({"trainer": "mace", "version": "0.3.16"}, backbone="painn")
    with pytest.raises(ConfigError, match="cannot be added to an external model"):
        _trial({"trainer": "mace", "version": "0.3.16"}, long_range=["les"])
    with pytest.raises(ConfigError, match="for trainer 'maceles' only"):
        _trial({"trainer": "mace", "version": "0.3.16", "les": {}})
    with pytest.raises(ConfigError, match="must pin nequip"):
        _trial({"trainer": "allegro", "version": "0.8.3"})
    with pytest.raises(ConfigError, match="already pins"):
        _trial({"trainer": "nequip", "version": "0.19.1", "requirements": ["nequip==0.18.0"]})
    assert _trial({"trainer": "allegro", "version": "0.8.3", "requirements": ["nequip==0.19.1"]})


def test_runs_are_named_and_tagged_by_the_library():
    les = _trial({"trainer": "maceles", "version": "0.3.16"})
    assert (les.model.backbone_tag, les.model.long_range_tag) == ("ext-mace", ["les"])
    assert trial_title(les) == "ext-mace+les · random · seed 0"
    assert _trial({"trainer": "nequip", "version": "0.19.1"}).model.backbone_tag == "ext-nequip"


def test_a_sweep_puts_external_and_farfield_backbones_on_one_axis():
    config = SweepConfig.model_validate({
        "model": {"backbone": "external", "external": {"trainer": "mace", "version": "0.3.16"}},
        "sweep": {"grid": {"backbone": ["painn", "mace", "external"], "split": ["random", "size"]}},
    })
    trials = [TrialConfig.model_validate(trial_data(config, cell, {})) for cell in grid_cells(config)]
    assert len(trials) == 6
    assert {t.model.backbone_tag for t in trials} == {"painn", "mace", "ext-mace"}
    for trial in trials:
        assert (trial.model.external is not None) == (trial.model.backbone == "external")


# --- the data handed to the trainer --------------------------------------------------------


@pytest.fixture(scope="module")
def handed_over(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("workspace")
    config = TrialConfig.model_validate({
        "workspace": str(workspace), "data": {"max_structures": 60},
        "split": {"strategy": "random", "train": 0.6, "val": 0.2, "test": 0.2, "seed": 3},
        "model": {"backbone": "external", "external": {"trainer": "mace", "version": "0.3.16"}},
    })
    store = bundled_store(workspace)
    split = make_split(config, store)
    ids = side_ids(config, store, split)
    files = write_sides(store, ids, workspace / "handoff")
    return config, store, split, ids, files


def test_each_side_holds_exactly_the_parents_of_its_split_side(handed_over):
    _config, _store, split, ids, files = handed_over
    parents = {}
    for side, path in files.items():
        frames = ase.io.read(path, ":", format="extxyz")
        assert [a.info["structure_id"] for a in frames] == ids[side]
        parents[side] = {a.info["parent_id"] for a in frames}
        assert parents[side] <= set(getattr(split, side))
    assert set(files) == {"train", "val", "test"}
    assert not parents["train"] & parents["val"] and not parents["train"] & parents["test"]
    assert not parents["val"] & parents["test"]


def test_labels_read_back_unchanged_in_ev_and_angstrom(handed_over):
    _config, store, _split, ids, files = handed_over
    for side, path in files.items():
        frames = ase.io.read(path, ":", format="extxyz")
        stored = store.read(ids[side])
        for mine, ref in zip(frames, stored, strict=True):
            assert mine.calc is None  # labels only under REF_ keys: no ASE calculator fields to shadow them
            assert mine.info[ENERGY_KEY] == pytest.approx(ref.info[records.ENERGY], rel=1e-12, abs=1e-9)
            np.testing.assert_allclose(mine.arrays[FORCES_KEY], ref.arrays[records.FORCES], rtol=1e-12, atol=1e-10)
            np.testing.assert_allclose(mine.positions, ref.positions, atol=1e-10)
            np.testing.assert_allclose(mine.cell.array, ref.cell.array, atol=1e-10)
            assert (mine.pbc == ref.pbc).all()
            if ref.info.get(records.STRESS) is not None:
                np.testing.assert_allclose(mine.info[STRESS_KEY], ref.info[records.STRESS], atol=1e-12)
            if records.CHARGES in ref.arrays:
                np.testing.assert_allclose(mine.arrays[CHARGES_KEY], ref.arrays[records.CHARGES], atol=1e-12)


def test_trainer_arguments_follow_the_trial_and_options_win(handed_over, tmp_path):
    config, _store, _split, _ids, files = handed_over
    config = config.model_copy(deep=True)
    config.model.cutoff, config.model.channels, config.training.epochs = 4.5, 16, 7
    config.training.ema_decay = None
    config.model.external.options = {"max_L": 2, "swa": True}
    options = mace_options(config, files, tmp_path, ["H", "C", "Zn"])
    assert (options["r_max"], options["num_channels"], options["max_num_epochs"]) == (4.5, 16, 7)
    assert options["max_L"] == 2 and options["ema"] is False
    assert options["atomic_numbers"] == "[1, 6, 30]"  # every element of the data, test-only ones included
    assert options["train_file"] == str(files["train"]) and options["valid_file"] == str(files["val"])
    arguments = render_arguments(options)
    assert "--swa" in arguments and "--max_L=2" in arguments and not any(a.startswith("--ema") and
                                                                          a != "--ema_decay=None" for a in arguments)
    assert render_arguments({"a": True, "b": False, "c": None, "d": [64, 64]}) == ["--a", "--d=[64, 64]"]
    config.model.external = config.model.external.model_copy(update={"trainer": "nequip", "options": {
        "trainer.max_epochs": 3, "training_module.model.num_layers": 5}})
    document = nequip_config(config, files, tmp_path, ["C", "H"])
    assert document["trainer"]["max_epochs"] == 3 and document["training_module"]["model"]["num_layers"] == 5
    assert document["training_module"]["model"]["r_max"] == 4.5
    assert document["data"]["val_dataset"]["file_path"] == str(files["val"])


def test_farfield_never_imports_the_external_libraries():
    code = ("import sys, farfield.orchestrator.external.trial, farfield.orchestrator.trial;"
            "print(','.join(m for m in ('mace', 'nequip', 'allegro', 'les') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- farfield's metrics of external predictions ---------------------------------------------


def test_external_predictions_are_scored_per_structure_whatever_their_order(handed_over):
    _config, store, _split, ids, _files = handed_over
    frames = store.read(ids["test"])
    graphs = build_graphs(frames, 4.0, torch.float64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(frames))
    energy_offset = rng.normal(size=len(frames))  # eV per structure
    force_offsets = [rng.normal(size=(len(a), 3)) * 0.01 for a in frames]
    predictions = {
        "structure_id": np.array([frames[k].info["structure_id"] for k in order]),
        "n_atoms": np.array([len(frames[k]) for k in order]),
        "energy": np.array([frames[k].info["energy"] + energy_offset[k] for k in order]),
        "forces": np.concatenate([frames[k].arrays["forces"] + force_offsets[k] for k in order]),
    }
    metrics, table = evaluate_predictions(graphs, predictions, batch_size=3)
    per_atom = 1e3 * energy_offset / np.array([len(a) for a in frames])
    assert metrics["e_mae"] == pytest.approx(np.abs(per_atom).mean(), rel=1e-9)
    assert metrics["f_mae"] == pytest.approx(1e3 * np.abs(np.concatenate(force_offsets)).mean(), rel=1e-9)
    np.testing.assert_allclose(table["e_error_per_atom_mev"], per_atom, rtol=1e-9)
    assert table["structure_id"].tolist() == ids["test"]
    # the same numbers as the accumulator fed directly, in the side's order
    reference = ErrorAccumulator()
    reference.add({"energy": torch.tensor([a.info["energy"] + energy_offset[k] for k, a in enumerate(frames)]),
                   "forces": torch.tensor(np.concatenate([a.arrays["forces"] + force_offsets[k]
                                                          for k, a in enumerate(frames)]))}, collate(graphs))
    assert reference.metrics() == pytest.approx(metrics, nan_ok=True)


def test_latent_charges_are_reported_like_farfields_les_head(handed_over):
    _config, store, _split, ids, _files = handed_over
    frames = store.read(ids["test"])[:3]
    graphs = build_graphs(frames, 4.0, torch.float64)
    q = [np.linspace(-0.5, 0.5, len(a)) for a in frames]
    predictions = {"structure_id": np.array([a.info["structure_id"] for a in frames]),
                   "n_atoms": np.array([len(a) for a in frames]), "charges": np.concatenate(q),
                   "head_energy": np.array([1.0, -2.0, 0.5]), "short_energy": np.array([3.0, 2.0, -0.5])}
    report = latent_charge_report(graphs, predictions)
    assert report.metrics["q_std_les"] == pytest.approx(np.concatenate(q).std())
    assert report.metrics["q_std"] == report.metrics["q_std_les"]
    assert report.metrics["lr_energy_share_les"] == pytest.approx(np.mean([1 / 4, 2 / 4, 0.5 / 1.0]))
    table = report.charges[frames[1].info["structure_id"]]
    assert table["charge"].tolist() == pytest.approx(q[1].tolist())
    assert table["head"].unique().tolist() == ["les"]


def test_the_report_reads_logged_latent_charges_back(handed_over, tmp_path):
    from farfield.analysis.loading import CHARGE_COLUMNS, logged_charges
    from farfield.analysis.run_layout import charge_file_name

    _config, store, _split, ids, _files = handed_over
    frames = store.read(ids["test"])[:2]
    q = [np.linspace(-0.3, 0.3, len(a)) for a in frames]
    predictions = {"structure_id": np.array([a.info["structure_id"] for a in frames]),
                   "n_atoms": np.array([len(a) for a in frames]), "charges": np.concatenate(q),
                   "head_energy": np.array([0.1, 0.2]), "short_energy": np.array([1.0, 1.0])}
    report = latent_charge_report(build_graphs(frames, 4.0, torch.float64), predictions)
    for structure_id, table in report.charges.items():  # the earlier layout: one file per structure
        table.to_parquet(tmp_path / charge_file_name(structure_id), index=False)
    rows = logged_charges(tmp_path, [*predictions["structure_id"].tolist(), "not-logged"])
    import pandas as pd

    from farfield.orchestrator.trial_logging import log_head_report

    class Client:  # the current layout, as log_head_report writes it
        def log_artifact(self, run_id, local_path, artifact_path=None):
            pass

    (tmp_path / "now").mkdir()
    log_head_report(Client(), "run", report, tmp_path / "now")
    one_table = logged_charges(tmp_path / "now" / "test_charges.parquet",
                               [*predictions["structure_id"].tolist(), "not-logged"])
    pd.testing.assert_frame_equal(one_table, rows, check_dtype=False)
    assert list(rows.columns) == list(CHARGE_COLUMNS)
    assert rows["q_pred"].tolist() == pytest.approx(np.concatenate(q).tolist())
    assert rows["element"].tolist() == [s for a in frames for s in a.get_chemical_symbols()]
    assert set(rows["head"]) == {"les"}


def test_nequip_curves_read_lightnings_csv_log(tmp_path):
    """nequip-train (Lightning's CSVLogger) writes one row per log call with the other columns
    blank; names as NequIPLightningModule logs them: ``train_loss_epoch/weighted_sum``,
    ``val0_epoch/<metric>`` (energies and forces in eV, eV/Å → meV, meV/Å)."""
    from farfield.orchestrator.external.worker import _nequip_curves

    log = tmp_path / "metrics" / "version_0" / "metrics.csv"
    log.parent.mkdir(parents=True)
    header = ["epoch", "step", "train_loss_step/weighted_sum", "train_loss_epoch/weighted_sum",
              "val0_epoch/weighted_sum", "val0_epoch/per_atom_energy_mae", "val0_epoch/forces_mae"]
    rows = [["0", "9", "2.0", "", "", "", ""], ["0", "9", "", "", "1.5", "0.02", "0.3"],
            ["0", "9", "", "1.8", "", "", ""], ["1", "19", "", "", "1.1", "0.01", "0.25"],
            ["1", "19", "", "1.2", "", "", ""]]
    log.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")
    curves = _nequip_curves({"workdir": str(tmp_path)})
    assert [row["epoch"] for row in curves] == [0, 1]
    assert curves[0]["train_loss"] == pytest.approx(1.8) and curves[1]["train_loss"] == pytest.approx(1.2)
    assert curves[1]["val_loss"] == pytest.approx(1.1)
    assert curves[0]["val_e_mae"] == pytest.approx(20.0) and curves[1]["val_f_mae"] == pytest.approx(250.0)
