"""What the external trainer is told: the trial config translated into its own arguments.

The shared size and budget fields of the trial mean the same to every trainer and are
translated; ``model.external.options`` (the trainer's own names) are applied last and win.
Everything else keeps the library's own defaults (its loss weights, LR schedule, E0 fit).

==========================  ============================  =====================================
farfield                    mace_run_train (mace/maceles)  nequip-train YAML (nequip/allegro)
==========================  ============================  =====================================
``model.cutoff`` (Å)        ``r_max``                      ``cutoff_radius``
``model.channels``          ``num_channels``               ``num_features`` / ``num_scalar_features``
``model.layers``            ``num_interactions``           ``num_layers``
``model.l_max``             ``max_ell``                    ``l_max``
``model.hidden_l_max``      ``max_L``                      –
``model.correlation``       ``correlation``                –
``model.n_radial``          ``num_radial_basis``           ``num_bessels``
``model.radial_mlp``        ``radial_MLP``                 ``radial_mlp_depth``/``_width``
``model.dtype``             ``default_dtype``              ``model_dtype``
``training.epochs``         ``max_num_epochs``             ``trainer.max_epochs``
``training.batch_size``     ``batch_size``                 train dataloader ``batch_size``
``training.eval_batch_size``  ``valid_batch_size``         val/test dataloader ``batch_size``
``training.lr``             ``lr``                         ``optimizer.lr``
``training.ema_decay``      ``ema``, ``ema_decay``         ``EMALightningModule.ema_decay``
``training.grad_clip``      ``clip_grad``                  ``trainer.gradient_clip_val``
``training.patience``       ``patience``                   ``EarlyStopping.patience``
``seed``                    ``seed``                       ``seed`` (model and data)
==========================  ============================  =====================================
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ase.data import atomic_numbers

from farfield.orchestrator.config import TrialConfig
from farfield.orchestrator.external.handoff import CHARGES_KEY, ENERGY_KEY, FORCES_KEY, STRESS_KEY

#: trainer → mace-torch's ``--model``.
MACE_MODELS = {"mace": "MACE", "maceles": "MACELES"}
#: The model mace_run_train saves is ``<work_dir>/<MODEL_NAME>.model``.
MODEL_NAME = "model"


def mace_options(config: TrialConfig, files: dict[str, Path], workdir: Path, elements: list[str]) -> dict[str, Any]:
    """``mace_run_train`` arguments (name → value, before rendering) for a mace/maceles trial.

    ``elements``: chemical symbols of the dataset; the model's element table (mace-torch's
    ``atomic_numbers``), so that test structures with an element absent from training can be
    evaluated, as farfield's own models can (their E0 is then 0, the least-squares minimum norm)."""
    model, training, external = config.model, config.training, config.model.external
    options: dict[str, Any] = {
        "name": MODEL_NAME, "seed": config.seed, "work_dir": str(workdir), "model": MACE_MODELS[external.trainer],
        "train_file": str(files["train"]), "valid_file": str(files["val"]),
        "atomic_numbers": json.dumps(sorted(atomic_numbers[symbol] for symbol in elements)),
        "energy_key": ENERGY_KEY, "forces_key": FORCES_KEY, "stress_key": STRESS_KEY, "charges_key": CHARGES_KEY,
        "E0s": "average", "r_max": model.cutoff, "num_channels": model.channels, "num_interactions": model.layers,
        "max_ell": model.l_max, "max_L": model.hidden_l_max, "correlation": model.correlation,
        "num_radial_basis": model.n_radial, "radial_MLP": json.dumps(model.radial_mlp),
        "default_dtype": model.dtype, "max_num_epochs": training.epochs, "batch_size": training.batch_size,
        "valid_batch_size": training.eval_batch_size, "lr": training.lr,
        "clip_grad": "None" if training.grad_clip is None else training.grad_clip,
        "ema": training.ema_decay is not None, "ema_decay": training.ema_decay, "patience": training.patience,
        "eval_interval": 1, "error_table": "PerAtomMAE", "save_cpu": True,
    }
    options.update(external.options)
    return options


def render_arguments(options: dict[str, Any]) -> list[str]:
    """``--name=value`` per option; ``True`` is the bare flag, ``False`` and ``None`` leave it out."""
    arguments = []
    for name, value in options.items():
        if value is True:
            arguments.append(f"--{name}")
        elif value is not False and value is not None:
            arguments.append(f"--{name}={json.dumps(value) if isinstance(value, (list, dict)) else value}")
    return arguments


