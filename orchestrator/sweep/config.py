"""The sweep config: a trial config plus a ``sweep:`` section holding the search space.

The trial fields (``data``, ``split``, ``model``, ``training``, ``tracking``,
``resources``) are the base every trial starts from. ``sweep.grid`` holds the
categorical axes ``backbone``, ``long_range``, ``split`` and ``seed``; their values are
crossed as a full grid (every combination is a *cell*). ``sweep.ranges`` holds numeric
ranges (or categorical ``choices``) addressed by dotted trial-config paths such as
``training.lr``; inside each cell they are searched by Optuna TPE,
``sweep.samples_per_cell`` trials per cell. The ``backbone`` axis may hold ``external``
(a model trained by another library) beside farfield's backbones: the base's
``model.external`` describes it and is dropped for the other entries. Every cell and both ends of every range
are validated as a full ``TrialConfig`` at load time, so a misspelled backbone or an
out-of-bounds learning rate fails before anything starts; names come from the model
registries and the split strategies that exist when the config is loaded.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from farfield.data.config import STRATEGY_NAMES, StrictModel
from farfield.models.external import EXTERNAL
from farfield.orchestrator.config import ConfigError, TrialConfig, _merge, read_yaml, validate_config

GRID_AXES = ("backbone", "variant", "long_range", "split", "seed")


class SearchRange(StrictModel):
    """One searched dimension: ``low``/``high`` (with ``log`` and ``type``) or ``choices``.

    ``type``: ``float`` or ``int``; None = the type of the trial-config field.
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    type: Literal["float", "int"] | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either low/high or choices, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or a list of choices)")
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={self.low}")
        return self


class SchedulerConfig(StrictModel):
    """Early stopping of weak trials. ``kind: asha`` = Ray Tune's ASHAScheduler over epochs.

    ``grace_period``: epochs every trial gets before it can be stopped;
    ``reduction_factor``: 1/rf of the trials at a rung move on. A stopped trial is told to
    Optuna as PRUNED (with its per-epoch values), never as a full-budget result.
    """

    kind: Literal["none", "asha"] = "none"
    grace_period: int = Field(default=2, ge=1)
    reduction_factor: float = Field(default=2.0, gt=1)


class Variant(StrictModel):
    """One named model/training variant of a grid: ``set`` maps dotted trial-config paths to
    values, e.g. ``{name: celli-q, set: {model.long_range: [celli], training.loss.charges: 1.0}}``."""

    name: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)


class GridAxes(StrictModel):
    """Categorical axes crossed as a grid; an omitted axis keeps the base trial's value.

    ``split``: strategy names, or mappings of split fields (merged into ``split``).
    ``variant``: named sets of overrides (:class:`Variant`) — what one axis cannot say
    alone, such as CELLI with and without reference charges or a deeper short-range model.
    """

    backbone: list[str] | None = None
    variant: list[Variant] | None = None
    long_range: list[list[str]] | None = None
    split: list[str | dict[str, Any]] | None = None
    seed: list[int] | None = None


class SweepSpec(StrictModel):
    """How the sweep searches and runs.

    ``metric``/``mode``: the per-epoch validation number to optimise (a key the trainer
    reports, e.g. ``val_f_mae`` in meV/Å, ``val_loss``). ``max_concurrent``: trials at
    once (None = as many as resources allow). ``max_failures``: retries of a trial that
    raised or lost its node. ``storage_path``: Ray Tune's experiment folder (None =
    ``<workspace>/sweeps``; must be shared storage on a multi-node cluster).
    ``search_seed``: seed of the TPE samplers.
    """

    grid: GridAxes = Field(default_factory=GridAxes)
    ranges: dict[str, SearchRange] = Field(default_factory=dict)
    samples_per_cell: int = Field(default=1, ge=1)
    metric: str = "val_f_mae"
    mode: Literal["min", "max"] = "min"
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    max_concurrent: int | None = Field(default=None, ge=1)
    max_failures: int = Field(default=1, ge=0)
    storage_path: str | None = None
    search_seed: int = 0
    #: The grid's ``seed`` also sets ``split.seed``: each seed is a split replica (a new
    #: random split, KMeans hold-out half or farthest-from-seed start) and a new initialisation.
    split_follows_seed: bool = False


class SweepConfig(TrialConfig):
    """A trial config (the base of every trial) plus the ``sweep`` section."""

    sweep: SweepSpec = Field(default_factory=SweepSpec)

    @model_validator(mode="after")
    def _every_cell_and_range_is_a_valid_trial(self) -> SweepConfig:
        names = [v.name for v in self.sweep.grid.variant or []]
        if len(set(names)) != len(names):
            raise ValueError(f"sweep.grid.variant: names must be unique, got {names}")
        for variant in self.sweep.grid.variant or []:
            for path in variant.set:
                try:
                    _field_at(path)
                except ValueError as err:
                    raise ValueError(f"sweep.grid.variant {variant.name!r}: "
                                     f"{str(err).removeprefix(f'sweep.ranges.{path}: ')} ({path})") from None
        for cell in grid_cells(self):
            _validated_trial(self, cell, {}, where=f"sweep.grid cell {cell}")
        for path, spec in self.sweep.ranges.items():
            if path.split(".")[0] in ("name", "workspace", "tracking", "resources", "data"):
                raise ValueError(f"sweep.ranges.{path}: {path.split('.')[0]} is not a searchable section")
            if path in ("model.backbone", "model.long_range", "split.strategy", "seed"):
                raise ValueError(f"sweep.ranges.{path}: this is a grid axis; put it under sweep.grid")
            _field_at(path)
            ends = spec.choices if spec.choices is not None else [spec.low, spec.high]
            for value in ends:
                value = _cast(path, spec, value)
                _validated_trial(self, {}, {path: value}, where=f"sweep.ranges.{path} = {value!r}")
        return self

    def base_trial(self) -> TrialConfig:
        """The trial fields alone, as a ``TrialConfig``."""
        return TrialConfig.model_validate(self.model_dump(exclude={"sweep"}))

    def storage_path(self) -> str:
        """Where Ray Tune keeps the sweep's experiment folder (absolute, or a URI)."""
        if self.sweep.storage_path and "://" in self.sweep.storage_path:
            return self.sweep.storage_path
        return str(Path(self.sweep.storage_path or Path(self.workspace) / "sweeps").expanduser().resolve())


