"""farfield.orchestrator: CLI, typed configs, Ray launching and MLflow tracking.

The only subpackage that imports Ray Tune and MLflow.
"""

from farfield.orchestrator.config import ConfigError, TrialConfig, load_trial_config

__all__ = ["ConfigError", "TrialConfig", "load_trial_config"]
