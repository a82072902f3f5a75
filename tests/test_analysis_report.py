"""The report on real trial outputs: four tiny trials of a tagged 'sweep' (tests/analysis_runs.py).

Checks that loading gives one row per trial and per test structure (matching the logged
predictions), that every table has the rows the trial design implies, that distances
agree with the split file's own statistics, that the baseline matches an independent
least-squares fit, that a potential whose charges are made to collapse is flagged, that
the report is written and logged to the sweep's summary run, that claims.json and the
headline figure (with the long-range yardstick, checked against farfield's electrostatics)
come from these runs, the page's layout, and the CLI.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from farfield.analysis.render import LARGE_TABLE_ROWS
from tests.analysis_runs import EXPERIMENT, MAX_STRUCTURES, SWEEP_ID, TRIALS, real_report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return real_report(tmp_path_factory)


def _label(spec: dict) -> str:
    return "painn" if not spec["long_range"] else "painn+" + ",".join(spec["long_range"])


def test_one_row_per_trial_and_per_test_structure(real, tmp_path):
    d = real.report.diagnostics
    assert sorted(d.trials["run_id"]) == sorted(r.run_id for r in real.results)
    client = MlflowClient(real.tracking_uri)
    for result in real.results:
        logged = pd.read_parquet(client.download_artifacts(result.run_id, "predictions/test_predictions.parquet",
                                                           str(tmp_path)))
        mine = d.structures[d.structures["run_id"] == result.run_id].set_index("structure_id")
        assert sorted(mine.index) == sorted(logged["structure_id"])
        np.testing.assert_allclose(mine.loc[logged["structure_id"], "e_error_per_atom_mev"],
                                   logged["e_error_per_atom_mev"])
        np.testing.assert_allclose(mine.loc[logged["structure_id"], "f_mae_mev"], logged["f_mae_mev"])
        row = d.trials.set_index("run_id").loc[result.run_id]
        assert row["test/f_mae"] == pytest.approx(result.metrics["test/f_mae"])
    required = ["parent_id", "n_atoms", "elements", "metals", "cluster", "nearest_train_distance",
                "baseline_e_error_per_atom_mev", "baseline_f_mae_mev"]
    assert d.structures[required].notna().all().all()


def test_tables_have_the_rows_the_design_implies(real):
    d = real.report.diagnostics
    configs = {(_label(s), s["layers"], s["split"]) for s in TRIALS}
    assert set(zip(d.summary["model"], d.summary["layers"], d.summary["split"])) == configs
    # only painn (1 layer) has both a random and a biased split
    assert list(zip(d.gap["model"], d.gap["layers"], d.gap["split"])) == [("painn", 1, "size")]
    # les is paired with painn on the same cluster split, once per metric
    assert set(zip(d.pair_summary["model"], d.pair_summary["reference_model"], d.pair_summary["split"])) == {
        ("painn+les", "painn", "size")}
    assert set(d.pair_summary["metric"]) == {"f_mae_mev", "e_abs_error_mev"}
    les_tests = d.structures[d.structures["model"] == "painn+les"]["structure_id"]
    assert d.pair_summary["n"].max() == les_tests.nunique()
    # depth: short-range random trials at 1 and 2 layers
    assert sorted(d.depth.loc[d.depth["split"] == "random", "layers"]) == [1, 2]
    # one distance-slope row per model and metric
    assert len(d.distance_slopes) == 2 * d.trials["model"].nunique()
    for kind, table in d.buckets.items():
        assert len(table), kind
        assert set(zip(table["model"], table["split"])) == set(zip(d.structures["model"], d.structures["split"]))
    clusters = d.buckets["cluster"]
    for (model, split), group in d.structures.groupby(["model", "split"]):
        shown = clusters[(clusters["model"] == model) & (clusters["split"] == split)]
        assert set(shown["bucket"]) == {str(c) for c in group["cluster"].unique()}
    # charges only for the les trial (latent charges of every test atom)
    les_run = real.results[3].run_id
    assert set(d.charge_summary["run_id"]) == {les_run}
    atoms = d.structures.loc[d.structures["run_id"] == les_run, "n_atoms"].sum()
    assert len(d.charges) == atoms


def test_distances_match_the_split_file_statistics(real, tmp_path):
    client = MlflowClient(real.tracking_uri)
    biased_run = real.results[2].run_id
    split = json.loads(Path(client.download_artifacts(biased_run, "split/split.json", str(tmp_path))).read_text())
    recorded = split["statistics"]["nearest_train_distance"]["test"]
    d = real.report.diagnostics.structures
    per_parent = d[d["run_id"] == biased_run].drop_duplicates("parent_id")["nearest_train_distance"]
    assert sorted(d.loc[d["run_id"] == biased_run, "parent_id"].unique()) == sorted(split["test"])
    assert per_parent.min() == pytest.approx(recorded["q0"], rel=1e-5)
    assert per_parent.median() == pytest.approx(recorded["q50"], rel=1e-5)
    assert per_parent.max() == pytest.approx(recorded["q100"], rel=1e-5)


def test_baseline_matches_an_independent_least_squares_fit(real, tmp_path):
    from farfield.data.datasets import bundled_store

    index = bundled_store(real.workspace).index.iloc[:MAX_STRUCTURES]  # the trials saw this prefix only
    run = real.results[0].run_id
    client = MlflowClient(real.tracking_uri)
    split = json.loads(Path(client.download_artifacts(run, "split/split.json", str(tmp_path))).read_text())
    counts = pd.DataFrame([json.loads(c) for c in index["element_counts"]]).fillna(0.0).to_numpy()
    n_atoms = index["n_atoms"].to_numpy(dtype=float)
    energy = index["energy_per_atom"].to_numpy() * n_atoms
    train = index["parent_id"].isin(split["train"]).to_numpy()
    solution, *_ = np.linalg.lstsq(counts[train] / n_atoms[train, None], energy[train] / n_atoms[train], rcond=None)
    test = index["parent_id"].isin(split["test"]).to_numpy()
    expected = 1e3 * (counts[test] @ solution - energy[test]) / n_atoms[test]
    structures = real.report.diagnostics.structures
    mine = structures[structures["run_id"] == run].set_index("structure_id")
    got = mine.loc[index.loc[test, "structure_id"], "baseline_e_error_per_atom_mev"]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=0.1)  # meV/atom; the fit has a tiny ridge


def test_collapsed_charges_of_a_real_potential_are_flagged(real):
    from farfield.analysis.charges import charge_summary
    from farfield.analysis.loading import charge_rows
    from farfield.models.heads.report import head_report
    from farfield.models.training import build_graphs, load_checkpoint

    def predict_charges(potential, frames):  # the checkpoint evaluated again, as the trial did before logging
        return charge_rows(head_report(potential, build_graphs(frames, potential.cutoff, torch.float32)).charges)

    client = MlflowClient(real.tracking_uri)
    les_run = real.results[3].run_id
    checkpoint = client.download_artifacts(les_run, "checkpoint/model.pt", str(real.workspace / "ckpt"))
    potential, _ = load_checkpoint(checkpoint)
    potential = potential.to(torch.float32)
    from farfield.data.datasets import bundled_store

    tests = real.report.diagnostics.structures
    ids = tests.loc[tests["run_id"] == les_run, "structure_id"].tolist()
    frames = bundled_store(real.workspace).read(ids)
    trained = predict_charges(potential, frames)
    with torch.no_grad():  # a latent-charge head that outputs zero on every atom: collapsed by construction
        last = [m for m in potential.heads["les"].latent_charges.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.fill_(0.001)
    collapsed = predict_charges(potential, frames)
    keys = {"run_id": les_run, "model": "painn+les", "split": "size", "seed": 0, "layers": 1}
    table = pd.concat([trained.assign(**keys), collapsed.assign(**{**keys, "run_id": "zeroed"})])
    summary = charge_summary(table).set_index("run_id")
    assert bool(summary.loc["zeroed", "collapsed"])
    assert summary.loc["zeroed", "pred_std"] < 1e-6
    assert summary.loc[les_run, "ref_std"] > 0.1
    # the trained head's verdict in the report (from the charges the trial logged) is the same as recomputed here
    reported = real.report.diagnostics.charge_summary.set_index("run_id")
    assert bool(reported.loc[les_run, "collapsed"]) == bool(summary.loc[les_run, "collapsed"])
    assert reported.loc[les_run, "pred_std"] == pytest.approx(summary.loc[les_run, "pred_std"], rel=1e-5)


def test_report_files_findings_and_mlflow_artifacts(real):
    paths = real.paths
    html = paths["html"].read_text()
    assert html.count("<img") == sum(1 for image in real.report.figures.values() if image is not None) >= 6
    assert "src='data:image/png;base64," in html and "http" not in html.split("<body>")[1].split("source:")[0]
    for name, table in real.report.diagnostics.tables().items():
        assert len(table) <= LARGE_TABLE_ROWS  # this tiny sweep's tables are all written as CSV and JSON
        assert len(pd.read_csv(paths["tables"] / f"{name}.csv")) == len(table), name
        assert len(json.loads((paths["tables"] / f"{name}.json").read_text())) == len(table), name
    findings = json.loads(paths["findings"].read_text())
    assert findings and all(f["text"] and f["test"] for f in findings)
    kinds = {f["kind"] for f in findings}
    assert {"best_model", "long_range_helps", "split_gap", "distance_slope", "charge_collapse"} <= kinds
    assert all(f["significant"] == (f["p_value"] < 0.05) for f in findings if f["p_value"] is not None)
    assert "## Findings" in paths["markdown"].read_text()
    probe = real.report.diagnostics.md_probe
    assert set(probe["model"]) == {"painn", "painn+les"} and (probe["steps_done"] <= 8).all()
    assert "md_stability" in kinds and "md_probe_summary" in real.report.diagnostics.tables()
    assert real.logged_run_id == real.summary_run_id
    listed = {a.path for a in MlflowClient(real.tracking_uri).list_artifacts(real.summary_run_id, "report")}
    assert {"report/index.html", "report/report.md", "report/findings.json", "report/claims.json"} <= listed


def test_large_tables_are_written_as_gzip_csv_only_with_the_same_rows(real, tmp_path):
    """A table over the row limit (a study's per-structure table) is NAME.csv.gz alone, equal to the
    table as CSV; rewriting gives the same bytes, and an earlier report's CSV/JSON of it goes."""
    from farfield.analysis.report import write_report

    tables = real.report.tables()
    limit = len(tables["trials"])  # the per-structure table is larger, the trials table is not
    assert len(tables["structures"]) > limit
    out = tmp_path / "report"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "structures.json").write_text("[]")  # left by a report of fewer trials
    write_report(real.report, out, large_rows=limit)
    folder = out / "tables"
    for name, table in tables.items():
        if len(table) > limit:
            assert not (folder / f"{name}.csv").exists() and not (folder / f"{name}.json").exists(), name
            written = pd.read_csv(folder / f"{name}.csv.gz")
            expected = pd.read_csv(io.StringIO(table.to_csv(index=False)))
            pd.testing.assert_frame_equal(written, expected)
            assert f"- `tables/{name}.csv.gz`\n" in (out / "report.md").read_text()
        else:
            assert (folder / f"{name}.csv").is_file() and (folder / f"{name}.json").is_file(), name
    first = (folder / "structures.csv.gz").read_bytes()
    write_report(real.report, out, large_rows=limit)
    assert (folder / "structures.csv.gz").read_bytes() == first


