"""A trainer's state between epochs, saved to a file so an interrupted training continues.

``Trainer.fit(..., state_file=PATH, state_key=KEY)`` writes the state after every epoch and,
when the file exists with the same ``key``, starts from it: model, optimiser, LR schedule,
EMA shadow weights, the shuffling generator and torch's global RNG, the epoch history, the best
weights so far and the early-stopping counters, and the training's segments (which ``fit`` call,
with the caller's note such as the code's commit, trained which epochs). On CPU the continued run equals one that was
never interrupted, bit for bit (tests/test_trainer_resume.py).

The file holds tensors and plain containers only: it is read with ``weights_only=True``.
``key`` names what the state belongs to (e.g. a hash of the trial config); a file with another
key is ignored, so a changed config starts over rather than continuing someone else's run.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT_VERSION = 1


def save_training_state(path: str | Path, state: dict) -> None:
    """Write ``state`` (tensors and plain containers) atomically: a reader sees the old or new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_training_state(path: str | Path, key: str) -> dict | None:
    """The state saved at ``path`` for ``key``; None when there is none, it is another key's or
    another format's, or the file cannot be read (a half-written file never replaces a whole one)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: start over rather than fail the trial
        return None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or state.get("key") != key:
        return None
    return state
