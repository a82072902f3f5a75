"""Import ``.aselmdb`` shards (ODAC25, OMol25, ...) into a dataset store: Ray-sharded,
resumable, in bounded memory, with the paper's selection rules.

This is ``farfield data import --format aselmdb``. The source files are cut into chunks of
``chunk_rows`` rows; each chunk is read and validated by one Ray task
(:func:`read_chunk`, one CPU, one thread), which writes into ``<out>.import/``:

- ``frames/chunk-NNNNN.extxyz``: every valid record of the chunk in the store's lossless
  format (:func:`~farfield.data.extxyz.format_frame`);
- ``meta/chunk-NNNNN.parquet``: one row per valid record: the index columns of the store,
  the columns the selection rules read (:data:`~farfield.data.selection.META_COLUMNS`),
  and where the record is (source file, row id, byte offset and length in the frames file);
- ``problems/chunk-NNNNN.jsonl``: one ``{"file", "row", "message"}`` per problem;
- ``done/chunk-NNNNN.json``: the chunk's counts, wall and CPU seconds, worker pid and peak
  memory (MB), and for a file's first chunk the file's sha256 (recorded in the manifest); written
  last, it marks the chunk finished.

``plan.json`` records the inputs (path, size, modification time, rows) and the read options.
Running the same command again resumes: finished chunks are skipped; a work directory made
with other inputs or read options is refused with a message. The selection rules, the
label method, ``--skip-invalid`` and the shard size are not part of the plan, so another
selection of the same source re-reads nothing.

Once every chunk is read, the driver holds only the metadata table (never the frames):
a structure_id seen twice is a problem of its second occurrence (as in
:mod:`farfield.data.importing`); the rules of :mod:`farfield.data.selection` pick the
structures; the store's shards are then cut from the frames files by byte range, packed by
parent like :func:`~farfield.data.store.write_store` packs them
(:mod:`farfield.data.chunked_store`), so the store is identical to the one ``write_store``
would write from the same records. Memory: one chunk per worker,
one store shard plus the metadata in the driver. The work directory is removed after a
successful import unless ``keep_work``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from farfield.data.extxyz import format_frame
from farfield.data.importers.aselmdb import (
    AselmdbOptions,
    RowProblem,
    check_key_map,
    count_rows,
    list_aselmdb,
    read_rows,
)
from farfield.data.label_shards import write_text_atomic
from farfield.data.labelling import THREAD_VARIABLES
from farfield.data.ray_runtime import map_shards
from farfield.data.importing import file_sha256
from farfield.data.records import STRUCTURE_ID
from farfield.data.selection import (
    META_COLUMNS,
    SelectionRules,
    excluded_table,
    frame_metadata,
    select,
)
from farfield.data.chunked_store import check_out, write_store_from_chunks
from farfield.data.store import INDEX_COLUMNS, DatasetStore, _index_row

__all__ = ["DEFAULT_CHUNK_ROWS", "REJECTS_FILE", "AselmdbImport", "import_aselmdb",
           "read_chunk", "work_dir_of"]

#: Rows per Ray task: a few seconds of work, a few MB of memory for MOF-sized frames.
DEFAULT_CHUNK_ROWS = 2000
REJECTS_FILE = "rejects.jsonl"
PLAN = "plan.json"
FRAMES, META, PROBLEMS, DONE = "frames", "meta", "problems", "done"
#: Bump when what a chunk writes changes: older work directories are then refused.
CHUNK_FORMAT = 1
#: Columns of meta/*.parquet beyond the store index and META_COLUMNS.
_PLACE_COLUMNS = ("file", "row", "chunk", "offset", "length")


def work_dir_of(out: str | Path) -> Path:
    """``<out>.import``: where an import into store ``out`` keeps its plan and chunks."""
    out = Path(out)
    return out.parent / f"{out.name}.import"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024



def read_chunk(work_dir: str, chunk: dict, options: dict, key_map: dict | None,
               require_forces: bool) -> dict:
    """Read and validate one chunk (``{"name", "file", "start", "stop"}``: positions in the
    file's row ids) and write its frames, metadata, problems and done marker (module
    docstring). Returns the chunk's summary. Pure function: runs in a Ray task or here."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    work, name, file = Path(work_dir), chunk["name"], chunk["file"]
    row_ids = count_rows(file)[chunk["start"]:chunk["stop"]]
    frames_tmp = work / FRAMES / f".{name}.extxyz.tmp-{os.getpid()}"
    rows, problems, left_out, offset = [], [], 0, 0
    with open(frames_tmp, "wb") as handle:
        for row_id, item in read_rows(file, row_ids, AselmdbOptions(**options), key_map=key_map,
                                      require_forces=require_forces):
            if item is None:
                left_out += 1
                continue
            if isinstance(item, list):
                problems += item
                continue
            try:
                text = format_frame(item).encode("utf-8")
            except ValueError as err:  # a row key that extxyz cannot hold losslessly
                problems.append(RowProblem(file, row_id, f"cannot be stored: {err}"))
                continue
            handle.write(text)
            rows.append({**_index_row(item, "", 0), **frame_metadata(item), "file": file,
                         "row": row_id, "chunk": name, "offset": offset, "length": len(text)})
            offset += len(text)
    columns = list(dict.fromkeys([*INDEX_COLUMNS, *META_COLUMNS, *_PLACE_COLUMNS]))
    meta_tmp = work / META / f".{name}.parquet.tmp-{os.getpid()}"
    pd.DataFrame(rows, columns=columns).to_parquet(meta_tmp, index=False)
    write_text_atomic(work / PROBLEMS / f"{name}.jsonl",
                      "".join(json.dumps(p.to_dict()) + "\n" for p in problems))
    os.replace(frames_tmp, work / FRAMES / f"{name}.extxyz")
    os.replace(meta_tmp, work / META / f"{name}.parquet")
    summary = {"chunk": name, "file": file, "n_rows": len(row_ids), "n_valid": len(rows),
               "n_problem_rows": len({p.frame for p in problems}), "n_left_out": left_out,
               "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
               "pid": os.getpid(), "peak_rss_mb": round(_peak_rss_mb(), 1)}
    if chunk["start"] == 0:  # each file's first chunk also checksums the file
        summary["sha256"] = file_sha256(file)
    write_text_atomic(work / DONE / f"{name}.json", json.dumps(summary) + "\n")
    return summary


