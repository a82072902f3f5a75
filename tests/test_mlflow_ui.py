"""The MLflow UI in headless Chromium (the report tests' browser helper): the runs table.

farfield's experiments open on the runs table of MLflow 3's model-training layout, with
every trial named for what it is (``painn+les · size · seed 0``) and the sweep's summary
run recognisable. The runs are those of the quickstart sweep's eight grid cells, logged
as farfield logs them; ``FARFIELD_UI_WORKSPACE=workspace`` shows a real workspace's
latest quickstart sweep instead, and ``FARFIELD_FIGURES=docs/figures`` keeps the
screenshot there (``mlflow-runs-table.png``).
"""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

import matplotlib.image
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from farfield.orchestrator.config import TrackingConfig, TrialConfig
from farfield.orchestrator.mlflow_server import ManagedServer, ui_url
from farfield.orchestrator.quickstart import quickstart_sweep_config
from farfield.orchestrator.sweep.config import grid_cells, trial_data
from farfield.orchestrator.sweep.summary import summary_run_name
from farfield.orchestrator.tracking import ensure_experiment, now_ms, tracking_uri, trial_title
from tests.test_report_browser import _run

pytestmark = pytest.mark.integration

EXPERIMENT = "quickstart-sweep"
FIGURE = "mlflow-runs-table.png"


def _log_quickstart_like_runs(workspace: Path) -> None:
    """One finished run per quickstart grid cell, named and with key metrics as farfield logs them."""
    sweep = quickstart_sweep_config(workspace)
    tracking = TrackingConfig(experiment=EXPERIMENT)
    experiment_id = ensure_experiment(tracking, workspace)
    client = MlflowClient(tracking_uri(tracking, workspace))
    for k, cell in enumerate(grid_cells(sweep)):
        config = TrialConfig.model_validate(trial_data(sweep, cell, {}))
        run_id = client.create_run(experiment_id, run_name=trial_title(config), tags={"sweep_id": "qs-1"}).info.run_id
        values = {"key/test_f_mae": 180.0 - 9 * k, "key/test_e_mae": 40.0 - k, "key/f_skill": 0.3 + 0.02 * k,
                  "key/e_skill": 0.5 + 0.01 * k}
        client.log_batch(run_id, metrics=[mlflow.entities.Metric(name, v, now_ms(), 0) for name, v in values.items()])
        client.set_terminated(run_id)
    summary = client.create_run(experiment_id, run_name=summary_run_name("quickstart-sweep-20260101-120000"),
                                tags={"sweep_id": "qs-1", "sweep_summary": "true"})
    client.set_terminated(summary.info.run_id)


@pytest.fixture(scope="module")
def runs_page(tmp_path_factory):
    """``(url of the runs table, names of its runs)`` on a running MLflow server."""
    given = os.environ.get("FARFIELD_UI_WORKSPACE")
    workspace = Path(given) if given else tmp_path_factory.mktemp("ui") / "workspace"
    if not given:
        _log_quickstart_like_runs(workspace)
    tracking = TrackingConfig(experiment=EXPERIMENT)
    client = MlflowClient(tracking_uri(tracking, workspace))
    experiment_id = ensure_experiment(tracking, workspace)
    runs = client.search_runs([experiment_id], max_results=50, order_by=["start_time DESC"])
    if given:  # the latest sweep only
        runs = [r for r in runs if r.data.tags.get("sweep_id") == runs[0].data.tags.get("sweep_id")]
    names = [r.info.run_name for r in runs]
    with ManagedServer.start(workspace, record=False, log_file=workspace / "mlflow-ui-test.log") as server:
        yield ui_url(server.uri, experiment_id), names


def test_the_ui_opens_on_the_runs_table_with_every_trial_named(runs_page, tmp_path):
    url, names = runs_page
    assert any(name.startswith("Σ sweep summary · ") for name in names), names
    assert any(re.fullmatch(r"painn\+les · size · seed 0", name) for name in names), names
    result = _run(["--window-size=1600,1000", "--virtual-time-budget=30000", "--dump-dom", url], tmp_path / "dom")
    page = html.unescape(result.stdout)
    missing = [name for name in names if name not in page]
    assert not missing, f"run names not in the rendered runs table: {missing}"
    assert "Token Usage" not in page and "Detect Issues" not in page, "the UI opened its GenAI overview"


def test_runs_table_screenshot(runs_page, tmp_path):
    url, names = runs_page
    target = tmp_path / FIGURE
    _run(["--window-size=1600,900", "--hide-scrollbars", "--virtual-time-budget=30000", f"--screenshot={target}",
          url], tmp_path / "shot")
    assert target.is_file(), "Chromium wrote no screenshot"
    pixels = matplotlib.image.imread(target)[..., :3]
    assert pixels.shape[:2] == (900, 1600)
    ink = (pixels.mean(axis=2) < 0.9).mean()
    assert 0.01 < ink < 0.9, f"screenshot looks blank or black (ink fraction {ink:.3f})"
    figures = os.environ.get("FARFIELD_FIGURES")
    if figures:
        shutil.copy(target, Path(figures) / FIGURE)
