"""``farfield data``: validate structure files, import them into a store, inspect a store.

Only argument parsing and printing live here; the work is done by
:mod:`farfield.data.importing` and :mod:`farfield.data.store`. Formats and their
options are described with a worked example each in docs/data.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from farfield.data.importers.qmof import (
    CHARGE_SCHEMES,
    DEFAULT_ENERGY_COLUMN,
    DEFAULT_ID_COLUMN,
)
from farfield.data.importing import (
    IMPORT_FORMATS,
    VALIDATE_FORMATS,
    REJECTS_FILE,
    FileReport,
    OdacOptions,
    QmofOptions,
    import_files,
    validate_files,
)
from farfield.data.selection import SelectionRules
from farfield.data.store import DatasetStore, StoreError
from farfield.orchestrator.cli.errors import fail

__all__ = ["data_app"]

data_app = typer.Typer(
    help="Validate structure files (extxyz, ASE db, CIF), import them into a dataset "
         "store, and inspect a store.",
    no_args_is_help=True,
)

PathsArgument = Annotated[list[Path], typer.Argument(
    metavar="PATH", help="Structure files: .extxyz/.xyz (optionally .gz/.xz/.bz2), .db (ASE db), "
                         ".cif; with --format qmof one directory of CIFs.",
    show_default=False)]
FormatOption = Annotated[str | None, typer.Option(
    "--format", help=f"One of {', '.join(VALIDATE_FORMATS)}. extxyz/db/cif: read every "
                     "file as this format instead of guessing from the suffix. qmof: PATH is a "
                     "folder of CIFs labelled by --table. odac: ASE .db files whose rows carry "
                     "--id-key/--parent-key. aselmdb: fairchem .aselmdb files or folders of "
                     "them, read row by row.")]
KeyOption = Annotated[list[str] | None, typer.Option(
    "--key", help="RECORD=FILEKEY: the file stores record field RECORD under FILEKEY, "
                  "e.g. --key energy=DFT_energy --key forces=DFT_forces. Repeatable.")]
ForcesOption = Annotated[bool, typer.Option(
    "--allow-missing-forces", help="Accept structures with an energy but no forces (the energy "
                                   "is always required); recorded in the store's manifest as "
                                   "forces_required=false. Implied by --format qmof.")]
_QMOF = "QMOF-style: --format qmof DIR --table FILE"
_ODAC = "ODAC-style: --format odac FILE.db"
TableOption = Annotated[Path | None, typer.Option(
    "--table", rich_help_panel=_QMOF, show_default=False,
    help="CSV or JSON table, one row per CIF (QMOF's qmof.csv or qmof.json).")]
IdColumnOption = Annotated[str | None, typer.Option(
    "--id-column", rich_help_panel=_QMOF, show_default=False,
    help=f"Table column matching the CIF file names without .cif. Default: {DEFAULT_ID_COLUMN}.")]
EnergyColumnOption = Annotated[str | None, typer.Option(
    "--energy-column", rich_help_panel=_QMOF, show_default=False,
    help=f"Table column with the total energy of the CIF's cell in eV. "
         f"Default: {DEFAULT_ENERGY_COLUMN}.")]
ParentColumnOption = Annotated[str | None, typer.Option(
    "--parent-column", rich_help_panel=_QMOF, show_default=False,
    help="Table column naming each structure's parent MOF. Default: each is its own parent.")]
ChargesOption = Annotated[str | None, typer.Option(
    "--charges", rich_help_panel=_QMOF, show_default=False,
    help=f"Reference charges: {', '.join(CHARGE_SCHEMES)}; read from each CIF's "
         "_atom_site_pbe_<scheme>_charge column unless --charges-column is given. "
         "Default: none.")]
ChargesColumnOption = Annotated[str | None, typer.Option(
    "--charges-column", rich_help_panel=_QMOF, show_default=False,
    help="Table column holding each structure's per-atom charges as a JSON list, in CIF "
         "site order (needs --charges to name the scheme).")]
IdKeyOption = Annotated[str | None, typer.Option(
    "--id-key", rich_help_panel=_ODAC, show_default=False,
    help="Row key (key_value_pairs or data) holding the structure id. Default: sid "
         "(--format aselmdb: none, the id is <file stem>-<row id>).")]
ParentKeyOption = Annotated[str | None, typer.Option(
    "--parent-key", rich_help_panel=_ODAC, show_default=False,
    help="Row key holding the parent MOF id. Default: mof_id; 'none': each structure is "
         "its own parent (the default of --format aselmdb).")]
FrameKeyOption = Annotated[str | None, typer.Option(
    "--frame-key", rich_help_panel=_ODAC, show_default=False,
    help="Row key numbering frames of one trajectory (e.g. fid); the structure id becomes "
         "ID-FRAME.")]


_ASELMDB = "fairchem .aselmdb: --format aselmdb FILE_OR_FOLDER..."
_SELECT = "Selection (any format; recorded in the manifest)"
ImportFormatOption = Annotated[str | None, typer.Option(
    "--format", help=f"One of {', '.join(IMPORT_FORMATS)}, aselmdb. extxyz/db/cif: read every "
                     "file as this format instead of guessing from the suffix. qmof: PATH is a "
                     "folder of CIFs labelled by --table. odac: ASE .db files whose rows carry "
                     "--id-key/--parent-key. aselmdb: fairchem .aselmdb files or folders of "
                     "them (ODAC25, OMol25), read in parallel Ray tasks.")]
ParentPatternOption = Annotated[str | None, typer.Option(
    "--parent-pattern", rich_help_panel=_ASELMDB, show_default=False,
    help="Regular expression searched in the --parent-key value: rows that do not match are "
         "left out; the parent id is the match (or its group 1), e.g. "
         "'^omol/metal_organics/[^/]+/[^/]+/' for OMol25's metal-organic systems.")]
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", rich_help_panel=_ASELMDB, min=0, show_default=False,
    help="Ray tasks reading at once (one CPU each). Default: 2; 0: read in this process.")]
ChunkRowsOption = Annotated[int | None, typer.Option(
    "--chunk-rows", rich_help_panel=_ASELMDB, min=1, show_default=False,
    help="Rows per Ray task (memory per worker grows with it). Default: 2000.")]
AddressOption = Annotated[str | None, typer.Option(
    "--address", rich_help_panel=_ASELMDB, show_default=False,
    help="Ray cluster to use (e.g. auto); default: a local Ray with --workers CPUs.")]
KeepWorkOption = Annotated[bool, typer.Option(
    "--keep-work", rich_help_panel=_ASELMDB,
    help="Keep OUT.import/ (the validated chunks) after a successful import, so another "
         "selection of the same files reads nothing again.")]
MaxAtomsOption = Annotated[int | None, typer.Option(
    "--max-atoms", rich_help_panel=_SELECT, min=1, show_default=False,
    help="Keep structures of at most N atoms.")]
RequireChargesOption = Annotated[bool, typer.Option(
    "--require-charges", rich_help_panel=_SELECT,
    help="Keep only structures with reference charges (map them with --key charges=...).")]
NeutralOnlyOption = Annotated[bool, typer.Option(
    "--neutral-only", rich_help_panel=_SELECT,
    help="Keep only structures of total charge 0 e (map it with --key total_charge=...).")]
NegativeEnergyOption = Annotated[bool, typer.Option(
    "--negative-energy-only", rich_help_panel=_SELECT,
    help="Keep only structures with a total energy below 0 eV (QMOF's rule).")]
LowestEnergyOption = Annotated[int | None, typer.Option(
    "--lowest-energy-per-parent", rich_help_panel=_SELECT, min=1, show_default=False,
    help="Keep the K lowest-total-energy structures of each parent (ODAC25: 10, OMol25: 1), "
         "after the rules above.")]
MinElementParentsOption = Annotated[int | None, typer.Option(
    "--min-element-parents", rich_help_panel=_SELECT, min=1, show_default=False,
    help="Then drop structures with an element found in fewer than N parents, until none is "
         "left (QMOF: 10).")]


def _key_map(keys: list[str] | None) -> dict[str, str]:
    key_map = {}
    for item in keys or []:
        record_key, sep, file_key = item.partition("=")
        if not sep or not record_key.strip() or not file_key.strip():
            raise fail(f"--key {item!r}: expected RECORD=FILEKEY, e.g. energy=DFT_energy")
        key_map[record_key.strip()] = file_key.strip()
    return key_map


def _source_options(format: str | None, table: Path | None, id_column: str | None,
                    energy_column: str | None, parent_column: str | None, charges: str | None,
                    charges_column: str | None, id_key: str | None, parent_key: str | None,
                    frame_key: str | None) -> QmofOptions | OdacOptions | None:
    """The options object of --format qmof / odac; an error for options of another format."""
    groups = {
        "qmof": {"--table": table, "--id-column": id_column, "--energy-column": energy_column,
                 "--parent-column": parent_column, "--charges": charges,
                 "--charges-column": charges_column},
        "odac": {"--id-key": id_key, "--parent-key": parent_key, "--frame-key": frame_key},
    }
    for name, group in groups.items():
        given = [option for option, value in group.items() if value is not None]
        if given and format != name:
            raise fail(f"{given[0]} is only used with --format {name}")
    if format == "qmof":
        if table is None:
            raise fail("--format qmof needs --table FILE (the table of energies, e.g. qmof.csv)")
        if charges is not None and charges not in CHARGE_SCHEMES:
            raise fail(f"--charges {charges!r}: choose one of {', '.join(CHARGE_SCHEMES)}")
        try:
            return QmofOptions(table=table, id_column=id_column or DEFAULT_ID_COLUMN,
                               energy_column=energy_column or DEFAULT_ENERGY_COLUMN,
                               parent_column=parent_column, charges=charges or "none",
                               charges_column=charges_column)
        except ValueError as err:
            raise fail(str(err).replace("charges=", "--charges ")) from err
    if format == "odac":
        return OdacOptions(id_key=id_key or "sid",
                           parent_key=None if parent_key == "none" else parent_key or "mof_id",
                           frame_key=frame_key)
    return None


#: Above this many files, the summary lists only files with problems and one total row.
_MAX_SUMMARY_ROWS = 20


def _summary_table(reports: list[FileReport]) -> Table:
    table = Table(title="Validation summary")
    for column in ("file", "frames", "valid", "invalid", "file-level problems"):
        table.add_column(column, justify="left" if column == "file" else "right")

    def row(name: str, group: list[FileReport]) -> None:
        file_level = sum(p.frame is None for r in group for p in r.problems)
        table.add_row(name, *(str(sum(getattr(r, k) for r in group))
                              for k in ("n_frames", "n_valid", "n_invalid")), str(file_level))

    shown = reports
    if len(reports) > _MAX_SUMMARY_ROWS:
        shown = [report for report in reports if report.problems][:_MAX_SUMMARY_ROWS]
    for report in shown:
        row(report.file, [report])
    listed = {id(report) for report in shown}
    rest = [report for report in reports if id(report) not in listed]
    if rest:
        row(f"({len(rest)} more file(s))", rest)
    return table


def _print_problems(reports: list[FileReport]) -> int:
    count = 0
    for report in reports:
        for problem in report.problems:
            typer.echo(str(problem))
            count += 1
    for report in reports:
        for note in report.notes:
            typer.echo(f"note: {report.file}: {note}")
    return count


@data_app.command("validate")
def validate_command(
    paths: PathsArgument, format: FormatOption = None, key: KeyOption = None,
    allow_missing_forces: ForcesOption = False,
    table: TableOption = None, id_column: IdColumnOption = None,
    energy_column: EnergyColumnOption = None, parent_column: ParentColumnOption = None,
    charges: ChargesOption = None, charges_column: ChargesColumnOption = None,
    id_key: IdKeyOption = None, parent_key: ParentKeyOption = None,
    frame_key: FrameKeyOption = None, parent_pattern: ParentPatternOption = None,
) -> None:
    """Check every frame of every file and list every problem, one line each.

    Prints "FILE: frame N: what is wrong" for each problem, then a table of valid
    and invalid frames per file. Exits with 1 if there is any problem, else 0.
    Worked examples for every format: docs/data.md.

    Examples:

        farfield data validate mofs.extxyz more/*.xyz.gz --key energy=DFT_energy

        farfield data validate --format qmof relaxed_structures --table qmof.csv --charges ddec

        farfield data validate --format odac odac.db --id-key sid --parent-key mof_id

        farfield data validate --format aselmdb odac25/train/mof --parent-key mof_name
    """
    if format == "aselmdb":
        _only_qmof_options(table, id_column, energy_column, parent_column, charges, charges_column)
        options = _aselmdb_options(id_key, parent_key, frame_key, parent_pattern)
    else:
        if parent_pattern is not None:
            raise fail("--parent-pattern is only used with --format aselmdb")
        options = _source_options(format, table, id_column, energy_column, parent_column, charges,
                                  charges_column, id_key, parent_key, frame_key)
    try:
        reports = validate_files(paths, format=format, key_map=_key_map(key),
                                 require_forces=False if allow_missing_forces else None,
                                 options=options, progress=True)
    except (OSError, ValueError) as err:  # bad --format / --key names, unusable table
        raise fail(str(err)) from err
    n_problems = _print_problems(reports)
    Console().print(_summary_table(reports))
    if n_problems:
        typer.echo(f"{n_problems} problem(s) in {sum(bool(r.problems) for r in reports)} "
                   f"of {len(reports)} file(s)", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"all {sum(r.n_valid for r in reports)} frame(s) valid")


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
    format: ImportFormatOption = None,
    key: KeyOption = None,
    allow_missing_forces: ForcesOption = False,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1,
                                            help="Frames per shard file.")] = 256,
    overwrite: Annotated[bool, typer.Option("--overwrite",
                                            help="Replace an existing store at OUT.")] = False,
    table: TableOption = None, id_column: IdColumnOption = None,
    energy_column: EnergyColumnOption = None, parent_column: ParentColumnOption = None,
    charges: ChargesOption = None, charges_column: ChargesColumnOption = None,
    id_key: IdKeyOption = None, parent_key: ParentKeyOption = None,
    frame_key: FrameKeyOption = None,
    parent_pattern: ParentPatternOption = None, workers: WorkersOption = None,
    chunk_rows: ChunkRowsOption = None, address: AddressOption = None,
    keep_work: KeepWorkOption = False,
    max_atoms: MaxAtomsOption = None, require_charges: RequireChargesOption = False,
    neutral_only: NeutralOnlyOption = False, negative_energy_only: NegativeEnergyOption = False,
    lowest_energy_per_parent: LowestEnergyOption = None,
    min_element_parents: MinElementParentsOption = None,
) -> None:
    """Validate files and write their frames into a new dataset store.

    Without --skip-invalid any problem is printed and nothing is written (exit 1).
    With it, the valid frames are written and every problem is recorded in
    OUT/rejects.jsonl. The selection options keep a subset of the valid frames (the
    rest is listed in OUT/excluded.parquet). The manifest's provenance records the
    format, the key or column maps, the selection and input checksums. Worked examples
    for every format, and for the paper's ODAC25, OMol25 and QMOF subsets: docs/data.md.

    Examples:

        farfield data import mofs.extxyz --out stores/mofs --skip-invalid

        farfield data import dft.extxyz --key energy=DFT_energy --key forces=DFT_forces --out stores/dft

        farfield data import --format qmof qmof_database/relaxed_structures --table qmof_database/qmof.csv --charges ddec --out stores/qmof --skip-invalid

        farfield data import --format odac odac.db --id-key sid --parent-key mof_id --out stores/odac

        farfield data import --format aselmdb odac25/train/mof --parent-key mof_name --lowest-energy-per-parent 10 --out stores/odac25 --skip-invalid
    """
    rules = SelectionRules(max_atoms=max_atoms, require_charges=require_charges,
                           neutral_only=neutral_only, negative_energy_only=negative_energy_only,
                           lowest_energy_per_parent=lowest_energy_per_parent,
                           min_element_parents=min_element_parents)
    common = {"skip_invalid": skip_invalid, "label_method": label_method, "key_map": _key_map(key),
              "shard_size": shard_size, "overwrite": overwrite}
    if format == "aselmdb":
        _only_qmof_options(table, id_column, energy_column, parent_column, charges, charges_column)
        _import_aselmdb(paths, out, rules, common, allow_missing_forces=allow_missing_forces,
                        id_key=id_key, parent_key=parent_key, frame_key=frame_key,
                        parent_pattern=parent_pattern, workers=workers, chunk_rows=chunk_rows,
                        address=address, keep_work=keep_work)
        return
    aselmdb_given = {"--parent-pattern": parent_pattern, "--workers": workers,
                     "--chunk-rows": chunk_rows, "--address": address,
                     "--keep-work": keep_work or None}
    given = [option for option, value in aselmdb_given.items() if value is not None]
    if given:
        raise fail(f"{given[0]} is only used with --format aselmdb")
    options = _source_options(format, table, id_column, energy_column, parent_column, charges,
                              charges_column, id_key, parent_key, frame_key)
    selection = None
    try:
        arguments = {**common, "format": format, "options": options,
                     "require_forces": False if allow_missing_forces else None}
        if rules.active:
            from farfield.data.selection import import_and_select

            report, selection = import_and_select(paths, out, rules, **arguments)
        else:
            report = import_files(paths, out, **arguments)
    except (OSError, ValueError) as err:
        raise fail(str(err)) from err
    if report.store is None:
        n_problems = _print_problems(report.files)
        raise fail(f"{n_problems} problem(s); nothing written to {out} "
                    f"(fix them, or pass --skip-invalid to import only the valid frames)")
    _print_problems(report.files)  # with --skip-invalid: what was left out, one line each
    _print_stored(report.store, len(report.files), len(report.problems), skip_invalid,
                  selection.counts() if selection else None)


def _print_stored(store: DatasetStore, n_files: int, n_problems: int, skip_invalid: bool,
                  selection: dict | None) -> None:
    """The closing lines of an import: what was stored, selected, rejected, and the hash."""
    typer.echo(f"imported {len(store)} structure(s) ({store.manifest['n_parents']} parent(s)) "
               f"from {n_files} file(s) into {store.path}")
    if selection is not None:
        left_out = ", ".join(f"{rule} {n}" for rule, n in selection["excluded"].items())
        typer.echo(f"selection: {selection['kept']} of {selection['valid']} valid structure(s) "
                   f"kept; left out: {left_out or 'none'} (listed in "
                   f"{store.path / 'excluded.parquet'})")
    without = store.manifest["has_forces"]["without"]
    if without:
        typer.echo(f"{without} structure(s) have an energy but no forces (forces_required=false "
                   f"in the manifest): train on this store with training.loss.forces: 0")
    if skip_invalid:
        typer.echo(f"{n_problems} problem(s) recorded in {store.path / REJECTS_FILE}")
    typer.echo(f"content hash: {store.content_hash}")


def _only_qmof_options(table, id_column, energy_column, parent_column, charges,
                       charges_column) -> None:
    """An error for the first --format qmof option given with --format aselmdb."""
    qmof_given = {"--table": table, "--id-column": id_column, "--energy-column": energy_column,
                  "--parent-column": parent_column, "--charges": charges,
                  "--charges-column": charges_column}
    given = [option for option, value in qmof_given.items() if value is not None]
    if given:
        raise fail(f"{given[0]} is only used with --format qmof")


def _aselmdb_options(id_key: str | None, parent_key: str | None, frame_key: str | None,
                     parent_pattern: str | None):
    """The AselmdbOptions of --format aselmdb (``--parent-key none``: no parents); a one-line
    error for options that do not fit together."""
    from pydantic import ValidationError

    from farfield.data.importers.aselmdb import AselmdbOptions

    try:
        return AselmdbOptions(id_key=id_key, frame_key=frame_key, parent_pattern=parent_pattern,
                              parent_key=None if parent_key == "none" else parent_key)
    except ValidationError as err:
        raise fail(err.errors()[0]["msg"].removeprefix("Value error, ")) from err


def _import_aselmdb(paths: list[Path], out: Path, rules: SelectionRules, common: dict, *,
                    allow_missing_forces: bool, id_key: str | None, parent_key: str | None,
                    frame_key: str | None, parent_pattern: str | None, workers: int | None,
                    chunk_rows: int | None, address: str | None, keep_work: bool) -> None:
    """``import --format aselmdb``: parse the options, run the sharded import, print."""
    from farfield.data.aselmdb_import import DEFAULT_CHUNK_ROWS, import_aselmdb, work_dir_of

    options = _aselmdb_options(id_key, parent_key, frame_key, parent_pattern)
    try:
        report = import_aselmdb(paths, out, options=options, rules=rules,
                                require_forces=not allow_missing_forces,
                                n_workers=2 if workers is None else workers, address=address,
                                chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS, keep_work=keep_work,
                                **common)
    except KeyboardInterrupt:
        raise fail(f"interrupted; run the same command again to resume (finished chunks are "
                    f"kept in {work_dir_of(out)})") from None
    except (OSError, ValueError) as err:
        raise fail(str(err)) from err
    for problem in report.problems:
        typer.echo(str(problem))
    if report.store is None:
        raise fail(f"{len(report.problems)} problem(s); nothing written to {out} (fix them, or "
                    f"pass --skip-invalid to import only the valid frames; the chunks read are "
                    f"kept in {report.work_dir}, so running again reads nothing twice)")
    reading = report.reading
    if reading["n_left_out"]:
        typer.echo(f"{reading['n_left_out']} of {reading['n_rows']} row(s) left out: their "
                   f"--parent-key value does not match --parent-pattern")
    _print_stored(report.store, len(report.files), len(report.problems),
                  common["skip_invalid"], report.selection if rules.active else None)


@data_app.command("info")
def info_command(
    store_path: Annotated[str, typer.Argument(
        metavar="STORE", help="A dataset store directory, or 'bundled'.", show_default=False)],
    workspace: Annotated[Path, typer.Option(
        "--workspace", help="Where 'bundled' is unpacked (a store under datasets/).")] = Path("workspace"),
    forces: Annotated[bool, typer.Option(
        "--forces/--no-forces", help="Read every frame for the force statistics.")] = True,
) -> None:
    """Summarise a dataset store: counts, elements with their parent counts, sizes, forces.

    Example:

        farfield data info bundled
        farfield data info stores/mofs --no-forces
    """
    from farfield.data.datasets import resolve_dataset
    from farfield.data.summary import store_summary

    try:
        store = resolve_dataset(store_path, workspace)
    except (StoreError, FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from err
    manifest, index = store.manifest, store.index
    summary = store_summary(store, forces=forces)
    console = Console()
    console.print(f"[bold]{store.path}[/bold]", soft_wrap=True)
    charges = manifest.get("has_charges", {})
    elements = summary["element_parents"]
    for name, value in (
        ("structures", manifest["n_structures"]), ("parents", manifest["n_parents"]),
        ("shards", manifest["n_shards"]),
        ("elements", f"{len(elements)}: " + " ".join(f"{el} {n}" for el, n in elements.items())),
        ("rarest element", "{} in {} parents".format(*min(elements.items(), key=lambda kv: kv[1]))),
        ("label method", manifest["label_method"]),
        ("with charges", f"{charges.get('with', '?')} of {manifest['n_structures']}"),
        ("periodic", f"{int(index['periodic'].sum())} of {len(index)}"),
        ("content hash", manifest["content_hash"]),
        ("created with", ", ".join(f"{k} {v}" for k, v in manifest.get("created_with", {}).items())),
    ):
        console.print(f"  {name:>14}: {value}", highlight=False, soft_wrap=True)
    sizes = Table(title="Parents per size (atoms)")
    for label in summary["parent_sizes"]:
        sizes.add_column(label, justify="right")
    sizes.add_row(*(str(n) for n in summary["parent_sizes"].values()))
    console.print(sizes)
    stats = Table(title="Per structure")
    for column in ("quantity", "min", "median", "mean", "max"):
        stats.add_column(column, justify="left" if column == "quantity" else "right")
    for column, label, fmt in (("n_atoms", "atoms", "{:.0f}"),
                               ("energy_per_atom", "energy (eV/atom)", "{:.4f}")):
        values = index[column]
        stats.add_row(label, *(fmt.format(v) for v in (values.min(), values.median(),
                                                       values.mean(), values.max())))
    console.print(stats)
    if forces:
        table = Table(title="Forces per configuration kind (eV/Å)")
        for column in ("kind", "frames", "mean |F component|", "median |F_atom|",
                       "atoms > 5 eV/Å", "max |F_atom|"):
            table.add_column(column, justify="left" if column == "kind" else "right")
        for row in summary["forces"]:
            table.add_row(row["kind"], str(row["frames"]), f"{row['mean_abs_component']:.3f}",
                          f"{row['median_atom_force']:.3f}", f"{100 * row['share_above_5']:.2f} %",
                          f"{row['max_atom_force']:.2f}")
        console.print(table)
    sources = Table(title="Per source")
    for column in ("source", "structures", "parents"):
        sources.add_column(column, justify="left" if column == "source" else "right")
    for source, group in index.groupby("source", sort=True):
        sources.add_row(str(source) or "-", str(len(group)), str(group["parent_id"].nunique()))
    console.print(sources)


def _register_build_commands() -> None:
    """``data build`` / ``data catalogue`` live in their own module (CoRE MOF + GFN-xTB)."""
    from farfield.orchestrator.cli.data_build import build_command, catalogue_command

    data_app.command("build")(build_command)
    data_app.command("catalogue")(catalogue_command)


_register_build_commands()
