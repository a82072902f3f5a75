"""Sweeps on more than one Ray node, and a node lost mid-trial (slow: each starts its own Ray cluster).

Nodes are started on this machine with ``ray.cluster_utils.Cluster`` (a head plus worker
nodes, each its own raylet); trials log to a test-owned MLflow server.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from farfield.orchestrator.mlflow_server import ManagedServer
from tests.test_sweep import tiny_sweep

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def cluster(isolated_home):
    import ray
    from ray.cluster_utils import Cluster

    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    if previous is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = previous


@pytest.fixture
def server(tmp_path):
    with ManagedServer.start(tmp_path / "ws") as server:
        yield server


def _trial_runs(uri: str, experiment_id: str, sweep_id: str) -> list:
    runs = MlflowClient(uri).search_runs([experiment_id], f"tags.sweep_id = '{sweep_id}'")
    return [r for r in runs if "tune_trial_id" in r.data.tags]


def test_trials_run_on_both_worker_nodes_and_all_log_to_the_server(cluster, server):
    import ray

    from farfield.orchestrator.sweep.run import run_sweep

    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    config = tiny_sweep(server.workspace, name="two-nodes", grid={"seed": [0, 1]})
    config.training.epochs = 3
    result = run_sweep(config, progress_every_s=600)

    runs = _trial_runs(result.tracking_uri, result.experiment_id, result.sweep_id)
    assert result.tracking_uri == server.uri
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    used = {r.data.tags["ray_node_id"] for r in runs}
    assert used == {node.node_id for node in nodes}, "the two concurrent trials did not use both nodes"


def test_trial_on_a_lost_node_is_retried_elsewhere_and_the_sweep_completes(cluster, server):
    import ray

    from farfield.orchestrator.sweep.run import run_sweep

    doomed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    config = tiny_sweep(server.workspace, name="lost-node", max_failures=2)
    config.training.epochs = 8
    outcome: dict = {}
    sweep = threading.Thread(target=lambda: outcome.update(result=run_sweep(config, progress_every_s=600)))
    sweep.start()

    client = MlflowClient(server.uri)
    deadline = time.time() + 300
    while True:  # wait until the trial has trained an epoch on the doomed node
        experiment = client.get_experiment_by_name("lost-node")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if any(r.data.tags.get("ray_node_id") == doomed.node_id and "curve/train_loss" in r.data.metrics
               for r in runs):
            break
        assert time.time() < deadline and sweep.is_alive(), "the trial never started on the worker node"
        time.sleep(0.5)
    cluster.remove_node(doomed, allow_graceful=False)
    rescue = cluster.add_node(num_cpus=1)
    sweep.join(timeout=600)
    assert not sweep.is_alive() and "result" in outcome, "the sweep did not complete after the node was lost"

    result = outcome["result"]
    runs = _trial_runs(result.tracking_uri, result.experiment_id, result.sweep_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    lost = [r for r in runs if r.info.status != "FINISHED"]
    assert len(finished) == 1 and finished[0].data.tags["ray_node_id"] == rescue.node_id
    assert lost and all(r.data.tags["ray_node_id"] == doomed.node_id for r in lost)
    assert all(r.info.status in ("FAILED", "KILLED") and r.data.tags.get("failure_reason") for r in lost)
    assert list(result.trials["outcome"]) == ["complete"]
