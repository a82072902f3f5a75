"""farfield.orchestrator: CLI, typed configs, Ray launching and MLflow tracking.

The only subpackage that imports Ray Tune and MLflow.
"""

from farfield.orchestrator.config import ConfigError, TrialConfig, load_trial_config

__all__ = ["ConfigError", "TrialConfig", "load_trial_config", "submit_sweep", "submit_trial"]


def __getattr__(name: str):
    """``submit_trial``/``submit_sweep`` are imported on first use (they pull in Ray's Jobs client)."""
    if name in ("submit_trial", "submit_sweep"):
        from farfield.orchestrator import submit

        return getattr(submit, name)
    raise AttributeError(f"module 'farfield.orchestrator' has no attribute {name!r}")