def nequip_config(config: TrialConfig, files: dict[str, Path], workdir: Path, elements: list[str]) -> dict:
    """The ``nequip-train`` YAML (as a mapping) of a nequip/allegro trial; ``elements``: the
    chemical symbols of the dataset, the model's atom types."""
    type_names = list(elements)
    model, training, external = config.model, config.training, config.model.external
    loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": training.batch_size, "num_workers": 0,
              "shuffle": True}
    eval_loader = {"_target_": "torch.utils.data.DataLoader", "batch_size": training.eval_batch_size,
                   "num_workers": 0}
    monitored = "val0_epoch/weighted_sum"
    callbacks: list[dict] = [{"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "monitor": monitored,
                              "dirpath": str(workdir), "filename": "best", "save_last": True}]
    if training.patience is not None:
        callbacks.insert(0, {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": monitored,
                             "min_delta": 0.0, "patience": training.patience})
    metrics = {"_target_": "nequip.train.EnergyForceMetrics",
               "coeffs": {"per_atom_energy_mae": 1.0, "forces_mae": 1.0}}
    key_mapping = {ENERGY_KEY: "total_energy", FORCES_KEY: "forces"}
    transforms = [{"_target_": "nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper", "model_type_names": type_names},
                  {"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": model.cutoff}]

    def dataset(side: str) -> dict:
        return {"_target_": "nequip.data.dataset.ASEDataset", "file_path": str(files[side]),
                "transforms": transforms, "ase_args": {"format": "extxyz"}, "key_mapping": key_mapping}

    core = {"seed": config.seed, "model_dtype": model.dtype, "type_names": type_names, "r_max": model.cutoff,
            "num_bessels": model.n_radial, "num_layers": model.layers, "l_max": model.l_max,
            "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
            "per_type_energy_scales": "${training_data_stats:forces_rms}",
            "per_type_energy_shifts": "${training_data_stats:per_atom_energy_mean}",
            "per_type_energy_scales_trainable": False, "per_type_energy_shifts_trainable": False}
    if external.trainer == "nequip":
        network = {"_target_": "nequip.model.NequIPGNNModel", "num_features": model.channels,
                   "radial_mlp_depth": len(model.radial_mlp), "radial_mlp_width": max(model.radial_mlp)}
    else:
        network = {"_target_": "allegro.model.AllegroModel", "num_scalar_features": model.channels,
                   "num_tensor_features": max(1, model.channels // 2), "parity": True,
                   "radial_chemical_embed": {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                                             "num_bessels": model.n_radial},
                   "radial_chemical_embed_dim": model.channels, "scalar_embed_mlp_hidden_layers_depth": 1,
                   "scalar_embed_mlp_hidden_layers_width": max(model.radial_mlp),
                   "allegro_mlp_hidden_layers_depth": 1, "allegro_mlp_hidden_layers_width": max(model.radial_mlp),
                   "readout_mlp_hidden_layers_depth": 1, "readout_mlp_hidden_layers_width": model.channels}
        core.pop("num_bessels")
    module = {"_target_": ("nequip.train.EMALightningModule" if training.ema_decay is not None
                           else "nequip.train.NequIPLightningModule"),
              "loss": {"_target_": "nequip.train.EnergyForceLoss", "per_atom_energy": True,
                       "coeffs": {"total_energy": 1.0, "forces": 1.0}},
              "val_metrics": metrics, "test_metrics": copy.deepcopy(metrics),
              "optimizer": {"_target_": "torch.optim.Adam", "lr": training.lr},
              "model": {**core, **network}}
    if training.ema_decay is not None:
        module["ema_decay"] = training.ema_decay
    trainer = {"_target_": "lightning.Trainer", "accelerator": "auto", "enable_checkpointing": True,
               "max_epochs": training.epochs, "log_every_n_steps": 1, "callbacks": callbacks,
               "logger": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(workdir),
                          "name": "metrics", "version": 0}}
    if training.grad_clip is not None:
        trainer["gradient_clip_val"] = training.grad_clip
    document = {
        "run": ["train"],
        "data": {"_target_": "nequip.data.datamodule.NequIPDataModule", "seed": config.seed,
                 "train_dataset": dataset("train"), "val_dataset": dataset("val"),
                 "train_dataloader": loader, "val_dataloader": eval_loader,
                 "stats_manager": {"_target_": "nequip.data.CommonDataStatisticsManager", "type_names": type_names,
                                   "dataloader_kwargs": {"batch_size": training.eval_batch_size}}},
        "trainer": trainer,
        "training_module": module,
    }
    for path, value in external.options.items():
        set_dotted(document, path, value)
    return document


def set_dotted(document: dict, path: str, value: Any, where: str = "model.external.options.") -> None:
    """``document[a][b][c] = value`` for ``path`` ``a.b.c`` (missing mappings are created).
    ``where``: what the error names before ``path`` (the setting's source)."""
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{where}{path}: {part!r} is not a mapping in the config it sets")
    node[leaf] = value