def test_claims_json_rests_on_the_sweeps_runs(real):
    claims = json.loads(real.paths["claims"].read_text())
    assert [c["claim"] for c in claims["claims"]] == [1, 2, 3, 4, 5]
    run_ids = {r.run_id for r in real.results}
    for claim in claims["claims"]:
        assert claim["verdict"] in ("supported", "contradicted", "inconclusive") and claim["statement"]
        assert set(claim["run_ids"]) <= run_ids
    by_number = {c["claim"]: c for c in claims["claims"]}
    # one seed per cell: nothing can be decided, and claims 3 and 5 lack their designs altogether
    assert all(c["verdict"] == "inconclusive" for c in claims["claims"])
    assert by_number[3]["reason"].startswith("not testable") and by_number[5]["reason"].startswith("not testable")
    les_run = real.results[3].run_id
    assert by_number[4]["run_ids"] == [les_run] and by_number[4]["effect"] > 0
    assert set(by_number[1]["run_ids"]) == {les_run, real.results[2].run_id}  # painn+les and its twin, size split
    assert claims["precondition"]["fraction_of_baseline"] > 0


def test_headline_figure_and_yardstick_from_the_real_sweep(real):
    from farfield.analysis.yardstick import beyond_cutoff
    from farfield.data.datasets import bundled_store

    report = real.report
    image = report.figures["headline"]
    assert image is not None and image[:8] == b"\x89PNG\r\n\x1a\n" and (real.paths["figures"] / "headline.png").is_file()
    headline, summary = report.headline, report.diagnostics.summary
    assert sorted(zip(headline["model"], headline["layers"], headline["split"])) == \
        sorted(zip(summary["model"], summary["layers"], summary["split"]))
    assert list(headline["split"]).index("size") > list(headline["split"]).index("random")  # random first
    yardsticks = report.yardsticks
    assert set(yardsticks["split"]) == {"random", "size"} and (yardsticks["cutoff"] == 4.0).all()
    assert (yardsticks["n_with_charges"] == yardsticks["n_structures"]).all()
    # tens of meV/Å from beyond a 4 Å cutoff, far below the zero-force baseline
    assert ((yardsticks["yardstick_f_mae"] > 5) & (yardsticks["yardstick_f_mae"] < 500)).all()
    assert (headline["yardstick_f_mae"] < headline["baseline_f_mae_mean"]).all()
    # the cached per-structure values are farfield's electrostatics on the stored frames
    cached = pd.concat(pd.read_parquet(p) for p in (real.workspace / "cache" / "yardstick").glob("*.parquet"))
    random_run = real.results[0].run_id
    ids = report.diagnostics.structures.loc[report.diagnostics.structures["run_id"] == random_run, "structure_id"]
    assert set(ids) <= set(cached["structure_id"])
    for atoms in bundled_store(real.workspace).read(list(ids[:2])):
        energy, forces = beyond_cutoff(atoms, 4.0)
        row = cached.set_index("structure_id").loc[atoms.info["structure_id"]]
        assert row["e_beyond_per_atom_mev"] == pytest.approx(1e3 * energy / len(atoms))
        assert row["f_beyond_mae_mev"] == pytest.approx(1e3 * np.abs(forces).mean())


