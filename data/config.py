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
    ``max_structures``: keep only the first N structures of the index (quick tests).
    """

    dataset: str = "bundled"
    max_structures: int | None = Field(default=None, ge=1)


class SplitConfig(StrictModel):
    """How parents (MOFs) are divided into train / val / test.

    Splits are made over ``parent_id``: all configurations of a MOF land on one side.
    ``file``: use an existing split file instead of making one (its dataset hash must match).
    """

    strategy: Literal["random"] = "random"
    train: float = Field(default=0.8, gt=0, lt=1)
    val: float = Field(default=0.1, ge=0, lt=1)
    test: float = Field(default=0.1, gt=0, lt=1)
    seed: int = 0
    file: Path | None = None

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"split.train + split.val + split.test must be 1, got "
                f"{self.train} + {self.val} + {self.test} = {total:g}"
            )
        return self
