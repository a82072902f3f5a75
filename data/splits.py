"""Train/val/test splits over parent MOFs, and the split file (JSON).

A split never separates the configurations of one parent: it assigns ``parent_id``s.
The split file records strategy, parameters, seed, dataset hash, the parent ids of
each side and statistics (sizes, element coverage). Identical inputs give a
byte-identical file; its sha256 is the split hash logged with every trial.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SIDES = ("train", "val", "test")


@dataclass
class Split:
    """Parent ids per side plus how they were chosen."""

    strategy: str
    parameters: dict
    seed: int
    dataset_hash: str
    train: list[str]
    val: list[str]
    test: list[str]
    statistics: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @property
    def content_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_json().encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Split:
        path = Path(path)
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except FileNotFoundError:
            raise FileNotFoundError(f"split file not found: {path}") from None
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path}: not a farfield split file ({err})") from err

    def side_of(self) -> dict[str, str]:
        """``{parent_id: "train" | "val" | "test"}``."""
        return {pid: side for side in SIDES for pid in getattr(self, side)}


def _side_counts(n_parents: int, fractions: dict[str, float]) -> dict[str, int]:
    n_test = max(1, int(round(fractions["test"] * n_parents)))
    n_val = int(round(fractions["val"] * n_parents))
    if fractions["val"] > 0:
        n_val = max(1, n_val)
    n_train = n_parents - n_test - n_val
    if n_train < 1:
        raise ValueError(
            f"cannot split {n_parents} parents into val={n_val}, test={n_test} and leave any for training; "
            f"use a larger dataset or smaller split.val/split.test"
        )
    return {"train": n_train, "val": n_val, "test": n_test}


def random_split(index: pd.DataFrame, dataset_hash: str, fractions: dict[str, float], seed: int) -> Split:
    """Shuffle parents with a seeded generator and cut them by ``fractions`` (train/val/test)."""
    parents = sorted(index["parent_id"].unique())
    counts = _side_counts(len(parents), fractions)
    order = np.random.default_rng(seed).permutation(len(parents))
    shuffled = [parents[k] for k in order]
    train = sorted(shuffled[: counts["train"]])
    val = sorted(shuffled[counts["train"] : counts["train"] + counts["val"]])
    test = sorted(shuffled[counts["train"] + counts["val"] :])
    split = Split("random", {"fractions": dict(fractions)}, seed, dataset_hash, train, val, test)
    split.statistics = split_statistics(index, split)
    return split


def split_statistics(index: pd.DataFrame, split: Split) -> dict:
    """Sizes and element coverage of each side; ``test_elements_missing_from_train`` flags gaps."""
    sides = split.side_of()
    stats: dict = {}
    elements: dict[str, set[str]] = {}
    for side in SIDES:
        rows = index[index["parent_id"].map(sides) == side]
        elements[side] = {el for entry in rows["elements"] for el in str(entry).split()}
        stats[side] = {
            "n_parents": int(rows["parent_id"].nunique()),
            "n_structures": int(len(rows)),
            "n_atoms_total": int(rows["n_atoms"].sum()),
            "n_atoms_min": int(rows["n_atoms"].min()) if len(rows) else 0,
            "n_atoms_max": int(rows["n_atoms"].max()) if len(rows) else 0,
            "elements": sorted(elements[side]),
        }
    stats["test_elements_missing_from_train"] = sorted(elements["test"] - elements["train"])
    return stats
