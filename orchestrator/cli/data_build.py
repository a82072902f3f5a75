"""``farfield data build`` and ``farfield data catalogue``: a labelled MOF dataset from
CoRE MOF (or a folder of CIFs) with GFN-xTB under Ray.

Argument parsing and printing only; the work is in :mod:`farfield.data.build`,
:mod:`farfield.data.catalogue` and :mod:`farfield.data.label_shards`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from farfield.data.build import METHOD_NAMES, BuildSettings, build_dataset, export_extxyz_xz
from farfield.data.catalogue import build_catalogue
from farfield.data.coremof import REJECTION_REASONS, SUBSETS
from farfield.data.label_shards import openblas_preload
from farfield.data.sampling import SamplingSettings
from farfield.orchestrator.cli.errors import fail

__all__ = ["build_command", "catalogue_command"]

SourceOption = Annotated[Optional[list[str]], typer.Option(
    "--source", help="coremof (all of 2014, 2019-ASR, 2019-FSR), one subset name, or a folder "
                     "of CIF files. Repeatable.")]
WorkersOption = Annotated[int, typer.Option("--workers", min=0,
                                            help="Ray workers (CPUs); 0 = no Ray, this process.")]
AddressOption = Annotated[Optional[str], typer.Option(
    "--address", help="Ray cluster to run on (e.g. auto); default: a local Ray.")]
CacheOption = Annotated[Optional[Path], typer.Option(
    "--cache-dir", help="Where the parsed catalogue is cached (default $FARFIELD_CACHE or "
                        "~/.cache/farfield).")]


def _sources(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ["coremof"]:
        if value == "coremof":
            out += list(SUBSETS)
        elif value in SUBSETS or Path(value).is_dir():
            out.append(value)
        else:
            raise fail(f"--source {value!r}: expected coremof, one of {', '.join(SUBSETS)}, "
                        f"or an existing folder of CIF files")
    return list(dict.fromkeys(out))


def catalogue_command(source: SourceOption = None, workers: WorkersOption = 2,
                      address: AddressOption = None, cache_dir: CacheOption = None,
                      refresh: Annotated[bool, typer.Option(
                          "--refresh", help="Re-parse even if a cached catalogue exists.")] = False,
                      csv: Annotated[Optional[Path], typer.Option(
                          "--csv", help="Also write the catalogue (one row per CIF) here.")] = None,
                      ) -> None:
    """Parse and clean every CIF of the sources once (Ray, cached); print why CIFs are rejected.

    Example:

        farfield data catalogue --source coremof --workers 2 --csv catalogue.csv
    """
    try:
        table = build_catalogue(_sources(source), cache_dir=cache_dir, n_workers=workers,
                                address=address, refresh=refresh)
    except (OSError, ValueError) as err:
        raise fail(str(err)) from err
    summary = Table(title=f"{len(table)} CIFs")
    for column in ("source", "usable", "rejected", "median atoms (usable)"):
        summary.add_column(column, justify="left" if column == "source" else "right")
    for src, group in table.groupby("source", sort=False):
        ok = group[group["status"] == "ok"]
        summary.add_row(src, str(len(ok)), str(len(group) - len(ok)),
                        f"{ok['n_atoms'].median():.0f}" if len(ok) else "-")
    reasons = Table(title="Rejections")
    for column in ("reason", "CIFs", "meaning"):
        reasons.add_column(column, justify="right" if column == "CIFs" else "left")
    for reason, count in table.loc[table["status"] != "ok", "reason"].value_counts().items():
        reasons.add_row(reason, str(count), REJECTION_REASONS.get(reason, ""))
    console = Console()
    console.print(summary)
    console.print(reasons)
    if csv is not None:
        table.to_csv(csv, index=False)
        typer.echo(f"catalogue written to {csv}")


def build_command(
    out: Annotated[Path, typer.Option("--out", help="Dataset store to create (work files go "
                                                    "to OUT.build/; re-running resumes).",
                                      show_default=False)],
    source: SourceOption = None,
    parents: Annotated[int, typer.Option("--parents", min=1, help="Parent MOFs.")] = 300,
    configs_per_parent: Annotated[int, typer.Option(
        "--configs-per-parent", min=1, help="Frames per parent: input geometry, then rattled, "
                                            "isotropically and shear-strained copies.")] = 4,
    min_atoms: Annotated[int, typer.Option("--min-atoms", min=1)] = 10,
    max_atoms: Annotated[int, typer.Option("--max-atoms", min=1)] = 250,
    size_bins: Annotated[int, typer.Option("--size-bins", min=1,
                                           help="Log-spaced atom-count bins.")] = 6,
    size_exponent: Annotated[float, typer.Option(
        "--size-exponent", help="Bin quotas ∝ size^-x: larger x, fewer large parents.")] = 1.0,
    max_per_metal: Annotated[int, typer.Option("--max-per-metal", min=1,
                                               help="Parents per metal family.")] = 12,
    rattle: Annotated[float, typer.Option("--rattle", help="Gaussian σ on positions, Å.")] = 0.05,
    isotropic_strain: Annotated[float, typer.Option("--isotropic-strain")] = 0.03,
    shear_strain: Annotated[float, typer.Option("--shear-strain")] = 0.02,
    md_snapshots: Annotated[int, typer.Option(
        "--md-snapshots", min=0, help="Extra frames per parent from a short GFN-xTB "
                                      "Langevin run (0 = none).")] = 0,
    md_temperature: Annotated[float, typer.Option("--md-temperature", help="K.")] = 500.0,
    relax_steps: Annotated[int, typer.Option(
        "--relax-steps", min=0, help="Near-equilibrium frames: labelled GFN-xTB optimiser steps "
                                     "after the input geometry (replaces --configs-per-parent).")] = 0,
    thermal: Annotated[int, typer.Option(
        "--thermal", min=0, help="Frames around the relaxation's end: ±--thermal-strain "
                                 "isotropic strain, then --thermal-sigma Å displacements.")] = 0,
    thermal_sigma: Annotated[float, typer.Option("--thermal-sigma", help="Å.")] = 0.02,
    thermal_strain: Annotated[float, typer.Option("--thermal-strain")] = 0.01,
    large_atoms: Annotated[Optional[int], typer.Option(
        "--large-atoms", min=1, help="Parents above this many atoms are 'large' "
                                     "(own quota and frame counts).")] = None,
    large_parents: Annotated[int, typer.Option(
        "--large-parents", min=0, help="How many of --parents are large.")] = 0,
    large_relax_steps: Annotated[int, typer.Option("--large-relax-steps", min=0)] = 0,
    large_thermal: Annotated[int, typer.Option("--large-thermal", min=0)] = 0,
    min_element_parents: Annotated[int, typer.Option(
        "--min-element-parents", min=0, help="Every element in at least this many parents.")] = 0,
    max_label_force: Annotated[Optional[float], typer.Option(
        "--max-label-force", help="Drop frames with an atomic force above this, eV/Å.")] = None,
    max_input_force: Annotated[float, typer.Option(
        "--max-input-force", help="Drop a parent whose input geometry has an atomic force "
                                  "above this, eV/Å (a broken structure).")] = 30.0,
    min_configs: Annotated[int, typer.Option(
        "--min-configs", min=1, help="Drop parents with fewer labelled frames.")] = 3,
    spare_fraction: Annotated[float, typer.Option(
        "--spare-fraction", help="Extra parents planned to replace failures.")] = 0.05,
    reuse_labels: Annotated[Optional[list[Path]], typer.Option(
        "--reuse-labels", help="Labels of an earlier build (repeatable; the first source of a parent "
                               "wins), an extxyz or its <out>.build/labelled "
                               "folder: a parent's whole labelled relaxation is reused when its input "
                               "geometry and frame kinds match (same sampling settings assumed), else "
                               "an identical input geometry's single point.")] = None,
    method: Annotated[str, typer.Option("--method", help="gfn1 or gfn2.")] = "gfn1",
    total_charge: Annotated[float, typer.Option("--total-charge", help="e.")] = 0.0,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1,
                                            help="Structures per labelling shard.")] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: WorkersOption = 2,
    address: AddressOption = None,
    cache_dir: CacheOption = None,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Also write the store as one .extxyz.xz file (+ .json manifest).")]
    = None,
) -> None:
    """Pick diverse CoRE MOF parents, sample configurations and label them with GFN-xTB.

    Parses and cleans every CIF once (cached catalogue), picks parents spread over
    size, metals and chemistry, makes the configurations and labels them with tblite
    in Ray workers (one thread each; OpenBLAS preloaded when installed). Interrupted
    runs resume where they stopped when run again with the same arguments.

    Example:

        farfield data build --source coremof --max-atoms 200 --parents 400 \\
            --configs-per-parent 4 --method gfn1 --out stores/coremof-gfn1
    """
    if method.lower() not in METHOD_NAMES:
        raise fail(f"--method {method!r}: expected one of {', '.join(METHOD_NAMES)}")
    try:
        settings = BuildSettings(
            sources=_sources(source), parents=parents, min_atoms=min_atoms, max_atoms=max_atoms,
            size_bins=size_bins, size_exponent=size_exponent, max_per_metal=max_per_metal,
            sampling=SamplingSettings(configs_per_parent=configs_per_parent, rattle_sigma=rattle,
                                      isotropic_strain=isotropic_strain,
                                      shear_strain=shear_strain, md_snapshots=md_snapshots,
                                      md_temperature=md_temperature, relax_steps=relax_steps,
                                      thermal_snapshots=thermal, thermal_sigma=thermal_sigma,
                                      thermal_strain=thermal_strain, large_atoms=large_atoms,
                                      large_relax_steps=large_relax_steps,
                                      large_thermal_snapshots=large_thermal),
            large_parents=large_parents, min_element_parents=min_element_parents,
            max_label_force=max_label_force, min_configs=min_configs, max_force=max_input_force,
            spare_fraction=spare_fraction,
            method=METHOD_NAMES[method.lower()], total_charge=total_charge,
            shard_size=shard_size, seed=seed)
    except ValidationError as err:
        first = err.errors()[0]
        raise fail(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from err
    if min_atoms > max_atoms:
        raise fail(f"--min-atoms {min_atoms} is larger than --max-atoms {max_atoms}")
    blas = openblas_preload()
    fallback = "tblite's bundled reference BLAS (slow: apt install libopenblas0-pthread)"
    typer.echo(f"labelling BLAS: {blas or fallback}")
    try:
        store, report = build_dataset(settings, out, n_workers=workers, address=address,
                                      cache_dir=cache_dir, reuse_labels=reuse_labels)
        if export is not None:
            manifest = export_extxyz_xz(store, export)
            typer.echo(f"exported {export} ({manifest['file']['bytes'] / 1e6:.2f} MB)")
    except KeyboardInterrupt:
        raise fail("interrupted; run the same command again to resume") from None
    except (OSError, ValueError) as err:
        raise fail(str(err)) from err
    lab = report["labelling"]
    rate = lab["atoms"] / lab["wall_s"] if lab["wall_s"] else 0.0
    typer.echo(f"{report['n_structures']} structures from {report['n_parents']} parents in "
               f"{store.path} ({report['n_failures']} failure(s) in failures.jsonl)")
    typer.echo(f"labelled now: {lab['structures']} structures, {lab['atoms']} atoms in "
               f"{lab['wall_s']:.0f} s ({rate:.1f} atoms/s); shards already done: "
               f"{lab['shards_done_before']}")
    typer.echo(f"content hash: {store.content_hash}")
    typer.echo(json.dumps({"workers": lab["workers"]}))
