"""The report: diagnostics + findings + figures of an experiment, written to a folder.

``make_report`` is the Python API behind ``farfield report``: load the experiment from
MLflow, compute every diagnostic, derive the findings, optionally run the MD stability
probe, and write

    OUT/index.html        self-contained page (figures inlined): verdicts, headline, figures,
                          tables, then every finding (grouped by kind, collapsed)
    OUT/report.md         Markdown summary linking figures/ and tables/, verdicts first
    OUT/claims.json       the verdicts on the paper's five claims (``claims``)
    OUT/findings.json     the findings with their numbers, tests and p-values
    OUT/figures/*.png     the figures
    OUT/tables/*.csv|json every table (tidy; JSON as records); one of more than
                          ``render.LARGE_TABLE_ROWS`` rows as ``NAME.csv.gz`` only

and, with ``log_to_mlflow``, log the folder as ``report/`` artifacts of the sweep's
summary run (see ``mlflow_queries.report_target_run``).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from farfield.analysis import mlflow_queries, plots
from farfield.analysis.claims import evaluate_claims
from farfield.analysis.diagnostics import Diagnostics, compute_diagnostics
from farfield.analysis.findings import Finding, derive_findings
from farfield.analysis.loading import AnalysisData, load_experiment
from farfield.analysis.render import LARGE_TABLE_ROWS, render_html, render_markdown, table_files
from farfield.analysis.summary import headline_table
from farfield.analysis.verdicts import ClaimSet, claims_table
from farfield.analysis.energy_offsets import energy_offset_table
from farfield.analysis.yardstick import with_beyond_energies, yardstick_tables

__all__ = ["Report", "ReportOptions", "build_report", "make_report", "write_report"]

#: A progress callback: one line per step of the report (``typer.echo`` in the CLI).
Progress = Callable[[str], None]


def _quiet(line: str) -> None:
    """The default progress callback: prints nothing."""


@dataclass
class ReportOptions:
    """What ``make_report`` does beyond the diagnostics.

    ``md_trials``: run ids for the MD probe, ``"best"`` (the best trial per model on
    each split), or empty (no probe). ``md_steps``/``md_timestep_fs``/``md_temperature_k``/
    ``md_structures``: the probe's trajectories (see ``md_probe``). ``workspace``: fallback
    workspace for runs whose recorded one is not found (see ``load_experiment``); the
    long-range yardstick is cached under ``<workspace>/cache/yardstick`` (``yardstick_cache``
    overrides; without either it is recomputed each time).
    """

    sweep_id: str | None = None
    dataset: str | None = None
    workspace: str | None = None
    with_charges: bool = True
    log_to_mlflow: bool = True
    md_trials: list[str] | str = field(default_factory=list)
    md_steps: int = 200
    md_timestep_fs: float = 0.5
    md_temperature_k: float = 300.0
    md_structures: int = 2
    n_distance_bins: int = 5
    yardstick_cache: str | None = None

    def cache_dir(self) -> Path | None:
        if self.yardstick_cache is not None:
            return Path(self.yardstick_cache)
        return Path(self.workspace) / "cache" / "yardstick" if self.workspace is not None else None


@dataclass
class Report:
    """Everything a report shows: ``claims`` (verdicts), ``headline`` (the headline table),
    ``yardsticks`` (per split replica), the diagnostics, the findings and the figures;
    ``skipped``: ``(run id, reason)`` of runs that could not be read."""

    title: str
    header: list[str]
    diagnostics: Diagnostics
    findings: list[Finding]
    figures: dict[str, bytes | None]
    claims: ClaimSet
    headline: pd.DataFrame
    yardsticks: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The verdict, evidence, headline and yardstick tables, then every diagnostic table."""
        evidence = pd.DataFrame([{"claim": claim.number, **effect.to_dict()} for claim in self.claims.claims
                                 for effect in claim.evidence])
        if len(evidence):
            evidence["run_ids"] = evidence["run_ids"].map(" ".join)
        return {"claims": claims_table(self.claims), "claim_evidence": evidence, "headline": self.headline,
                "yardstick": self.yardsticks, **self.diagnostics.tables()}


