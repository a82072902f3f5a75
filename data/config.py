"""Typed configuration of the data and split stages (part of a trial config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Base of every farfield config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Which dataset a trial trains on.

    ``dataset``: ``"bundled"`` (the real CoRE MOF + GFN1-xTB set shipped with farfield)
    or a path to a dataset store directory (``farfield data import`` makes one).
    ``max_structures``: keep only the first N structures of the index (quick runs); the split
    is then made over their parents only, so every side keeps its fraction.
    """

    dataset: str = "bundled"
    max_structures: int | None = Field(default=None, ge=1)


class SplitConfig(StrictModel):
    """How parents (MOFs) are divided into train / val / test.

    Splits are made over ``parent_id``: all configurations of a MOF land on one side.
    ``file``: use an existing split file instead of making one (its dataset hash must match).
    ``strategy`` (docs/splits.md): ``random``; ``size`` (largest parents in test);
    ``max_separation`` (the region farthest from train in the joint metric, optional
    exclusion ``gap``); ``cluster`` (whole HDBSCAN clusters in test: ``held_out_clusters``,
    or fold ``fold`` of ``n_folds``, else clusters closest to the test fraction);
    ``element`` / ``metal`` (every parent containing ``element`` in test; ``metal`` picks one
    if ``element`` is unset). ``weight``: w of the joint metric (1 = geometry only).
    ``min_cluster_size``/``min_samples``/``pca_components``/``noise``/``cluster_selection``: HDBSCAN
    clustering (``leaf`` gives many small clusters, useful for balanced folds).
    """

    strategy: Literal["random", "size", "max_separation", "cluster", "element", "metal"] = "random"
    train: float = Field(default=0.8, gt=0, lt=1)
    val: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 0
    file: Path | None = None
    weight: float = Field(default=0.5, ge=0, le=1)
    min_cluster_size: int = Field(default=5, ge=2)
    min_samples: int | None = Field(default=None, ge=1)
    pca_components: int = Field(default=10, ge=2)
    noise: Literal["nearest", "singleton"] = "nearest"
    cluster_selection: Literal["eom", "leaf"] = "eom"
    held_out_clusters: list[int] | None = None
    n_folds: int | None = Field(default=None, ge=2)
    fold: int | None = Field(default=None, ge=0)
    element: str | None = None
    gap: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"split.train + split.val + split.test must be 1, got "
                f"{self.train} + {self.val} + {self.test} = {total:g}"
            )
        return self

    @model_validator(mode="after")
    def _strategy_parameters(self) -> SplitConfig:
        only_for = {"held_out_clusters": ("cluster",), "n_folds": ("cluster",), "fold": ("cluster",),
                    "element": ("element", "metal"), "gap": ("max_separation",)}
        for name, strategies in only_for.items():
            value = getattr(self, name)
            unset = value is None or (name == "gap" and value == 0.0)
            if not unset and self.strategy not in strategies:
                raise ValueError(f"split.{name} is set but split.strategy is {self.strategy!r}; "
                                 f"split.{name} applies only to strategy {' / '.join(strategies)}")
        if self.strategy == "element" and not self.element:
            raise ValueError("split.strategy 'element' needs split.element (e.g. 'Zn')")
        if (self.fold is None) != (self.n_folds is None):
            raise ValueError(f"split.fold ({self.fold}) and split.n_folds ({self.n_folds}) must be set together")
        if self.fold is not None and self.fold >= self.n_folds:
            raise ValueError(f"split.fold must be < split.n_folds, got fold={self.fold}, n_folds={self.n_folds}")
        if self.held_out_clusters is not None and self.n_folds is not None:
            raise ValueError("split.held_out_clusters and split.n_folds are alternatives; set one of them")
        return self