def test_page_puts_verdicts_headline_figures_tables_then_grouped_findings(real):
    page = real.paths["html"].read_text()
    marks = ["id='verdicts'", "<h2>Headline", "<h2>Figures", "<h2>Tables", "<h2>Details"]
    positions = [page.index(mark) for mark in marks]
    assert positions == sorted(positions)
    assert page.count("<table") == page.count("<div class='scroll'><table")  # every table scrolls sideways
    details = page.split("<h2>Details")[1]
    assert details.count("<li") == len(real.report.findings) and "<li" not in page.split("<h2>Details")[0]
    kinds = {f.kind for f in real.report.findings}
    assert details.count("<details>") == len(kinds)
    markdown = real.paths["markdown"].read_text()
    order = [markdown.index(m) for m in ("## Verdicts", "![headline]", "## Figures", "## Findings")]
    assert order == sorted(order)


def test_cli_report_writes_a_report_for_a_sweep_by_name(real, tmp_path):
    from farfield.orchestrator.cli import app

    out = tmp_path / "cli-report"
    result = CliRunner().invoke(app, ["report", "--experiment", EXPERIMENT, "--workspace", str(real.workspace),
                                      "--out", str(out), "--sweep", "analysis-test", "--no-charges", "--no-log"])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file() and (out / "tables" / "summary.csv").is_file()
    assert len(json.loads((out / "claims.json").read_text())["claims"]) == 5
    assert len(pd.read_csv(out / "tables" / "trials.csv")) == len(TRIALS)
    assert SWEEP_ID in (out / "report.md").read_text()
    progress = [line for line in result.stderr.splitlines() if line.startswith("report: ")]
    assert [line.split(": ")[1] for line in progress[:len(TRIALS)]] == [
        f"reading trial {k}/{len(TRIALS)}" for k in range(1, len(TRIALS) + 1)]
    assert progress[-1] == f"report: writing {out}" and "report: figures" in progress
    assert not any(line.startswith("report: ") for line in result.stdout.splitlines())  # results only


