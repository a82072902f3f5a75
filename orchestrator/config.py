"""The trial config: one typed model covering data, split, model, training, tracking, resources.

Config is the API: the CLI loads YAML into these objects and calls functions that take
them; notebooks build the same objects directly. YAML is read with ``yaml.safe_load``;
unknown keys are errors that name the key, the file and the closest valid key.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from farfield.data.config import DataConfig, SplitConfig, StrictModel
from farfield.models.config import ModelConfig, TrainingConfig


class ConfigError(ValueError):
    """A config file could not be read or validated; the message lists every problem."""


class TrackingConfig(StrictModel):
    """Where the trial is logged.

    ``uri``: an MLflow tracking URI; None = a local SQLite store in the workspace
    (``<workspace>/mlflow.db``, artifacts under ``<workspace>/mlartifacts``).
    ``experiment``: MLflow experiment name. ``run_name``: None = what the trial is,
    ``painn+les · size · seed 0`` (``tracking.trial_title``).
    """

    uri: str | None = None
    experiment: str = "farfield"
    run_name: str | None = None


class ResourcesConfig(StrictModel):
    """Compute of one trial: ``device`` (auto = CUDA if present), Ray CPUs/GPUs, torch threads."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)
    torch_threads: int | None = Field(default=None, ge=1)


class TrialConfig(StrictModel):
    """Everything one training trial needs. ``workspace``: folder for stores, splits, MLflow."""

    name: str = "trial"
    seed: int = 0
    workspace: Path = Path("workspace")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)

    @model_validator(mode="after")
    def _charge_loss_needs_charge_head(self) -> TrialConfig:
        from farfield.models.registry import CHARGE_HEADS

        if self.training.loss.charges > 0 and not set(self.model.long_range) & CHARGE_HEADS:
            raise ValueError(
                f"training.loss.charges = {self.training.loss.charges} needs a head that predicts charges in "
                f"model.long_range (one of: {', '.join(sorted(CHARGE_HEADS)) or 'none registered yet'}); "
                f"got model.long_range = {self.model.long_range}"
            )
        return self

    def flat_params(self) -> dict[str, str]:
        """``{"model.channels": "64", ...}``: the resolved config flattened for trackers."""
        return _flatten(self.model_dump(mode="json"))


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return flat


def load_trial_config(path: str | Path, overrides: dict | None = None) -> TrialConfig:
    """Read a YAML trial config; ``overrides`` (nested dict) are applied on top.

    Raises ``ConfigError`` naming the file and every invalid key/value.
    """
    data = read_yaml(path)
    if overrides:
        data = _merge(data, overrides)
    return validate_config(TrialConfig, data, source=str(path))


def read_yaml(path: str | Path) -> dict:
    """``yaml.safe_load`` of a mapping, with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    return data


def validate_config(model: type[BaseModel], data: dict, source: str):
    """Validate ``data`` against ``model``; errors name ``source`` and suggest close keys."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = [_describe(model, e) for e in err.errors()]
        raise ConfigError(f"{source}: invalid config:\n  " + "\n  ".join(lines)) from None


def _describe(model: type[BaseModel], error: dict) -> str:
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, error["loc"][:-1])
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown key{hint} (valid keys here: {', '.join(valid)})"
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {error['msg']}{got_text}"


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by following ``loc`` from ``model`` (None if not a model)."""
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _first_model(field.annotation) if field is not None else None
    return model


def _first_model(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, dict, tuple):
        for arg in typing.get_args(annotation):
            found = _first_model(arg)
            if found is not None:
                return found
    return None


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