@dataclass
class AselmdbImport:
    """Outcome of :func:`import_aselmdb`; ``store`` is None when problems stopped it.

    ``problems``: every problem (file-level, row-level, duplicate ids); ``selection``: the
    selection's counts (valid, kept, excluded per rule); ``reading``: chunks read now and
    before, rows, rows left out by ``parent_pattern``, seconds, and per worker process the
    chunks, rows, CPU seconds and peak resident memory (MB) of what it read in this call.
    """

    files: list[str]
    problems: list[RowProblem]
    store: DatasetStore | None = None
    selection: dict | None = None
    reading: dict = field(default_factory=dict)
    work_dir: Path | None = None


def _plan(files: list[Path], options: AselmdbOptions, key_map: dict, require_forces: bool,
          chunk_rows: int) -> tuple[dict, list[RowProblem]]:
    """Chunks of every readable file, the key of the plan, and file-level problems."""
    inputs, chunks, problems = [], [], []
    for path in files:
        try:
            n_rows = len(count_rows(path))
        except ValueError as err:
            problems.append(RowProblem(str(path), None, str(err).removeprefix(f"{path}: ")))
            continue
        stat = path.stat()
        inputs.append({"file": str(path), "path": str(path.resolve()), "bytes": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns, "n_rows": n_rows})
        for start in range(0, n_rows, chunk_rows):
            chunks.append({"name": f"chunk-{len(chunks):05d}", "file": str(path),
                           "start": start, "stop": min(start + chunk_rows, n_rows)})
    settings = {"chunk_format": CHUNK_FORMAT, "options": options.model_dump(),
                "key_map": key_map, "require_forces": require_forces, "chunk_rows": chunk_rows,
                "inputs": [{k: v for k, v in i.items() if k != "file"} for i in inputs]}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return {"key": key, "settings": settings, "inputs": inputs, "chunks": chunks}, problems


