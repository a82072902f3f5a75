"""Runs inside the external trainer's environment: train with the library's own trainer, then
predict every side through the library's ASE calculator.

    python worker.py SPEC.json

Never imported by farfield (it imports mace-torch or NequIP); farfield writes SPEC.json
(``farfield.orchestrator.external.trial``) and reads what this script writes into the spec's
``out`` folder:

* ``predictions-<side>.npz``: ``structure_id`` (n,), ``energy`` (n,) eV, ``n_atoms`` (n,),
  ``forces`` (Σ n_atoms, 3) eV/Å, and for models with latent charges (MACELES) ``charges``
  (Σ n_atoms,) e, ``head_energy`` (n,) eV (the LES energy) and ``short_energy`` (n,) eV (the
  interaction energy without it and without the reference energies);
* ``result.json``: ``model_file`` (the library's own model file), ``n_parameters``,
  ``curves`` (one row per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_e_mae``
  meV/atom, ``val_f_mae`` meV/Å, ... as farfield's trainer names them), ``versions``,
  ``train_seconds``, ``device``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PACKAGES = ("torch", "e3nn", "mace-torch", "les", "nequip", "nequip-allegro", "ase", "numpy")


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _run(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


# --- mace-torch (MACE, MACELES) ------------------------------------------------------------


def _train_mace(spec: dict, device: str) -> Path:
    arguments = list(spec["arguments"])
    if not any(a.startswith("--device") for a in arguments):
        arguments.append(f"--device={device}")
    _run([sys.executable, "-m", "mace.cli.run_train", *arguments])
    model_dir = Path(spec["workdir"])
    for name in (f"{spec['model_name']}_stagetwo.model", f"{spec['model_name']}.model"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"mace_run_train wrote no {spec['model_name']}.model in {model_dir}")


def _mace_curves(spec: dict) -> list[dict]:
    """Per-epoch rows from mace-torch's ``results/<name>_run-<seed>_train.txt`` (JSON lines)."""
    rows: dict[int, dict] = {}
    train: dict[int, list[float]] = {}
    for path in sorted((Path(spec["workdir"]) / "results").glob("*_train.txt")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            epoch = entry.get("epoch")
            if epoch is None:
                continue
            if entry.get("mode") == "opt":
                train.setdefault(int(epoch), []).append(float(entry["loss"]))
            elif entry.get("mode") == "eval":
                row = rows.setdefault(int(epoch), {"epoch": int(epoch)})
                row["val_loss"] = float(entry["loss"])
                for ours, theirs in (("e_mae", "mae_e_per_atom"), ("e_rmse", "rmse_e_per_atom"),
                                     ("f_mae", "mae_f"), ("f_rmse", "rmse_f")):
                    if entry.get(theirs) is not None:
                        row[f"val_{ours}"] = 1e3 * float(entry[theirs])
    for epoch, losses in train.items():
        rows.setdefault(epoch, {"epoch": epoch})["train_loss"] = float(np.mean(losses))
    return [rows[epoch] for epoch in sorted(rows)]


def _mace_calculator(model_file: Path, device: str, dtype: str):
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(model_file), device=device, default_dtype=dtype)


def _mace_latent(calculator, atoms) -> dict | None:
    """MACELES's latent charges (e) and LES energy (eV) for ``atoms``; None for other models.

    mace-torch's calculator does not return them, so its model is called on the calculator's
    own batch of ``atoms``."""
    model = calculator.models[0]
    if type(model).__name__ != "MACELES":
        return None
    batch = calculator._atoms_to_batch(atoms)  # noqa: SLF001 - the calculator's own input preparation
    dtype = next(model.parameters()).dtype
    data = {k: (v.to(dtype) if hasattr(v, "is_floating_point") and v.is_floating_point() else v)
            for k, v in batch.to_dict().items()}
    out = model(data, compute_stress=False, training=False)
    return {"charges": out["latent_charges"].detach().double().cpu().numpy().reshape(-1),
            "head_energy": float(out["les_energy"].detach().double().sum())}


def _mace_parameters(calculator) -> int:
    return int(sum(p.numel() for p in calculator.models[0].parameters()))


# --- NequIP / Allegro ---------------------------------------------------------------------


def _train_nequip(spec: dict, device: str) -> Path:
    import yaml

    workdir = Path(spec["workdir"])
    config = spec["config"]
    config["trainer"]["accelerator"] = "gpu" if device == "cuda" else "cpu"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    script = Path(sys.executable).parent / "nequip-train"
    command = [str(script)] if script.is_file() else [sys.executable, "-c",
                                                      "from nequip.scripts.train import main; main()"]
    _run([*command, "-cp", str(workdir), "-cn", "config", f"hydra.run.dir={workdir / 'hydra'}"])
    for name in ("best.ckpt", "last.ckpt"):
        if (workdir / name).is_file():
            return workdir / name
    raise FileNotFoundError(f"nequip-train wrote no best.ckpt in {workdir}")