def split_strategies() -> tuple[str, ...]:
    """The split strategy names ``SplitConfig`` accepts now."""
    return STRATEGY_NAMES


def grid_cells(config: SweepConfig) -> list[dict[str, Any]]:
    """Every combination of the grid axes: ``[{"backbone": "painn", "split": "random"}, ...]``,
    the seed axis outermost (all cells of seed 0 first, then seed 1, ...)."""
    axes = {axis: values for axis in GRID_AXES if (values := getattr(config.sweep.grid, axis)) is not None}
    if "variant" in axes:  # plain mappings: cells travel through Ray Tune and into tables
        axes["variant"] = [v.model_dump(mode="json") for v in axes["variant"]]
    for axis, values in axes.items():
        if not values:
            raise ValueError(f"sweep.grid.{axis}: empty list; omit the axis to keep the base value")
    # Seeds outermost: every cell runs once before any runs again, so a sweep stopped part-way
    # has compared every variant × split on the first seed instead of one variant on all seeds.
    order = sorted(axes, key=lambda axis: axis != "seed")
    combos = itertools.product(*(axes[axis] for axis in order))
    return [{axis: dict(zip(order, combo))[axis] for axis in axes} for combo in combos] or [{}]


def cell_label(cell: dict[str, Any]) -> str:
    """Short readable name of a cell: ``painn|none|random|s0``."""
    parts = []
    for axis in GRID_AXES:
        if axis not in cell:
            continue
        value = cell[axis]
        if axis == "long_range":
            value = "+".join(value) or "none"
        elif axis == "variant":
            value = value["name"]
        elif axis == "split" and isinstance(value, dict):
            value = value.get("strategy", "split")
        elif axis == "seed":
            value = f"s{value}"
        parts.append(str(value))
    return "|".join(parts) or "base"


def trial_data(config: SweepConfig, cell: dict[str, Any], sampled: dict[str, Any]) -> dict:
    """The trial-config mapping of one trial: base + grid cell + sampled range values."""
    data = config.model_dump(mode="json", exclude={"sweep"})
    overrides: dict[str, Any] = {}
    if "backbone" in cell:
        overrides["model"] = {"backbone": cell["backbone"]}
        if cell["backbone"] != EXTERNAL:  # the base's model.external describes the axis's `external` entry
            data["model"]["external"] = None
    if "long_range" in cell:
        overrides.setdefault("model", {})["long_range"] = list(cell["long_range"])
    if "split" in cell:
        split = cell["split"]
        overrides["split"] = dict(split) if isinstance(split, dict) else {"strategy": split}
    if "seed" in cell:
        overrides["seed"] = cell["seed"]
        if config.sweep.split_follows_seed:
            overrides.setdefault("split", {})["seed"] = cell["seed"]
    data = _merge(data, overrides)
    settings = dict(cell["variant"]["set"]) if "variant" in cell else {}
    for path, value in {**settings, **sampled}.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return data


def _validated_trial(config: SweepConfig, cell: dict, sampled: dict, where: str) -> TrialConfig:
    try:
        return TrialConfig.model_validate(trial_data(config, cell, sampled))
    except ValueError as err:
        raise ValueError(f"{where} is not a valid trial: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())
    return str(err)


def _field_at(path: str):
    """The pydantic field a dotted path names in ``TrialConfig``; raises with the valid keys."""
    from farfield.orchestrator.config import _first_model

    model = TrialConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        if model is None or part not in model.model_fields:
            valid = sorted(model.model_fields) if model is not None else []
            where = ".".join(parts[:i]) or "(top level)"
            raise ValueError(f"sweep.ranges.{path}: no key {part!r} under {where} (valid: {', '.join(valid)})")
        field = model.model_fields[part]
        model = _first_model(field.annotation) if i < len(parts) - 1 else None
    return field


def _cast(path: str, spec: SearchRange, value):
    if spec.choices is not None:
        return value
    kind = spec.type or ("int" if _field_at(path).annotation in (int, int | None) else "float")
    return int(value) if kind == "int" else float(value)


def range_kind(path: str, spec: SearchRange) -> str:
    """``"categorical"``, ``"int"`` or ``"float"``: how TPE samples ``path``."""
    if spec.choices is not None:
        return "categorical"
    return spec.type or ("int" if _field_at(path).annotation in (int, int | None) else "float")


def load_sweep_config(path: str | Path, overrides: dict | None = None) -> SweepConfig:
    """Read a YAML sweep config (``overrides``: nested dict applied on top).

    Raises ``ConfigError`` naming the file and every invalid key or grid cell.
    """
    data = read_yaml(path)
    if overrides:
        data = _merge(data, copy.deepcopy(overrides))
    if "sweep" not in data:
        raise ConfigError(f"{path}: not a sweep config: no 'sweep' section (a single trial runs with `farfield train`)")
    return validate_config(SweepConfig, data, source=str(path))
