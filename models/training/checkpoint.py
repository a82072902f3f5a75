"""Checkpoints: a state_dict plus the config as JSON, loadable with ``weights_only=True``.

Nothing executable is stored: loading rebuilds the model from the config through the
registry and then fills in the tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from farfield.models.config import ModelConfig
from farfield.models.potential import Potential
from farfield.models.registry import build_potential

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, potential: Potential, trial_config: dict | None = None) -> Path:
    """Write ``{"format_version", "model_config" (JSON str), "trial_config" (JSON str), "state_dict"}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": json.dumps(potential.model_config, sort_keys=True),
        "trial_config": json.dumps(trial_config or {}, sort_keys=True, default=str),
        "state_dict": {k: v.detach().cpu() for k, v in potential.state_dict().items()},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Potential, dict]:
    """Rebuild the potential of a checkpoint; returns ``(potential, trial_config)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: not a farfield checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a farfield checkpoint of format version {FORMAT_VERSION}")
    model_config, state_dict = _upgrade_celli(json.loads(payload["model_config"]), payload["state_dict"])
    potential = build_potential(ModelConfig.model_validate(model_config))
    potential.load_state_dict(state_dict)
    return potential.to(device), json.loads(payload["trial_config"])


def _upgrade_celli(model_config: dict, state_dict: dict) -> tuple[dict, dict]:
    """Checkpoints written before ``model.heads.celli.parametrisation`` existed used farfield's own
    parametrisation, whose tensors were attributes of the head rather than of ``head.inputs``."""
    celli = model_config.get("heads", {}).get("celli")
    if celli is None or "parametrisation" in celli:
        return model_config, state_dict
    celli["parametrisation"] = "farfield"
    prefix = "heads.celli."
    renamed = {(prefix + "inputs." + key[len(prefix):] if key.startswith(prefix) else key): value
               for key, value in state_dict.items()}
    return model_config, renamed