def _prepare_work(work: Path, plan: dict) -> list[dict]:
    """Create or check the work directory; the chunks not finished yet."""
    existing = work / PLAN
    if existing.is_file():
        old = json.loads(existing.read_text())
        if old.get("key") != plan["key"]:
            changed = sorted(k for k in plan["settings"]
                             if old.get("settings", {}).get(k) != plan["settings"][k])
            raise ValueError(f"{work} holds an import started with other inputs or read options "
                             f"(changed: {', '.join(changed) or 'format'}); run the same command "
                             f"as before to resume it, or delete {work} to start again")
    for sub in (FRAMES, META, PROBLEMS, DONE):
        (work / sub).mkdir(parents=True, exist_ok=True)
        for stale in (work / sub).glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)
    if not existing.is_file():
        write_text_atomic(existing, json.dumps(plan, indent=1) + "\n")
    return [c for c in plan["chunks"] if not (work / DONE / f"{c['name']}.json").is_file()]


def _read_pending(work: Path, todo: list[dict], args: tuple, n_workers: int,
                  address: str | None, progress: bool) -> dict:
    """Run :func:`read_chunk` on every pending chunk (Ray tasks, or here when n_workers=0)."""
    bar = tqdm(total=sum(c["stop"] - c["start"] for c in todo), unit="row", disable=not progress,
               desc="reading .aselmdb", smoothing=0.05)
    done: list[dict] = []

    def record(summary: dict) -> None:
        done.append(summary)
        bar.update(summary["n_rows"])
        bar.set_postfix(valid=sum(s["n_valid"] for s in done),
                        problems=sum(s["n_problem_rows"] for s in done), refresh=False)

    t0 = time.perf_counter()
    read = functools.partial(_read_one, str(work), args)
    try:  # a few chunks queued, never all: bounded
        for _, summary in map_shards(read, todo, n_workers=n_workers if todo else 0, address=address,
                                     max_in_flight=2 * n_workers, max_retries=2,
                                     env_vars=dict.fromkeys(THREAD_VARIABLES, "1")):
            record(summary)
    finally:
        bar.close()
    workers: dict[int, dict] = {}
    for s in done:
        entry = workers.setdefault(s["pid"], {"pid": s["pid"], "chunks": 0, "rows": 0,
                                              "cpu_s": 0.0, "peak_rss_mb": 0.0})
        entry["chunks"] += 1
        entry["rows"] += s["n_rows"]
        entry["cpu_s"] = round(entry["cpu_s"] + s["cpu_s"], 2)
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], s["peak_rss_mb"])
    return {"chunks_read": len(done), "rows_read": sum(s["n_rows"] for s in done),
            "read_s": round(time.perf_counter() - t0, 3), "workers": list(workers.values())}


def _read_one(work_dir: str, args: tuple, chunk: dict) -> dict:
    """Body of a chunk's task: :func:`read_chunk` with the import's fixed arguments."""
    return read_chunk(work_dir, chunk, *args)


