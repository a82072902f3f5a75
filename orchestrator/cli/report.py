"""``farfield report``: parse, find the tracking server, call ``farfield.analysis.report.make_report``."""

from __future__ import annotations

from pathlib import Path

import typer

from farfield.orchestrator.cli.errors import USER_ERRORS, console, fail


def report_progress(line: str) -> None:
    """One progress line of a report being written (stderr, so stdout keeps the results)."""
    typer.echo(f"report: {line}", err=True)


def print_verdicts(result) -> None:
    """The verdict table of a ``Report`` (``result.claims``) on the console."""
    from rich.table import Table

    table = Table(title="the paper's five claims on this study", show_lines=True)
    for column in ("#", "claim", "verdict", "effect (95 % CI)", "p"):
        table.add_column(column, overflow="fold")
    colours = {"supported": "green", "contradicted": "red", "inconclusive": "yellow"}
    for claim in result.claims.claims:
        effect = claim.effect
        p_value = "–" if effect is None or effect.p_value != effect.p_value else f"{effect.p_value:.2g}"
        table.add_row(str(claim.number), claim.statement, f"[{colours[claim.verdict]}]{claim.verdict}[/]",
                      f"{effect.name}: {effect.text()}" if effect is not None else claim.reason, p_value)
    console.print(table)
    pre = result.claims.precondition
    if pre.met is False:
        console.print(f"[yellow]precondition not met: {pre.text}; every verdict is inconclusive[/]", soft_wrap=True)


def report(
    experiment: str = typer.Option(..., "--experiment", help="MLflow experiment whose trials to analyse."),
    out: Path = typer.Option(..., "--out", help="Folder for index.html, report.md, claims.json, findings.json, "
                                                "tables/, figures/."),
    workspace: Path = typer.Option(Path("workspace"), help="Workspace of the runs (its MLflow store or server)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (overrides --workspace)."),
    sweep: str | None = typer.Option(None, "--sweep", help="Only this sweep's trials: sweep id, sweep name, or 'latest'."),
    dataset: str | None = typer.Option(None, help="Dataset store to use instead of each run's data.dataset."),
    md_probe: str | None = typer.Option(None, "--md-probe",
                                        help="MD stability probe: 'best' (best trial per model and split) or "
                                             "comma-separated run ids; default: no probe."),
    md_steps: int = typer.Option(200, help="NVE steps per probe trajectory."),
    md_timestep: float = typer.Option(0.5, help="MD time step (fs)."),
    md_temperature: float = typer.Option(300.0, help="Initial temperature of the probe (K)."),
    md_structures: int = typer.Option(2, help="Held-out MOFs probed per trial."),
    charges: bool = typer.Option(True, "--charges/--no-charges", help="Read the per-atom charges of charge heads the trials logged."),
    log: bool = typer.Option(True, "--log/--no-log", help="Log the report to the sweep's summary run in MLflow."),
    torch_threads: int = typer.Option(1, min=1, help="Torch threads for charges and MD (small graphs: 1 is fastest)."),
) -> None:
    """Write the failure-diagnosis report of an experiment (or one sweep of it).

    Reads every finished trial from MLflow and writes a self-contained HTML page and a Markdown
    summary that open with the verdicts on the paper's five claims (also claims.json) and the
    headline figure, findings with their significance tests, and every table as CSV/JSON; then
    logs the folder as `report/` artifacts of the sweep's summary run.

    Examples: farfield report --experiment quickstart-sweep --sweep latest --out workspace/report
              farfield report --experiment quickstart --workspace workspace --out report --md-probe best
    """
    from farfield.analysis.mlflow_queries import resolve_sweep_id
    from farfield.analysis.report import ReportOptions, make_report
    from farfield.orchestrator.mlflow_server import report_tracking

    import torch

    torch.set_num_threads(torch_threads)
    server = None
    try:
        uri, server = report_tracking(workspace, tracking_uri, experiment)
        sweep_id = resolve_sweep_id(uri, experiment, sweep) if sweep else None
        probe = md_probe if md_probe in (None, "best") else [r.strip() for r in md_probe.split(",") if r.strip()]
        options = ReportOptions(sweep_id=sweep_id, dataset=dataset, workspace=str(workspace), with_charges=charges, log_to_mlflow=log,
                                md_trials=probe or [], md_steps=md_steps, md_timestep_fs=md_timestep,
                                md_temperature_k=md_temperature, md_structures=md_structures)
        result, paths, run_id = make_report(uri, experiment, out, options, report_progress)
    except USER_ERRORS as err:
        raise fail(err) from err
    finally:
        if server is not None:
            server.stop()
    print_verdicts(result)
    console.print(f"{len(result.findings)} further findings from {len(result.diagnostics.trials)} trials "
                  "(grouped by kind at the end of the report)")
    console.print(f"report         : {paths['html']}")
    console.print(f"verdicts       : {paths['claims']}")
    console.print(f"summary        : {paths['markdown']}")
    if run_id is not None:
        console.print(f"logged to MLflow run {run_id} (artifacts report/)")