def test_artifacts_are_read_in_place_and_cached_with_the_tables_of_a_download(real, tmp_path, monkeypatch):
    """Reading the runs' artifact folders in place (the workspace's own store) and the report
    cache (charges per run, clusters per split) give the tables that downloading gives."""
    import mlflow.tracking

    from farfield.analysis import loading, placement, run_layout

    def load(workspace, folder):
        return loading.load_experiment(real.tracking_uri, EXPERIMENT, tmp_path / folder, SWEEP_ID,
                                       workspace=workspace)

    with monkeypatch.context() as patch:  # the reference: every artifact downloaded, nothing cached
        patch.setattr(run_layout, "local_artifact_dir", lambda uri, workspaces: None)
        downloaded = load(None, "download")
    assert any((tmp_path / "download").rglob("*.parquet"))

    workspace = tmp_path / "ws"

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded an artifact that lies on this machine")

    monkeypatch.setattr(mlflow.tracking.MlflowClient, "download_artifacts", no_download)
    placement._CLUSTERS.clear()
    in_place = load(workspace, "in-place")
    charge_files = list((workspace / loading.REPORT_CACHE).glob("charges-*.parquet"))
    les_runs = {r.run_id for r, spec in zip(real.results, TRIALS) if spec["long_range"]}
    assert {f.name.split("-")[1] for f in charge_files} == les_runs
    assert not any((tmp_path / "in-place").rglob("*.parquet"))  # nothing copied

    placement._CLUSTERS.clear()
    monkeypatch.setattr(loading, "logged_charges", lambda *a: pytest.fail("charges read again"))
    monkeypatch.setattr(placement, "_cluster", lambda *a: pytest.fail("clustered again"))
    cached = load(workspace, "cached")
    for table in ("trials", "structures", "charges"):
        reference = getattr(downloaded, table).reset_index(drop=True)
        for other in (in_place, cached):
            pd.testing.assert_frame_equal(getattr(other, table).reset_index(drop=True), reference,
                                          check_dtype=False)
    assert len(cached.charges) and len(cached.structures)


