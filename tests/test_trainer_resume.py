"""An interrupted training continues from its state file and ends where an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from farfield.data.datasets import bundled_store
from farfield.models import LossWeights, ModelConfig, TrainingConfig, build_potential
from farfield.models.blocks.readout import fit_reference_energies
from farfield.models.training import Trainer, build_graphs, element_count_matrix, force_rms


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    frames = sorted(bundled_store(tmp_path_factory.mktemp("ws")).read(), key=len)[:6]
    return build_graphs(frames, 4.0, torch.float32)


class Recorder:
    """A reporter that keeps the rows it is given and can stop training after an epoch."""

    def __init__(self, stop_after: int | None = None):
        self.rows, self.stop_after = [], stop_after

    def on_epoch(self, epoch, metrics):
        self.rows.append((epoch, dict(metrics)))
        if self.stop_after is not None and epoch == self.stop_after:
            raise KeyboardInterrupt  # as Ctrl-C or a lost process between two epochs


def _trainer(graphs, reporter, **training):
    torch.manual_seed(0)
    reference = fit_reference_energies(element_count_matrix(graphs), np.array([float(g.energy[0]) for g in graphs]))
    potential = build_potential(ModelConfig(channels=8, layers=2, cutoff=4.0), reference_energies=reference,
                                energy_scale=force_rms(graphs))
    config = TrainingConfig(**{"epochs": 5, "batch_size": 2, "lr": 3e-3, "ema_decay": 0.9, "lr_schedule": "cosine",
                               "loss": LossWeights(energy=1.0, forces=10.0), **training})
    return Trainer(potential, config, seed=0, reporter=reporter, progress=False)


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.potential.state_dict().items()}


@pytest.mark.parametrize("stop_after", [0, 2])
def test_resumed_training_equals_uninterrupted(graphs, tmp_path, stop_after):
    whole = Recorder()
    reference = _trainer(graphs, whole)
    expected = reference.fit(graphs[:4], graphs[4:])

    state = tmp_path / "trial.state.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer(graphs, Recorder(stop_after=stop_after)).fit(graphs[:4], graphs[4:], state, "trial-a")
    assert state.is_file() == (stop_after > 0)  # the interrupted epoch's state is never saved
    again = Recorder()
    resumed_trainer = _trainer(graphs, again)
    resumed = resumed_trainer.fit(graphs[:4], graphs[4:], state, "trial-a")

    assert resumed.resumed_at_epoch == (stop_after or None)
    np.testing.assert_equal(resumed.history, expected.history)  # NaN (no charges) equals NaN
    assert resumed.best_epoch == expected.best_epoch
    assert [epoch for epoch, _ in again.rows] == list(range(5))  # the reporter sees every epoch once
    np.testing.assert_equal(again.rows, whole.rows)
    for key, value in _weights(reference).items():
        assert torch.equal(_weights(resumed_trainer)[key], value), key


def test_segments_say_which_call_trained_which_epochs(graphs, tmp_path):
    state = tmp_path / "trial.state.pt"
    with pytest.raises(KeyboardInterrupt):
        _trainer(graphs, Recorder(stop_after=1), epochs=4).fit(graphs[:4], graphs[4:], state, "k", {"commit": "a"})
    assert _trainer(graphs, None, epochs=2).fit(graphs[:4], graphs[4:]).segments == []  # no state file: none kept
    resumed = _trainer(graphs, None, epochs=4).fit(graphs[:4], graphs[4:], state, "k", {"commit": "b"})
    assert resumed.segments == [{"from_epoch": 0, "commit": "a"}, {"from_epoch": 1, "commit": "b"}]  # epoch 1 lost

    older = tmp_path / "older.state.pt"  # a state written before segments were kept
    with pytest.raises(KeyboardInterrupt):
        _trainer(graphs, Recorder(stop_after=1), epochs=2).fit(graphs[:4], graphs[4:], older, "k")
    saved = torch.load(older, weights_only=True)
    del saved["segments"]
    torch.save(saved, older)
    again = _trainer(graphs, None, epochs=2).fit(graphs[:4], graphs[4:], older, "k", {"commit": "c"})
    assert again.segments == [{"from_epoch": 0}, {"from_epoch": 1, "commit": "c"}]


def test_state_of_another_key_or_unreadable_starts_over(graphs, tmp_path):
    state = tmp_path / "trial.state.pt"
    _trainer(graphs, None, epochs=2).fit(graphs[:4], graphs[4:], state, "trial-a")
    other = _trainer(graphs, None, epochs=2).fit(graphs[:4], graphs[4:], state, "trial-b")
    assert other.resumed_at_epoch is None and len(other.history) == 2
    state.write_bytes(b"not a torch file")
    fresh = _trainer(graphs, None, epochs=2).fit(graphs[:4], graphs[4:], state, "trial-b")
    assert fresh.resumed_at_epoch is None and len(fresh.history) == 2


def test_finished_state_trains_no_more(graphs, tmp_path):
    state = tmp_path / "trial.state.pt"
    first_trainer = _trainer(graphs, None, epochs=3, patience=1)
    first = first_trainer.fit(graphs[:4], graphs[4:], state, "k")
    second_trainer = _trainer(graphs, None, epochs=3, patience=1)
    second = second_trainer.fit(graphs[:4], graphs[4:], state, "k")
    assert second.resumed_at_epoch == len(first.history)
    np.testing.assert_equal(second.history, first.history)
    for key, value in _weights(first_trainer).items():
        assert torch.equal(_weights(second_trainer)[key], value), key


def test_state_key_ignores_machine_paths_and_follows_config_and_data():
    """A trial's state continues on another machine (same config, data under other paths), not
    after a change of the config or of the dataset's or split's content."""
    from farfield.orchestrator.config import TrialConfig
    from farfield.orchestrator.trial import training_state_key

    def config(root: str, **model) -> TrialConfig:
        return TrialConfig.model_validate({
            "name": f"trial-{root}", "workspace": f"/{root}/workspace",
            "data": {"dataset": f"/{root}/workspace/datasets/bundled"},
            "split": {"strategy": "random", "file": f"/{root}/workspace/splits/random.json"},
            "model": {"channels": 8, **model}, "tracking": {"experiment": root}})

    here = training_state_key(config("a"), "sha256:data", "sha256:split")
    assert training_state_key(config("b"), "sha256:data", "sha256:split") == here
    assert training_state_key(config("a", channels=16), "sha256:data", "sha256:split") != here
    assert training_state_key(config("a"), "sha256:other", "sha256:split") != here
    assert training_state_key(config("a"), "sha256:data", "sha256:other") != here
