"""Label planned shards of structures with GFN-xTB in Ray actors, resumably.

Planned frames are labelled as they are, except two kinds of seed frame that the worker
expands: ``md_seed`` (a short Langevin run, :func:`farfield.data.sampling.md_snapshots`)
and ``relax_seed`` (a labelled relaxation plus thermal frames,
:mod:`farfield.data.relaxation`).

A build's work directory holds ``inputs/shard-NNNNN.extxyz`` (unlabelled frames, made
once by the planner). :func:`label_shards` hands each shard whose result is missing
to a pool of :class:`ShardLabeller` actors. Each actor holds one method setting and
runs tblite with **one OpenMP thread** (``OMP_NUM_THREADS=1``), and, when Debian's
``libopenblas0-pthread`` is installed, with OpenBLAS preloaded (``LD_PRELOAD``) instead
of the slow reference BLAS bundled in the tblite wheel (see :func:`openblas_preload`).

Per shard, the actor writes ``failures/shard-NNNNN.jsonl`` (one line per structure
that could not be labelled: SCF not converged, tblite error, MD failure, with the
reason) and then ``labelled/shard-NNNNN.extxyz`` (lossless, :func:`format_frame`),
each to a temporary name renamed into place, the labelled file last: it is the
shard's "done" marker. A shard is therefore either absent or complete, so a run
interrupted anywhere (worker killed, driver stopped, machine down) is resumed by
running again: finished shards are skipped and each structure ends up labelled exactly
once. Actors restart and retry their task when their process dies.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ase import Atoms
from tqdm import tqdm

from farfield.data.extxyz import format_frame
from farfield.data.labelling import THREAD_VARIABLES, XtbSettings, label_gfn_xtb
from farfield.data.readers import iter_frames
from farfield.data.records import STRUCTURE_ID
from farfield.data.relaxation import LABELS_REUSED, RELAX_SEED, relaxation_frames
from farfield.data.sampling import CONFIG_KIND, SamplingSettings, md_snapshots

__all__ = ["FAILURES", "INPUTS", "LABELLED", "ShardLabeller", "label_shards",
           "openblas_preload", "pending_shards", "read_shard", "write_text_atomic"]

INPUTS, LABELLED, FAILURES = "inputs", "labelled", "failures"
#: Written when the actors are up: their pid, BLAS and thread setting (for monitoring).
WORKERS = "workers.json"
#: ``config_kind`` of a planned frame that stands for "run MD from here" (not labelled itself).
MD_SEED = "md_seed"
#: Where Debian/Ubuntu's ``libopenblas0-pthread`` puts the library (``apt install
#: libopenblas0-pthread``); ``FARFIELD_OPENBLAS`` overrides, ``FARFIELD_OPENBLAS=none`` disables.
OPENBLAS_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
                       "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
                       "/usr/lib64/libopenblasp.so.0", "/usr/lib64/libopenblas.so.0")


def openblas_preload() -> str | None:
    """Path of an optimised OpenBLAS to preload into labelling workers, or None."""
    override = os.environ.get("FARFIELD_OPENBLAS")
    if override:
        return None if override.lower() == "none" else override
    return next((p for p in OPENBLAS_CANDIDATES if Path(p).is_file()), None)


def worker_env() -> dict[str, str]:
    """Environment for labelling worker processes: one thread each, OpenBLAS if found."""
    env = dict.fromkeys(THREAD_VARIABLES, "1")
    blas = openblas_preload()
    if blas:
        env["LD_PRELOAD"] = blas
    return env


def read_shard(path: Path) -> list[Atoms]:
    """Frames of a shard file written by :func:`format_frame` (raises on a bad frame)."""
    frames = []
    for frame, item in iter_frames(path, format="extxyz"):
        if not isinstance(item, Atoms):
            raise ValueError(f"{path}: frame {frame}: {item.message}")
        frames.append(item)
    return frames


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name next to ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _blas_in_use() -> str:
    """Which BLAS this process has mapped: ``openblas`` or ``bundled`` (tblite's wheel)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return "openblas" if "libopenblas" in maps else "bundled"


class ShardLabeller:
    """Ray actor body: label one planned shard at a time (see module docstring)."""

    def __init__(self, work_dir: str, xtb: dict | None = None, sampling: dict | None = None, seed: int = 0):
        self.work_dir = Path(work_dir)
        self.xtb = XtbSettings.model_validate(xtb or {})
        self.sampling = SamplingSettings.model_validate(sampling or {})
        self.seed = seed

    def info(self) -> dict:
        """Process id, BLAS in use and thread setting of this worker."""
        return {"pid": os.getpid(), "blas": _blas_in_use(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}

    def _label(self, atoms: Atoms) -> Atoms:
        total_charge = float(atoms.info.get("total_charge", 0.0))
        return label_gfn_xtb(atoms, self.xtb, total_charge)

    def _expand_md(self, seed_frame: Atoms) -> list[Atoms]:
        from tblite.ase import TBLite

        calc = TBLite(**self.xtb.tblite_options())
        first = int(seed_frame.info.pop("md_first_index"))
        seed_frame.info[CONFIG_KIND] = "md"
        return md_snapshots(seed_frame, calc, self.sampling, self.seed, first)

    def label(self, shard: str) -> dict:
        """Label ``inputs/<shard>``; write failures then results; return a summary."""
        t0 = time.perf_counter()
        inputs = read_shard(self.work_dir / INPUTS / shard)
        done, failures, n_atoms = [], [], 0
        for atoms in inputs:
            sid = atoms.info[STRUCTURE_ID]
            if atoms.info.get(CONFIG_KIND) != RELAX_SEED and atoms.info.pop(LABELS_REUSED, False):
                done.append(atoms)  # labelled by an earlier build (--reuse-labels): kept as is
                n_atoms += len(atoms)
                continue
            if atoms.info.get(CONFIG_KIND) == RELAX_SEED:
                try:
                    frames, failed = relaxation_frames(atoms, self._label, self.sampling, self.seed)
                except Exception as exc:  # the optimiser itself failed: record, keep going
                    frames, failed = [], [{"structure_id": sid, "reason": "relaxation_failed",
                                           "detail": f"{type(exc).__name__}: {exc}"}]
                done += frames
                failures += failed
                n_atoms += len(atoms) * len(frames)
                continue
            try:
                todo = self._expand_md(atoms) if atoms.info.get(CONFIG_KIND) == MD_SEED else [atoms]
            except Exception as exc:  # MD blew up: record it, keep the shard going
                failures.append({"structure_id": sid, "reason": "md_failed",
                                 "detail": f"{type(exc).__name__}: {exc}"})
                continue
            for frame in todo:
                try:
                    done.append(self._label(frame))
                    n_atoms += len(frame)
                except ValueError as exc:
                    reason = "scf_not_converged" if "converge" in str(exc).lower() else "tblite_error"
                    failures.append({"structure_id": frame.info[STRUCTURE_ID], "reason": reason,
                                     "detail": str(exc)})
                except Exception as exc:
                    failures.append({"structure_id": frame.info[STRUCTURE_ID],
                                     "reason": "exception",
                                     "detail": "".join(traceback.format_exception_only(exc)).strip()})
        write_text_atomic(self.work_dir / FAILURES / shard.replace(".extxyz", ".jsonl"),
                      "".join(json.dumps(f) + "\n" for f in failures))
        write_text_atomic(self.work_dir / LABELLED / shard, "".join(format_frame(a) for a in done))
        return {"shard": shard, "n_inputs": len(inputs), "n_labelled": len(done),
                "n_failed": len(failures), "n_atoms": n_atoms,
                "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def pending_shards(work_dir: Path) -> list[str]:
    """Planned shards without a labelled result, in name order; stale temp files removed."""
    for sub in (LABELLED, FAILURES):
        (work_dir / sub).mkdir(parents=True, exist_ok=True)
        for stale in (work_dir / sub).glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
    planned = sorted(p.name for p in (work_dir / INPUTS).glob("shard-*.extxyz"))
    return [s for s in planned if not (work_dir / LABELLED / s).is_file()]


def label_shards(work_dir: str | Path, *, xtb: XtbSettings, n_workers: int = 2,
                 address: str | None = None, sampling: SamplingSettings | None = None, seed: int = 0,
                 shard_sizes: dict[str, int] | None = None,
                 shard_costs: dict[str, float] | None = None, progress: bool = True) -> dict:
    """Label every pending shard of ``work_dir`` with ``n_workers`` Ray actors.

    ``shard_sizes``: structures per shard (for the progress bar); ``shard_costs``: relative
    cost estimates, costliest shards go first (shorter tail); ``n_workers=0`` labels
    in this process (threads as the caller set them). Returns a summary: shards done
    now, structures and atoms labelled, failures, wall seconds, per-worker BLAS.
    """
    work_dir = Path(work_dir)
    todo = pending_shards(work_dir)
    if shard_costs:
        todo.sort(key=lambda s: -shard_costs.get(s, 0))
    sizes = shard_sizes or {}
    summary = {"shards_done_before": 0, "shards_labelled": 0, "structures": 0, "atoms": 0,
               "failed": 0, "wall_s": 0.0, "workers": []}
    summary["shards_done_before"] = len(list((work_dir / INPUTS).glob("shard-*.extxyz"))) - len(todo)
    if not todo:
        return summary
    args = (str(work_dir), xtb.model_dump(), (sampling or SamplingSettings()).model_dump(), seed)
    bar = tqdm(total=sum(sizes.get(s, 0) for s in todo) or len(todo), disable=not progress,
               unit="structure" if sizes else "shard", desc=f"labelling ({xtb.method})",
               smoothing=0.05)
    t0 = time.perf_counter()

    def record(result: dict) -> None:
        summary["shards_labelled"] += 1
        summary["structures"] += result["n_labelled"]
        summary["atoms"] += result["n_atoms"]
        summary["failed"] += result["n_failed"]
        bar.update(sizes.get(result["shard"], 1) if sizes else 1)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(atoms_per_s=f"{summary['atoms'] / elapsed:.0f}",
                        failed=summary["failed"], refresh=False)

    try:
        if n_workers == 0:
            labeller = ShardLabeller(*args)
            summary["workers"].append(labeller.info())
            for shard in todo:
                record(labeller.label(shard))
        else:
            _label_on_ray(todo, args, n_workers, address, record, summary)
    finally:
        bar.close()
        summary["wall_s"] = time.perf_counter() - t0
    return summary


def _label_on_ray(todo: Sequence[str], args: tuple, n_workers: int, address: str | None,
                  record, summary: dict) -> None:
    import ray

    from farfield.data.ray_runtime import ray_running

    with ray_running(n_workers, address):
        actor_cls = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(ShardLabeller)
        options = {"runtime_env": {"env_vars": worker_env()}}
        actors = [actor_cls.options(**options).remote(*args)
                  for _ in range(min(n_workers, len(todo)))]
        summary["workers"] = ray.get([a.info.remote() for a in actors])
        write_text_atomic(Path(args[0]) / WORKERS, json.dumps(summary["workers"]) + "\n")
        queue = list(todo)
        running = {}
        for actor in actors:
            if queue:
                running[actor.label.remote(queue.pop(0))] = actor
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            actor = running.pop(done[0])
            record(ray.get(done[0]))
            if queue:
                running[actor.label.remote(queue.pop(0))] = actor
        for actor in actors:
            ray.kill(actor)