def _gather(work: Path, plan: dict) -> tuple[pd.DataFrame, list[RowProblem], dict]:
    """Metadata of every valid record (plan order), the chunks' problems, and totals."""
    metas, problems, totals = [], [], {"n_rows": 0, "n_left_out": 0, "sha256": {}}
    for chunk in plan["chunks"]:
        name = chunk["name"]
        summary = json.loads((work / DONE / f"{name}.json").read_text())
        if "sha256" in summary:
            totals["sha256"][chunk["file"]] = summary["sha256"]
        totals["n_rows"] += summary["n_rows"]
        totals["n_left_out"] += summary["n_left_out"]
        metas.append(pd.read_parquet(work / META / f"{name}.parquet"))
        for line in (work / PROBLEMS / f"{name}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            problems.append(RowProblem(entry["file"], entry["row"], entry["message"]))
    filled = [m for m in metas if len(m)]  # empty tables would turn bool columns into object
    meta = pd.concat(filled, ignore_index=True) if filled else pd.DataFrame()
    return meta, problems, totals


def _reject_duplicates(meta: pd.DataFrame) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Drop second and later occurrences of a structure_id, each as a problem."""
    repeated = meta.duplicated(STRUCTURE_ID, keep="first")
    if not repeated.any():
        return meta, []
    first = meta[~repeated].set_index(STRUCTURE_ID)
    problems = [RowProblem.duplicate(row.file, int(row.row), row.structure_id, first.at[row.structure_id, "file"],
                                     int(first.at[row.structure_id, "row"]))
                for row in meta[repeated].itertuples()]
    return meta[~repeated].reset_index(drop=True), problems


def import_aselmdb(paths: list[str | Path], out: str | Path, *,
                   options: AselmdbOptions | None = None, rules: SelectionRules | None = None,
                   key_map: dict[str, str] | None = None, require_forces: bool = True,
                   skip_invalid: bool = False, label_method: str = "unspecified",
                   shard_size: int = 256, overwrite: bool = False, n_workers: int = 2,
                   address: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   progress: bool = True, keep_work: bool = False) -> AselmdbImport:
    """Read, validate and select the records of ``.aselmdb`` files or folders ``paths`` and
    write the kept ones as a store at ``out`` (module docstring for the steps and files).

    ``options``: ids and parents (:class:`AselmdbOptions`); ``rules``: the selection
    (:class:`SelectionRules`, recorded in the manifest); ``key_map``: record key → row key;
    ``require_forces``: False accepts energy-only rows. Without ``skip_invalid`` any problem
    means nothing is written (the report's ``store`` is None; the chunks stay for a resume).
    ``n_workers``: Ray tasks at once (0: read here); ``address``: a running Ray cluster.
    Raises FileNotFoundError / ValueError (one line, naming the path) for unusable
    arguments, no valid record, or a selection that keeps nothing.
    """
    out = Path(out)
    options, rules, key_map = options or AselmdbOptions(), rules or SelectionRules(), key_map or {}
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    check_key_map(key_map)
    check_out(out, overwrite)
    files = list_aselmdb(paths)
    plan, file_problems = _plan(files, options, key_map, require_forces, chunk_rows)
    work = work_dir_of(out)
    work.mkdir(parents=True, exist_ok=True)
    todo = _prepare_work(work, plan)
    reading = {"chunks": len(plan["chunks"]), "chunks_done_before": len(plan["chunks"]) - len(todo),
               **_read_pending(work, todo, (options.model_dump(), key_map, require_forces),
                               n_workers, address, progress)}
    meta, problems, totals = _gather(work, plan)
    reading.update({k: v for k, v in totals.items() if k != "sha256"})
    meta, duplicates = _reject_duplicates(meta) if len(meta) else (meta, [])
    problems = file_problems + problems + duplicates
    report = AselmdbImport([str(f) for f in files], problems, reading=reading, work_dir=work)
    if problems and not skip_invalid:
        return report
    if not len(meta):
        raise ValueError(f"no valid frames to import from {len(files)} file(s) "
                         f"({totals['n_rows']} rows, {totals['n_left_out']} left out by "
                         f"--parent-pattern, {len(problems)} problem(s))")
    selection = select(meta, rules)
    report.selection = selection.counts()
    if not selection.kept.any():
        raise ValueError(f"the selection ({rules.options()}) keeps none of the {len(meta)} "
                         f"valid structure(s): {report.selection['excluded']}")
    kept = meta[selection.kept]
    inputs = [{"file": Path(i["file"]).name, "sha256": totals["sha256"].get(i["file"]),
               "bytes": i["bytes"], "n_rows": i["n_rows"],
               "n_valid": int((meta["file"] == i["file"]).sum())} for i in plan["inputs"]]
    provenance = {"format": "aselmdb", "inputs": inputs, "key_map": key_map,
                  "forces_required": require_forces, "aselmdb": options.model_dump(),
                  "n_rejected_problems": len(problems),
                  "n_left_out_by_parent_pattern": totals["n_left_out"],
                  "selection": selection.provenance(),
                  "import": {"chunk_rows": chunk_rows, "n_chunks": len(plan["chunks"]),
                             "n_workers": n_workers}}
    extra = {REJECTS_FILE: "".join(json.dumps(p.to_dict()) + "\n" for p in problems)} \
        if skip_invalid else {}
    t0 = time.perf_counter()
    report.store = write_store_from_chunks(
        work / FRAMES, kept, out, label_method=label_method, shard_size=shard_size,
        sources=sorted({Path(f).name for f in kept["file"]}), provenance=provenance,
        require_forces=require_forces, extra_files=extra,
        excluded=excluded_table(meta, selection, ("file", "row")) if rules.active else None)
    reading["write_s"] = round(time.perf_counter() - t0, 3)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
        report.work_dir = None
    return report
