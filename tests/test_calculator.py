"""The ASE calculator: reproduces the trainer's predictions exactly, runs NVE MD, loads from MLflow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from farfield.data.datasets import bundled_store
from farfield.models import ModelConfig, TrainingConfig, build_potential
from farfield.models.calculator import FarfieldCalculator
from farfield.models.training import Trainer, build_graphs, force_rms, save_checkpoint

CUTOFF = 4.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MACE-style model trained briefly (float32, the default) on 4 small bundled MOFs, and its checkpoint."""
    torch.manual_seed(0)
    frames = sorted(bundled_store(tmp_path_factory.mktemp("ws")).read(), key=len)[:4]
    graphs = build_graphs(frames, CUTOFF, torch.float32)
    config = ModelConfig(backbone="mace", channels=8, layers=2, cutoff=CUTOFF, l_max=2, radial_mlp=[16])
    potential = build_potential(config, energy_scale=force_rms(graphs))  # float32 parameters
    trainer = Trainer(potential, TrainingConfig(epochs=2, batch_size=2, eval_batch_size=1, ema_decay=None),
                      progress=False)
    trainer.fit(graphs, graphs)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", trainer.potential)
    return frames, graphs, trainer, path


def test_calculator_reproduces_trainer_predictions_exactly(trained):
    frames, graphs, trainer, path = trained
    table = trainer.evaluate(graphs).predictions
    calc = FarfieldCalculator.from_checkpoint(path)
    for atoms, graph, (_, row) in zip(frames, graphs, table.iterrows()):
        atoms = atoms.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(row["energy_pred"], rel=0, abs=1e-9)
        expected = trainer.potential(graph, compute_forces=True, compute_stress=True)
        np.testing.assert_array_equal(atoms.get_forces(), expected["forces"].detach().double().numpy())
        voigt = expected["stress"][0].detach().double().numpy()[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        np.testing.assert_array_equal(atoms.get_stress(), voigt)


def test_calculator_runs_nve_md(trained):
    """20 velocity-Verlet steps on a real MOF: finite, and energy drift small against kinetic energy."""
    frames, _, _, path = trained
    atoms = frames[0].copy()
    atoms.calc = FarfieldCalculator.from_checkpoint(path)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    start = atoms.get_total_energy()
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(20)
    assert np.all(np.isfinite(atoms.positions))
    assert abs(atoms.get_total_energy() - start) < 0.5 * atoms.get_kinetic_energy() + 1e-3


def test_calculator_refuses_stress_without_periodic_cell(trained, water_dimer):
    _, _, _, path = trained
    water_dimer.calc = FarfieldCalculator.from_checkpoint(path)
    assert np.isfinite(water_dimer.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        water_dimer.get_stress()
    with pytest.raises(PropertyNotImplementedError, match="charges"):
        water_dimer.calc.get_property("charges", water_dimer)


@pytest.mark.slow  # MLflow's SQLite store setup alone takes ~10-30 s here
@pytest.mark.integration
def test_calculator_from_mlflow_run(trained, tmp_path):
    """A checkpoint logged as an MLflow artifact loads by run id (orchestrator side) and agrees."""
    from mlflow.tracking import MlflowClient

    from farfield.orchestrator.checkpoints import load_calculator

    frames, _, _, path = trained
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("calc", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_artifact(run_id, str(path), "checkpoint")
    from_run = load_calculator(run_id, uri=uri)
    local = load_calculator(path)
    atoms = frames[1].copy()
    energies = []
    for calc in (from_run, local):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1]
    with pytest.raises(ValueError, match="not found"):
        load_calculator("0123456789abcdef", uri=uri)
