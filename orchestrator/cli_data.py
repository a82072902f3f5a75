"""``farfield data``: validate structure files, import them into a store, inspect a store.

Only argument parsing and printing live here; the work is done by
:mod:`farfield.data.importing` and :mod:`farfield.data.store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from farfield.data.importing import REJECTS_FILE, FileReport, import_files, validate_files
from farfield.data.readers import FORMATS
from farfield.data.store import DatasetStore, StoreError

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Validate structure files (extxyz, ASE db, CIF), import them into a dataset "
         "store, and inspect a store.",
    no_args_is_help=True,
)

PathsArgument = Annotated[list[Path], typer.Argument(
    metavar="PATH", help="Structure files: .extxyz/.xyz (optionally .gz/.xz/.bz2), .db (ASE db), .cif.",
    show_default=False)]
FormatOption = Annotated[Optional[str], typer.Option(
    "--format", help=f"Read every file as this format ({', '.join(FORMATS)}) instead of "
                     "guessing from the suffix.")]
KeyOption = Annotated[Optional[list[str]], typer.Option(
    "--key", help="RECORD=FILEKEY: the file stores record field RECORD under FILEKEY, "
                  "e.g. --key energy=DFT_energy --key forces=DFT_forces. Repeatable.")]


def _fail(message: str) -> typer.Exit:
    """Print a one-line error to stderr; return the Exit(1) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _key_map(keys: list[str] | None) -> dict[str, str]:
    key_map = {}
    for item in keys or []:
        record_key, sep, file_key = item.partition("=")
        if not sep or not record_key.strip() or not file_key.strip():
            raise _fail(f"--key {item!r}: expected RECORD=FILEKEY, e.g. energy=DFT_energy")
        key_map[record_key.strip()] = file_key.strip()
    return key_map


def _summary_table(reports: list[FileReport]) -> Table:
    table = Table(title="Validation summary")
    for column in ("file", "frames", "valid", "invalid", "file-level problems"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for report in reports:
        file_level = sum(problem.frame is None for problem in report.problems)
        table.add_row(report.file, str(report.n_frames), str(report.n_valid),
                      str(report.n_invalid), str(file_level))
    return table


def _print_problems(reports: list[FileReport]) -> int:
    count = 0
    for report in reports:
        for problem in report.problems:
            typer.echo(str(problem))
            count += 1
    return count


@data_app.command("validate")
def validate_command(paths: PathsArgument, format: FormatOption = None,
                     key: KeyOption = None) -> None:
    """Check every frame of every file and list every problem, one line each.

    Prints "FILE: frame N: what is wrong" for each problem, then a table of valid
    and invalid frames per file. Exits with 1 if there is any problem, else 0.

    Example:

        farfield data validate mofs.extxyz more/*.xyz.gz --key energy=DFT_energy
    """
    reports = _validate(paths, format, key)
    n_problems = _print_problems(reports)
    Console().print(_summary_table(reports))
    if n_problems:
        typer.echo(f"{n_problems} problem(s) in {sum(bool(r.problems) for r in reports)} "
                   f"of {len(reports)} file(s)", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"all {sum(r.n_valid for r in reports)} frame(s) valid")


def _validate(paths: list[Path], format: str | None, keys: list[str] | None) -> list[FileReport]:
    try:
        return validate_files(paths, format=format, key_map=_key_map(keys))
    except ValueError as err:  # bad --format / --key names
        raise _fail(str(err)) from err


@data_app.command("import")
def import_command(
    paths: PathsArgument,
    out: Annotated[Path, typer.Option("--out", help="Store directory to create.",
                                      show_default=False)],
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help=f"Import the valid frames and list the rest in "
                               f"OUT/{REJECTS_FILE} instead of refusing.")] = False,
    label_method: Annotated[str, typer.Option(
        "--label-method", help="How energies/forces were computed, e.g. GFN1-xTB.")]
    = "unspecified",
    format: FormatOption = None,
    key: KeyOption = None,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1,
                                            help="Frames per shard file.")] = 256,
    overwrite: Annotated[bool, typer.Option("--overwrite",
                                            help="Replace an existing store at OUT.")] = False,
) -> None:
    """Validate files and write their frames into a new dataset store.

    Without --skip-invalid any problem is printed and nothing is written (exit 1).
    With it, the valid frames are written and every problem is recorded in
    OUT/rejects.jsonl.

    Example:

        farfield data import mofs.extxyz --out stores/mofs --skip-invalid
    """
    try:
        report = import_files(paths, out, skip_invalid=skip_invalid, label_method=label_method,
                              format=format, key_map=_key_map(key), shard_size=shard_size,
                              overwrite=overwrite)
    except (OSError, ValueError) as err:
        raise _fail(str(err)) from err
    if report.store is None:
        n_problems = _print_problems(report.files)
        raise _fail(f"{n_problems} problem(s); nothing written to {out} "
                    f"(fix them, or pass --skip-invalid to import only the valid frames)")
    store = report.store
    typer.echo(f"imported {len(store)} structure(s) ({store.manifest['n_parents']} parent(s)) "
               f"from {len(report.files)} file(s) into {store.path}")
    if skip_invalid:
        typer.echo(f"{len(report.problems)} problem(s) recorded in {store.path / REJECTS_FILE}")
    typer.echo(f"content hash: {store.content_hash}")


@data_app.command("info")
def info_command(store_path: Annotated[Path, typer.Argument(
        metavar="STORE", help="A dataset store directory.", show_default=False)]) -> None:
    """Summarise a dataset store: counts, elements, label method, hash, sizes, sources.

    Example:

        farfield data info stores/mofs
    """
    try:
        store = DatasetStore.open(store_path)
    except StoreError as err:
        raise _fail(str(err)) from err
    manifest, index = store.manifest, store.index
    console = Console()
    console.print(f"[bold]{store.path}[/bold]", soft_wrap=True)
    charges = manifest.get("has_charges", {})
    for name, value in (
        ("structures", manifest["n_structures"]), ("parents", manifest["n_parents"]),
        ("shards", manifest["n_shards"]), ("elements", " ".join(manifest["elements"])),
        ("label method", manifest["label_method"]),
        ("with charges", f"{charges.get('with', '?')} of {manifest['n_structures']}"),
        ("periodic", f"{int(index['periodic'].sum())} of {len(index)}"),
        ("content hash", manifest["content_hash"]),
        ("created with", ", ".join(f"{k} {v}" for k, v in manifest.get("created_with", {}).items())),
    ):
        console.print(f"  {name:>13}: {value}", highlight=False, soft_wrap=True)
    stats = Table(title="Per structure")
    for column in ("quantity", "min", "median", "mean", "max"):
        stats.add_column(column, justify="left" if column == "quantity" else "right")
    for column, label, fmt in (("n_atoms", "atoms", "{:.0f}"),
                               ("energy_per_atom", "energy (eV/atom)", "{:.4f}")):
        values = index[column]
        stats.add_row(label, *(fmt.format(v) for v in (values.min(), values.median(),
                                                       values.mean(), values.max())))
    console.print(stats)
    sources = Table(title="Per source")
    for column in ("source", "structures", "parents"):
        sources.add_column(column, justify="left" if column == "source" else "right")
    for source, group in index.groupby("source", sort=True):
        sources.add_row(str(source) or "-", str(len(group)), str(group["parent_id"].nunique()))
    console.print(sources)
