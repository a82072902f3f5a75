"""``farfield study``: parse, validate, call ``farfield.orchestrator.study.run_study``; nothing more."""

from __future__ import annotations

from pathlib import Path

import typer

from farfield.orchestrator.cli.errors import USER_ERRORS, console, fail
from farfield.orchestrator.cli.report import print_verdicts


def _command(config_file: Path | None, resume: str | None, out: Path, workspace: Path | None, address: str | None,
             charges: bool, log: bool, archive: bool = True) -> list[str]:
    """The ``farfield study`` command line equivalent to these options (recorded in provenance.json)."""
    command = ["farfield", "study"] + ([str(config_file)] if config_file is not None else [])
    for flag, value in (("--resume", resume), ("--out", out), ("--workspace", workspace), ("--address", address)):
        if value is not None:
            command += [flag, str(value)]
    return (command + ([] if charges else ["--no-charges"]) + ([] if log else ["--no-log"])
            + ([] if archive else ["--no-archive"]))


def study(
    config_file: Path | None = typer.Argument(None, help="Sweep config YAML of the study (e.g. configs/study-paper.yaml)."),
    resume: str | None = typer.Option(None, "--resume", help="Continue the interrupted study (sweep) NAME, then report."),
    out: Path | None = typer.Option(None, "--out", help="Output folder; default docs/study/<sweep name>."),
    workspace: Path | None = typer.Option(None, help="Override the config's workspace folder."),
    address: str | None = typer.Option(None, help="Ray cluster address ('auto' = running cluster); default: local Ray."),
    charges: bool = typer.Option(True, "--charges/--no-charges", help="Read the per-atom charges the trials logged (claim 4 needs them)."),
    log: bool = typer.Option(True, "--log/--no-log", help="Log the study folder to the sweep's summary run in MLflow."),
    torch_threads: int = typer.Option(1, min=1, help="Torch threads of the report (charges, yardstick)."),
    archive: bool = typer.Option(True, "--archive/--no-archive",
                                 help="Keep the finished runs and training states in OUT/runs (commit it: --resume "
                                      "continues from it on a machine that never ran the study)."),
) -> None:
    """Run a study: the sweep CONFIG, then its report with the verdicts on the paper's five claims.

    Writes OUT/index.html, report.md, claims.json, findings.json, tables/, figures/ and
    provenance.json (command, config, versions, git commit, dataset and split hashes, wall time).
    After an interruption, `--resume NAME` continues the sweep (finished trials are kept) and reports;
    on a machine that never ran it, it continues from the archive OUT/runs.

    Examples:  farfield study configs/study-paper.yaml
               farfield study --resume study-paper --workspace workspace
    """
    import torch

    from farfield.orchestrator.cli.report import report_progress
    from farfield.orchestrator.study import archive_folder, default_out, default_out_for, run_study
    from farfield.orchestrator.sweep.run import sweep_config_for

    torch.set_num_threads(torch_threads)
    overrides = {"workspace": str(workspace)} if workspace is not None else {}
    try:
        named = out if out is not None else (default_out_for(resume) if resume is not None else None)
        config = sweep_config_for(config_file, resume, overrides,
                                  "give the study's sweep CONFIG file, or --resume NAME to continue "
                                  "an interrupted study", archive_folder(named) if named and archive else None)
        target = out if out is not None else default_out(config)
        command = _command(config_file, resume, target, workspace, address, charges, log, archive)
        result = run_study(config, target, resume=resume is not None, address=address, with_charges=charges,
                           log_to_mlflow=log, command=command, config_file=config_file,
                           progress=report_progress, archive=archive)
    except USER_ERRORS as err:
        raise fail(err) from err
    print_verdicts(result.report)
    wall = result.provenance["wall_s"]
    console.print(f"study          : {result.paths['html']}  ({wall['total'] / 60:.1f} min: sweep "
                  f"{wall['sweep'] / 60:.1f}, report {wall['report'] / 60:.1f})")
    console.print(f"verdicts       : {result.paths['claims']}")
    console.print(f"provenance     : {result.paths['provenance']}")
    if "archive" in result.provenance:
        held = result.provenance["archive"]
        console.print(f"archive        : {archive_folder(target)}  ({held['runs']} finished runs, "
                      f"{held['training_states']} training states; commit it with the report: --resume "
                      "continues from it anywhere)")
    if result.report_run_id is not None:
        console.print(f"logged to MLflow run {result.report_run_id} (artifacts report/)")
