"""The split file (JSON): which parents are on which side, how they were chosen, statistics.

A split never separates the configurations of one parent: it assigns ``parent_id``s.
The file records strategy, parameters, seed, dataset hash, the parent ids of each side,
the parents left out (``excluded``: e.g. inside a max-separation gap) and statistics.
Identical inputs give a byte-identical file; its sha256 is the split hash logged with
every trial.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["SIDES", "Split", "split_path"]

SIDES = ("train", "val", "test")
#: Folder of a workspace where split files are saved by default.
SPLITS_DIR = "splits"


def split_path(workspace: str | Path, split: Split) -> Path:
    """Where a split is saved in ``workspace`` by default: ``<workspace>/splits/<strategy>-<hash
    prefix>.json`` (the trial, the sweep and ``farfield split make`` all use it)."""
    return Path(workspace) / SPLITS_DIR / f"{split.strategy}-{split.content_hash[7:19]}.json"


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
    excluded: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @property
    def content_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_json().encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON to ``path`` atomically (a temporary name unique to this
        process and thread, then a rename), so trials saving the same split at once never
        see a partial file or lose each other's temporary file."""
        import os
        import threading

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
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
        """``{parent_id: "train" | "val" | "test"}`` (excluded parents are absent)."""
        return {pid: side for side in SIDES for pid in getattr(self, side)}
