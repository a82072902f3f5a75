"""The CPU allocator setting (models/training/allocator.py): on where it can be, off on request."""

import subprocess
import sys

import pytest

_PROBE = (
    "import sys; from farfield.models.training.allocator import retain_freed_memory; "
    "print(retain_freed_memory(), retain_freed_memory())"
)


def _probe(env_value: str | None) -> str:
    import os

    env = dict(os.environ)
    env.pop("FARFIELD_MALLOC", None)
    if env_value is not None:
        env["FARFIELD_MALLOC"] = env_value
    return subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_retained_on_glibc_and_idempotent():
    assert _probe(None) == ["True", "True"]


def test_opt_out_leaves_the_allocator_alone():
    assert _probe("system") == ["False", "False"]


def test_a_cpu_trainer_sets_it_up(monkeypatch):
    from farfield.models import ModelConfig, TrainingConfig, build_potential
    from farfield.models.training import Trainer

    calls = []
    monkeypatch.setattr("farfield.models.training.trainer.retain_freed_memory", lambda: calls.append(1) or True)
    Trainer(build_potential(ModelConfig(channels=8, layers=1)), TrainingConfig(), device="cpu", progress=False)
    assert calls == [1]
