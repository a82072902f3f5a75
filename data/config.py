"""Typed configuration of the data and split stages (part of a trial config)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


#: w of the joint metric unless ``split.weight`` says otherwise.
DEFAULT_JOINT_WEIGHT = 0.5
#: KMeans clusters of ``split.strategy: kmeans`` unless ``split.n_clusters`` says otherwise (the paper's 20).
DEFAULT_KMEANS_CLUSTERS = 20
#: Every ``split.strategy`` (docs/splits.md): farfield's, then the paper's protocol. The strategy
#: classes of ``farfield.data.splitting`` are registered under exactly these names.
STRATEGY_NAMES = ("random", "size", "max_separation", "cluster", "element", "metal", "kmeans", "farthest_from_seed")


class StrictModel(BaseModel):
    """Base of every farfield config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Which dataset a trial trains on.

    ``dataset``: ``"bundled"`` (the real CoRE MOF + GFN1-xTB set shipped with farfield)
    or a path to a dataset store directory (``farfield data import`` makes one).
    ``max_structures``: keep only the first N structures of the index (quick runs); the split
    is then made over their parents only, so every side keeps its fraction.
    ``min_element_parents``: the paper's rare-element rule — drop every structure that contains
    an element present in fewer than N parents (after ``max_structures``; repeated until every
    remaining element is in ≥ N parents), before splitting; the split file's statistics record
    what was dropped (``rare_elements``). None = keep everything.
    """

    dataset: str = "bundled"
    max_structures: int | None = Field(default=None, ge=1)
    min_element_parents: int | None = Field(default=None, ge=1)


class SplitConfig(StrictModel):
    """How parents (MOFs) are divided into train / val / test.

    Splits are made over ``parent_id``: all configurations of a MOF land on one side.
    ``file``: use an existing split file instead of making one (its dataset hash must match).
    ``strategy`` (docs/splits.md): ``random``; ``size`` (largest parents in test, or every
    parent above ``max_train_atoms`` atoms); ``max_separation`` (the region farthest from
    train, optional exclusion ``gap``); ``cluster`` (whole HDBSCAN clusters in test:
    ``held_out_clusters``, or fold ``fold`` of ``n_folds``, else clusters closest to the test
    fraction); ``element`` / ``metal`` (every parent containing ``element`` in test; ``metal``
    picks one if ``element`` is unset). The paper's protocol: ``kmeans`` (KMeans with
    ``n_clusters``, default 20, a seeded random half of the clusters in test) and
    ``farthest_from_seed`` (the half of the parents least similar to one seeded random parent).
    Validation is ``val / (train + val)`` of the parents left after test and exclusions.
    ``metric``: ``joint`` (farfield's geometry–composition metric, weight ``weight``: 1 =
    geometry only) or ``soap_cosine`` (the paper's: 1 − cosine of mean SOAP vectors).
    ``min_cluster_size``/``min_samples``/``pca_components``/``noise``/``cluster_selection``: HDBSCAN
    clustering (``leaf`` gives many small clusters, useful for balanced folds).
    """

    strategy: Literal[STRATEGY_NAMES] = "random"
    metric: Literal["joint", "soap_cosine"] = "joint"
    train: float = Field(default=0.8, gt=0, lt=1)
    val: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 0
    file: Path | None = None
    weight: float = Field(default=DEFAULT_JOINT_WEIGHT, ge=0, le=1)
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
    n_clusters: int | None = Field(default=None, ge=2)
    max_train_atoms: int | None = Field(default=None, ge=1)

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
                    "element": ("element", "metal"), "gap": ("max_separation",), "n_clusters": ("kmeans",),
                    "max_train_atoms": ("size",)}
        for name, strategies in only_for.items():
            value = getattr(self, name)
            unset = value is None or (name == "gap" and value == 0.0)
            if not unset and self.strategy not in strategies:
                raise ValueError(f"split.{name} is set but split.strategy is {self.strategy!r}; "
                                 f"split.{name} applies only to strategy {' / '.join(strategies)}")
        if self.metric != "joint" and self.weight != DEFAULT_JOINT_WEIGHT:
            raise ValueError(f"split.weight is {self.weight} but split.metric is {self.metric!r}; "
                             f"split.weight applies only to metric 'joint'")
        if self.strategy == "element" and not self.element:
            raise ValueError("split.strategy 'element' needs split.element (e.g. 'Zn')")
        if (self.fold is None) != (self.n_folds is None):
            raise ValueError(f"split.fold ({self.fold}) and split.n_folds ({self.n_folds}) must be set together")
        if self.fold is not None and self.fold >= self.n_folds:
            raise ValueError(f"split.fold must be < split.n_folds, got fold={self.fold}, n_folds={self.n_folds}")
        if self.held_out_clusters is not None and self.n_folds is not None:
            raise ValueError("split.held_out_clusters and split.n_folds are alternatives; set one of them")
        return self