def build_report(data: AnalysisData, md_probe: pd.DataFrame | None = None, n_distance_bins: int = 5,
                 yardstick_cache: str | Path | None = None, progress: Progress | None = None) -> Report:
    """Diagnostics, claim verdicts, findings and figures of ``data`` (``md_probe``: rows of
    ``md_probe.run_probe``; ``yardstick_cache``: folder caching the long-range yardstick;
    ``progress``: called with one line per step)."""
    progress = progress or _quiet
    progress(f"diagnostics of {len(data.trials)} trials")
    diagnostics = compute_diagnostics(data, n_distance_bins)
    if md_probe is not None:
        diagnostics.md_probe = md_probe
    d = diagnostics
    progress("long-range yardstick of each split replica (Ewald sums of the reference charges; cached)")
    yardsticks, per_structure = yardstick_tables(d.trials, d.structures, data.contexts, cache_dir=yardstick_cache)
    d.energy_offsets = energy_offset_table(with_beyond_energies(d.trials, d.structures, per_structure))
    headline = headline_table(d.summary, yardsticks)
    progress("figures")
    figures = {
        "headline": plots.headline_figure(headline), "summary": plots.summary_figure(d.summary),
        "parity": plots.parity_figure(d.structures),
        "distance": plots.distance_figure(d.distance_curves, d.structures),
        "clusters": plots.cluster_bias_figure(d.buckets["cluster"]), "charges": plots.charge_figure(d.charges),
        "depth": plots.depth_figure(d.depth), "long_range": plots.long_range_figure(d.pair_differences),
        "md_probe": plots.md_probe_figure(d.md_probe),
    }
    source = f"sweep {data.sweep_id} of experiment {data.experiment}" if data.sweep_id else \
        f"experiment {data.experiment}"
    header = [f"source: {source} on {data.tracking_uri}",
              f"{len(d.trials)} finished trials, {d.structures['structure_id'].nunique()} distinct test structures, "
              f"splits: {', '.join(sorted(d.trials['split'].unique()))}",
              f"generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"]
    header += [f"skipped run {run_id}: {why}" for run_id, why in data.skipped][:5]
    if len(data.skipped) > 5:
        header.append(f"… and {len(data.skipped) - 5} more skipped runs")
    progress("verdicts on the five claims and findings")
    claims = evaluate_claims(d.trials, d.structures, d.charge_summary)
    return Report(f"farfield report: {data.experiment}", header, diagnostics, derive_findings(diagnostics), figures,
                  claims, headline, yardsticks, list(data.skipped))


def _json_ready(table: pd.DataFrame) -> list[dict]:
    records = json.loads(table.to_json(orient="records", double_precision=10))
    return records


def write_report(report: Report, out: str | Path, large_rows: int = LARGE_TABLE_ROWS) -> dict[str, Path]:
    """Write the report folder (see the module docstring); returns the main paths. A table of
    more than ``large_rows`` rows is written as ``tables/NAME.csv.gz`` only (``render.table_files``;
    the same bytes for the same rows: no time stamp in the gzip header)."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    tables = report.tables()
    for name, table in tables.items():
        files = table_files(name, len(table), large_rows)
        for file in files:
            path = out / "tables" / file
            if file.endswith(".csv.gz"):
                table.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
            elif file.endswith(".csv"):
                table.to_csv(path, index=False)
            else:
                path.write_text(json.dumps(_json_ready(table), indent=1))
        for file in {f"{name}.csv", f"{name}.json", f"{name}.csv.gz"} - set(files):
            (out / "tables" / file).unlink(missing_ok=True)  # an earlier report's file of this table
    figure_files = {}
    for name, image in report.figures.items():
        if image is not None:
            (out / "figures" / f"{name}.png").write_bytes(image)
            figure_files[name] = f"figures/{name}.png"
    findings = [f.to_dict() for f in report.findings]
    (out / "findings.json").write_text(json.dumps(findings, indent=1, default=_json_default))
    (out / "claims.json").write_text(json.dumps(report.claims.to_dict(), indent=1, default=_json_default))
    (out / "index.html").write_text(render_html(report.title, report.header, report.findings, tables,
                                                report.figures, report.claims), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(report.title, report.header, report.findings, tables,
                                                   figure_files, report.claims, large_rows), encoding="utf-8")
    return {"html": out / "index.html", "markdown": out / "report.md", "findings": out / "findings.json",
            "claims": out / "claims.json", "tables": out / "tables", "figures": out / "figures"}


def _json_default(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def make_report(tracking_uri: str, experiment: str, out: str | Path, options: ReportOptions | None = None,
                progress: Progress | None = None) -> tuple[Report, dict[str, Path], str | None]:
    """Load, diagnose, (probe,) write and (log) a report; returns ``(report, paths, mlflow run id or None)``.
    ``progress``: called with one line per step (and per trial read), e.g. ``typer.echo``."""
    from farfield.analysis.md_probe import (
        ProbeSettings,
        probe_trials,
        select_probe_trials,
    )

    options, progress = options or ReportOptions(), progress or _quiet
    with tempfile.TemporaryDirectory(prefix="farfield-report-") as workdir:
        data = load_experiment(tracking_uri, experiment, workdir, options.sweep_id, options.dataset,
                               options.with_charges, options.workspace, progress)
        probe = None
        if options.md_trials:
            run_ids = select_probe_trials(data, options.md_trials)
            settings = ProbeSettings(steps=options.md_steps, timestep_fs=options.md_timestep_fs,
                                     temperature_k=options.md_temperature_k, n_structures=options.md_structures)
            progress(f"MD stability probe of {len(run_ids)} trials")
            probe = probe_trials(data, run_ids, settings)
        report = build_report(data, probe, options.n_distance_bins, options.cache_dir(), progress)
    progress(f"writing {out}")
    paths = write_report(report, out)
    run_id = None
    if options.log_to_mlflow:
        progress("logging the report to MLflow")
        run_id, _ = mlflow_queries.report_target_run(tracking_uri, experiment, options.sweep_id)
        mlflow_queries.log_report(tracking_uri, run_id, out)
    return report, paths, run_id
