"""Both cluster launcher configs pass Ray's own autoscaler schema validation, and say what the docs promise."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"aws": REPO / "cluster.yaml", "onprem": REPO / "configs" / "cluster-onprem.yaml"}


def _prepared(path: Path) -> dict:
    """What `ray up` checks: defaults of the provider merged in, then the JSON schema."""
    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    return config


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_passes_ray_schema_validation(name):
    config = _prepared(CONFIGS[name])
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_validation_can_fail(name):
    """The check is real: a misspelled top-level key is rejected by the same call."""
    raw = yaml.safe_load(CONFIGS[name].read_text())
    broken = copy.deepcopy(raw)
    broken["max_wokers"] = 2
    with pytest.raises(jsonschema.ValidationError, match="max_wokers"):
        validate_config(prepare_config(broken))


def test_aws_cluster_has_cpu_head_and_gpu_workers():
    config = _prepared(CONFIGS["aws"])
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_workers = [t for name, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_workers and all(t["max_workers"] >= 1 for t in gpu_workers)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_dashboard_local_mlflow_started_and_install_as_readme(name):
    config = _prepared(CONFIGS[name])
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "farfield mlflow-server" in head and "0.0.0.0" not in head
    setup = " ".join(config["setup_commands"])
    assert "make venv" in setup and "/mnt/farfield" in setup
    readme = (REPO / "README.md").read_text()
    assert "make quickstart" in readme  # `make venv` is the install step of the README's quickstart


def test_onprem_has_fixed_addresses():
    config = _prepared(CONFIGS["onprem"])
    provider = config["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and len(provider["worker_ips"]) >= 1