def _nequip_curves(spec: dict) -> list[dict]:
    """Per-epoch rows from Lightning's CSV log (``metrics/version_0/metrics.csv``)."""
    path = Path(spec["workdir"]) / "metrics" / "version_0" / "metrics.csv"
    if not path.is_file():
        return []
    rows: dict[int, dict] = {}
    names = {"val0_epoch/weighted_sum": "val_loss", "val0_epoch/per_atom_energy_mae": "val_e_mae",
             "val0_epoch/forces_mae": "val_f_mae", "train_loss_epoch/weighted_sum": "train_loss"}
    scale = {"val_e_mae": 1e3, "val_f_mae": 1e3}
    with path.open() as handle:
        for entry in csv.DictReader(handle):
            if not entry.get("epoch"):
                continue
            row = rows.setdefault(int(float(entry["epoch"])), {"epoch": int(float(entry["epoch"]))})
            for theirs, ours in names.items():
                if entry.get(theirs):
                    row[ours] = scale.get(ours, 1.0) * float(entry[theirs])
    return [rows[epoch] for epoch in sorted(rows)]


def _nequip_calculator(model_file: Path, device: str, dtype: str):
    try:
        from nequip.integrations.ase import NequIPCalculator
    except ImportError:  # nequip < 0.19
        from nequip.ase import NequIPCalculator

    return NequIPCalculator._from_saved_model(str(model_file), device=device)  # noqa: SLF001 - loads a checkpoint


def _nequip_parameters(calculator) -> int:
    return int(sum(p.numel() for p in calculator.model.parameters()))


TRAINERS = {
    "mace": (_train_mace, _mace_curves, _mace_calculator, _mace_parameters, _mace_latent),
    "maceles": (_train_mace, _mace_curves, _mace_calculator, _mace_parameters, _mace_latent),
    "nequip": (_train_nequip, _nequip_curves, _nequip_calculator, _nequip_parameters, lambda calc, atoms: None),
    "allegro": (_train_nequip, _nequip_curves, _nequip_calculator, _nequip_parameters, lambda calc, atoms: None),
}


def _predict(calculator, latent, path: Path, out: Path) -> None:
    import ase.io

    frames = ase.io.read(path, ":", format="extxyz")
    columns: dict[str, list] = {"structure_id": [], "energy": [], "n_atoms": [], "forces": []}
    extra: dict[str, list] = {"charges": [], "head_energy": [], "short_energy": []}
    for atoms in frames:
        atoms.calc = calculator
        energy = float(atoms.get_potential_energy())
        columns["structure_id"].append(str(atoms.info["structure_id"]))
        columns["energy"].append(energy)
        columns["n_atoms"].append(len(atoms))
        columns["forces"].append(np.asarray(atoms.get_forces(), dtype=np.float64))
        charges = latent(calculator, atoms)
        if charges is not None:
            extra["charges"].append(charges["charges"])
            extra["head_energy"].append(charges["head_energy"])
            extra["short_energy"].append(float(np.sum(calculator.results["node_energy"])))
    arrays = {"structure_id": np.array(columns["structure_id"]), "energy": np.array(columns["energy"]),
              "n_atoms": np.array(columns["n_atoms"]), "forces": np.concatenate(columns["forces"])}
    if extra["charges"]:
        arrays.update(charges=np.concatenate(extra["charges"]), head_energy=np.array(extra["head_energy"]),
                      short_energy=np.array(extra["short_energy"]))
    np.savez(out, **arrays)


def main(spec_path: str) -> None:
    import torch

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(int(spec["threads"]))
    device = spec["device"] if spec["device"] != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    train, curves, calculator_of, parameters, latent = TRAINERS[spec["trainer"]]
    Path(spec["workdir"]).mkdir(parents=True, exist_ok=True)
    out = Path(spec["out"])
    start = time.perf_counter()
    model_file = train(spec, device)
    train_seconds = time.perf_counter() - start
    calculator = calculator_of(model_file, device, spec["dtype"])
    for side, path in spec["files"].items():
        _predict(calculator, latent, Path(path), out / f"predictions-{side}.npz")
    result = {"model_file": str(model_file), "n_parameters": parameters(calculator), "curves": curves(spec),
              "versions": _versions(), "train_seconds": train_seconds, "device": device}
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
