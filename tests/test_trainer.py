"""The trainer on real MOF structures: it can overfit, and checkpoints reload exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from farfield.data.datasets import bundled_store
from farfield.models import LossWeights, ModelConfig, TrainingConfig, build_potential
from farfield.models.blocks.readout import fit_reference_energies
from farfield.models.training import (
    NonFiniteLossError,
    Trainer,
    build_graphs,
    element_count_matrix,
    force_rms,
    load_checkpoint,
    save_checkpoint,
    weighted_loss,
)


@pytest.fixture(scope="module")
def bundled_frames(tmp_path_factory):
    store = bundled_store(tmp_path_factory.mktemp("ws"))
    return store.read()


def _smallest(frames, n):
    return sorted(frames, key=len)[:n]


def _setup(frames, dtype="float32", channels=32):
    torch_dtype = getattr(torch, dtype)
    graphs = build_graphs(frames, 5.0, torch_dtype)
    reference = fit_reference_energies(element_count_matrix(graphs), np.array([float(g.energy[0]) for g in graphs]))
    config = ModelConfig(channels=channels, layers=2, cutoff=5.0, dtype=dtype)
    return graphs, build_potential(config, reference_energies=reference, energy_scale=force_rms(graphs))


def test_trainer_overfits_eight_structures(bundled_frames):
    """Training force MAE on 8 real MOF structures falls at least tenfold."""
    torch.manual_seed(0)
    graphs, potential = _setup(_smallest(bundled_frames, 8))
    config = TrainingConfig(epochs=200, batch_size=4, lr=5e-3, ema_decay=None, patience=None,
                            lr_schedule="cosine", loss=LossWeights(energy=1.0, forces=10.0, normalize=False))
    trainer = Trainer(potential, config, seed=0, progress=False)
    before = trainer.evaluate(graphs).metrics["f_mae"]
    trainer.fit(graphs, graphs)
    after = trainer.evaluate(graphs).metrics["f_mae"]
    assert after < before / 10, f"force MAE only went from {before:.1f} to {after:.1f} meV/Å"


def test_float64_training_runs_and_keeps_dtype(bundled_frames):
    graphs, potential = _setup(_smallest(bundled_frames, 2), dtype="float64", channels=8)
    trainer = Trainer(potential, TrainingConfig(epochs=2, batch_size=2), progress=False)
    result = trainer.fit(graphs, graphs)
    assert len(result.history) == 2
    assert all(p.dtype == torch.float64 for p in trainer.potential.parameters())


def test_early_stopping_and_best_epoch(bundled_frames):
    graphs, potential = _setup(_smallest(bundled_frames, 4), channels=8)
    # a learning rate far below float32 resolution leaves the weights (and val loss) unchanged,
    # so no epoch after the first improves and training stops after `patience` epochs
    config = TrainingConfig(epochs=30, batch_size=2, lr=1e-15, patience=2, ema_decay=None)
    result = Trainer(potential, config, progress=False).fit(graphs[:2], graphs[2:])
    assert result.stopped_early
    assert result.best_epoch == 0
    assert len(result.history) == result.best_epoch + 1 + config.patience


def test_nan_loss_raises_clear_error(bundled_frames):
    graphs, potential = _setup(_smallest(bundled_frames, 2), channels=8)
    graphs[0].energy[:] = float("nan")
    with pytest.raises(NonFiniteLossError, match="training loss became nan"):
        Trainer(potential, TrainingConfig(epochs=1, batch_size=2), progress=False).fit(graphs, graphs)


def test_checkpoint_roundtrip_with_weights_only(bundled_frames, tmp_path):
    graphs, potential = _setup(_smallest(bundled_frames, 3), channels=8)
    path = save_checkpoint(tmp_path / "model.pt", potential, {"name": "x"})
    payload = torch.load(path, weights_only=True)  # must not need pickle of arbitrary objects
    assert set(payload) == {"format_version", "model_config", "trial_config", "state_dict"}
    loaded, trial = load_checkpoint(path)
    assert trial == {"name": "x"}
    from farfield.models import collate

    batch = collate(graphs).to(dtype=torch.float32)
    a = potential(batch)["forces"]
    b = loaded(batch)["forces"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_charge_loss_only_where_reference_charges_exist(bundled_frames):
    graphs, _ = _setup(_smallest(bundled_frames, 2), channels=8)
    from farfield.models import collate

    batch = collate(graphs)
    prediction = {"energy": batch.energy.clone(), "forces": batch.forces.clone(), "charges": batch.charges + 0.1}
    weights = LossWeights(energy=1.0, forces=1.0, charges=1.0)
    loss, parts = weighted_loss(prediction, batch, weights)
    assert parts["charges"] == pytest.approx(0.01)
    batch.has_charges[:] = False
    _, parts = weighted_loss(prediction, batch, weights)
    assert "charges" not in parts


def test_normalised_loss_divides_each_term_by_its_training_variance(bundled_frames):
    """With ``normalize`` the loss is Σ w · MSE / Var(target), the variances computed here
    directly from the frames (energy per atom minus the reference energies)."""
    from farfield.models import collate
    from farfield.models.training.loss import target_scales

    graphs, potential = _setup(_smallest(bundled_frames, 6), channels=8)
    ref = potential.reference_energies
    scales = target_scales(graphs, lambda g: ref(g.numbers).sum().reshape(1).detach())
    per_atom = [(float(g.energy[0]) - float(ref(g.numbers).sum())) / len(g.numbers) for g in graphs]
    forces = np.concatenate([g.forces.numpy().ravel() for g in graphs])
    assert scales["energy"] == pytest.approx(np.var(per_atom, ddof=1), rel=1e-5)
    assert scales["forces"] == pytest.approx(np.mean(forces ** 2), rel=1e-5)
    batch = collate(graphs)
    prediction = {"energy": batch.energy + 0.01 * batch.n_atoms, "forces": batch.forces + 0.2}
    raw, parts = weighted_loss(prediction, batch, LossWeights(energy=2.0, forces=3.0, normalize=False))
    assert float(raw) == pytest.approx(2.0 * parts["energy"] + 3.0 * parts["forces"], rel=1e-5)
    normed, _ = weighted_loss(prediction, batch, LossWeights(energy=2.0, forces=3.0), scales,
                              energy_factor=5.0)
    expected = 10.0 * parts["energy"] / scales["energy"] + 3.0 * parts["forces"] / scales["forces"]
    assert float(normed) == pytest.approx(expected, rel=1e-5)


def test_final_stage_raises_the_energy_weight(bundled_frames):
    """The last ``final_fraction`` of the epochs run with the energy weight × factor; the
    validation loss (logged per epoch) jumps by the factor's effect at the switch."""
    graphs, potential = _setup(_smallest(bundled_frames, 4), channels=8)
    config = TrainingConfig(epochs=4, batch_size=2, ema_decay=None, patience=None,
                            loss=LossWeights(final_energy_factor=1000.0, final_fraction=0.5))
    trainer = Trainer(potential, config, seed=0, progress=False)
    result = trainer.fit(graphs, graphs)
    assert trainer.energy_factor == 1000.0
    assert result.best_epoch >= 2  # best epoch looked for again in the final stage


def test_bad_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a farfield checkpoint"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