def test_cli_report_errors_name_the_problem(real, tmp_path):
    from farfield.orchestrator.cli import app

    result = CliRunner().invoke(app, ["report", "--experiment", "nope", "--workspace", str(real.workspace),
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "experiment 'nope' not found" in result.output
    result = CliRunner().invoke(app, ["report", "--experiment", EXPERIMENT, "--workspace", str(real.workspace),
                                      "--out", str(tmp_path / "r"), "--sweep", "no-such-sweep"])
    assert result.exit_code == 1 and "no sweep with id or name 'no-such-sweep'" in result.output


def test_latest_sweep_resolves_to_the_summary_runs_sweep(real):
    from farfield.analysis.mlflow_queries import resolve_sweep_id

    assert resolve_sweep_id(real.tracking_uri, EXPERIMENT, "latest") == SWEEP_ID
    assert resolve_sweep_id(real.tracking_uri, EXPERIMENT, SWEEP_ID) == SWEEP_ID


def test_energy_offsets_have_one_row_per_trial_and_read_the_yardstick(real):
    table = real.report.diagnostics.energy_offsets
    assert sorted(table["run_id"]) == sorted(r.run_id for r in real.results)
    assert (table["offset_mae"] <= table["e_mae"] + 1e-9).all()  # |mean| <= mean |.| per parent
    for result in real.results:  # the table's MAE is the trial's own test energy MAE
        row = table.set_index("run_id").loc[result.run_id]
        assert row["e_mae"] == pytest.approx(result.metrics["test/e_mae"], rel=1e-6)
    assert table["offset_beyond_r"].between(-1, 1).all()  # every test structure has reference charges
    assert (real.out / "tables" / "energy_offsets.csv").is_file()
