"""Race farfield's MACE-style backbone against mace-torch per training step → JSON.

Two settings, measured in one run on the same batches of bundled MOF structures (energy +
forces loss, backward, Adam step):

* ``equal_hyperparameters``: both models get the same hyperparameters (channels, l_max =
  max_ell, hidden_l_max = max_L, correlation, layers, cutoff, Bessel functions, radial MLP,
  avg_num_neighbors, float32). farfield's element-dependent weights are low-rank
  (``n_element_features`` = 16), mace-torch's are one set per element, so farfield has fewer
  parameters.
* ``equal_parameters``: farfield's ``n_element_features`` raised until its parameter count is
  the closest to mace-torch's (everything else unchanged); mace-torch is the same model.

mace-torch pins an older e3nn, so it runs in its own environment, the one an external
mace-torch trial gets (``farfield.orchestrator.external``: Ray's ``runtime_env`` with
mace-torch and torch pinned like the project's); this script's worker runs there as a
subprocess and farfield never imports it. If mace-torch cannot be installed or run, the
JSON records why. The load average before and after is recorded: on a shared machine wall
times include the neighbours, single-thread CPU seconds do not.

    python benchmarks/mace_race.py --out benchmarks/results/mace_race.json

``ratio_farfield_over_mace`` < 1 means farfield is faster. Never asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: farfield's default rank of the element-dependent weights (the equal-hyperparameter setting).
DEFAULT_ELEMENT_FEATURES = 16


def _timed_steps(step, n_steps: int, warmup: int) -> dict:
    """Median wall seconds and median process CPU seconds per step (CPU time is robust
    to other processes sharing the machine; with ``threads`` > 1 it sums the threads)."""
    wall, cpu = [], []
    for k in range(warmup + n_steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if k >= warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    return {"seconds_per_step": median(wall), "cpu_seconds_per_step": median(cpu), "all_seconds": wall}


# --- mace-torch side (runs inside the mace venv; imports only mace, torch, ase) ----------


def _mace_worker(batches_path: Path, hp: dict) -> dict:
    import ase.io
    import numpy as np
    import torch
    from mace import data, modules, tools  # first: mace prepares e3nn 0.4's constant loading
    from mace.tools import torch_geometric

    from e3nn import o3

    torch.set_num_threads(hp["threads"])
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    frames = ase.io.read(batches_path, ":")
    z_table = tools.AtomicNumberTable(sorted({int(z) for a in frames for z in a.numbers}))
    hidden = " + ".join(f"{hp['channels']}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(hp["hidden_l_max"] + 1))
    model = modules.MACE(
        r_max=hp["cutoff"], num_bessel=hp["n_radial"], num_polynomial_cutoff=6, max_ell=hp["l_max"],
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=hp["layers"], num_elements=len(z_table), hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(z_table)),
        avg_num_neighbors=hp["avg_neighbors"], atomic_numbers=z_table.zs, correlation=hp["correlation"],
        gate=torch.nn.functional.silu, radial_MLP=hp["radial_mlp"],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    results = []
    for batch_id in sorted({a.info["race_batch"] for a in frames}):
        members = [a for a in frames if a.info["race_batch"] == batch_id]
        configs = [data.config_from_atoms(a) for a in members]
        loader = torch_geometric.dataloader.DataLoader(
            [data.AtomicData.from_config(c, z_table=z_table, cutoff=hp["cutoff"]) for c in configs],
            batch_size=len(configs), shuffle=False,
        )
        batch = next(iter(loader)).to_dict()
        energy_ref = torch.tensor([a.info["race_energy"] for a in members], dtype=torch.float32)
        forces_ref = torch.tensor(np.concatenate([a.arrays["race_forces"] for a in members]), dtype=torch.float32)
        n_atoms = torch.tensor([len(a) for a in members], dtype=torch.float32)

        def step():
            out = model(batch, training=True, compute_force=True)
            loss = ((out["energy"] - energy_ref) / n_atoms).pow(2).mean() + 10 * (out["forces"] - forces_ref).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        results.append({"batch": int(batch_id), "n_atoms": int(n_atoms.sum()),
                        **_timed_steps(step, hp["steps"], hp["warmup"])})
    import e3nn
    import mace

    return {"results": results, "n_parameters": sum(p.numel() for p in model.parameters()),
            "versions": {"mace-torch": getattr(mace, "__version__", "?"), "e3nn": e3nn.__version__,
                         "torch": torch.__version__}}


# --- farfield side -------------------------------------------------------------------------


def _mace_environment(version: str, workspace: Path) -> dict:
    """Ray's ``runtime_env`` of mace-torch ``version``: the one an external mace trial gets."""
    from farfield.models.external import ExternalConfig
    from farfield.orchestrator.external.environment import runtime_env

    return runtime_env(ExternalConfig(trainer="mace", version=version), workspace)


def _run_mace(batches_path: Path, hp: dict, version: str, workspace: Path) -> tuple[dict | None, str | None]:
    """The mace-torch side in its environment: (its results, or None and why)."""
    from farfield.orchestrator.external.environment import run_script

    out, log = workspace / "mace_result.json", workspace / "mace_worker.log"
    try:
        run = run_script(_mace_environment(version, workspace), Path(__file__),
                         ["--worker", str(batches_path), "--worker-out", str(out), "--hp", json.dumps(hp)], log)
    except Exception as err:  # noqa: BLE001 - recorded in the JSON (e.g. the environment could not be built)
        return None, f"mace-torch environment failed: {type(err).__name__}: {str(err)[-1500:]}"
    finally:
        import ray

        ray.shutdown()  # farfield's side is timed without Ray running
    if run.returncode != 0:
        return None, f"mace-torch run failed: {run.log_tail[-1500:]}"
    return json.loads(out.read_text()), None


def _n_parameters(hp: dict, element_features: int) -> int:
    from farfield.models import build_potential

    return sum(p.numel() for p in build_potential(_farfield_config(hp, element_features)).parameters())


def match_parameters(hp: dict, target: int) -> int:
    """The ``n_element_features`` whose farfield model has the parameter count closest to ``target``
    (the count grows with it, so a bisection over 1..1024 and its neighbour)."""
    low, high = 1, 1024
    while high - low > 1:
        middle = (low + high) // 2
        if _n_parameters(hp, middle) < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda r: abs(_n_parameters(hp, r) - target))


def _make_batches(frames, targets: list[int]) -> list[list]:
    """Consecutive bundled frames until each batch holds at least ``target`` atoms."""
    batches, start = [], 0
    for target in targets:
        batch, n = [], 0
        while n < target:
            atoms = frames[start % len(frames)]
            batch.append(atoms)
            n += len(atoms)
            start += 1
        batches.append(batch)
    return batches


def _farfield_config(hp: dict, element_features: int):
    from farfield.models import ModelConfig

    return ModelConfig(backbone="mace", channels=hp["channels"], layers=hp["layers"], cutoff=hp["cutoff"],
                       n_radial=hp["n_radial"], l_max=hp["l_max"], hidden_l_max=hp["hidden_l_max"],
                       correlation=hp["correlation"], radial_mlp=hp["radial_mlp"],
                       avg_neighbors=hp["avg_neighbors"], n_element_features=element_features, dtype="float32")


def _farfield_run(batches, hp: dict, element_features: int) -> dict:
    import torch

    from farfield.models import build_potential
    from farfield.models.training import build_graphs
    from farfield.models.graph import collate

    from _training_step import training_step

    torch.manual_seed(0)
    potential = build_potential(_farfield_config(hp, element_features))
    optimizer = torch.optim.Adam(potential.parameters(), lr=1e-3)
    results = []
    for batch_id, members in enumerate(batches):
        batch = collate(build_graphs(members, hp["cutoff"], torch.float32))

        def step():
            training_step(potential, optimizer, batch)

        results.append({"batch": batch_id, "n_atoms": int(batch.n_atoms.sum()),
                        **_timed_steps(step, hp["steps"], hp["warmup"])})
    return {"results": results, "n_parameters": sum(p.numel() for p in potential.parameters()),
            "n_element_features": element_features}


def _comparison(farfield: dict, mace: dict) -> list[dict]:
    return [
        {"n_atoms": f["n_atoms"], "farfield_s": f["seconds_per_step"], "mace_torch_s": m["seconds_per_step"],
         "farfield_cpu_s": f["cpu_seconds_per_step"], "mace_torch_cpu_s": m["cpu_seconds_per_step"],
         "ratio_farfield_over_mace": f["seconds_per_step"] / m["seconds_per_step"],
         "cpu_ratio_farfield_over_mace": f["cpu_seconds_per_step"] / m["cpu_seconds_per_step"]}
        for f, m in zip(farfield["results"], mace["results"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mace_race.json")
    parser.add_argument("--mace-version", default="0.3.16", help="mace-torch release (exact)")
    parser.add_argument("--workspace", type=Path, default=HERE.parent / "build" / "mace_race",
                        help="where the batches, the mace-torch worker's output and its log go")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--l-max", type=int, default=3)
    parser.add_argument("--hidden-l-max", type=int, default=1)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--n-radial", type=int, default=8)
    parser.add_argument("--radial-mlp", default="64,64,64")
    parser.add_argument("--atoms", default="100,300", help="target atoms per batch, comma-separated")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="1 by default: CPU time per step is then a "
                        "robust measure even on a machine shared with other processes")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # inside the mace-torch environment
        args.worker_out.write_text(json.dumps(_mace_worker(args.worker, json.loads(args.hp))))
        return

    import ase.io
    import numpy as np
    import torch

    from farfield.data.datasets import bundled_store
    from farfield.models.training import build_graphs

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = bundled_store(tmp)
        frames = store.read()
        dataset_hash = store.content_hash
    graphs = build_graphs(frames, args.cutoff, torch.float32)
    avg_neighbors = float(np.mean([g.edge_index.shape[1] / len(g.numbers) for g in graphs]))
    hp = dict(channels=args.channels, layers=args.layers, l_max=args.l_max, hidden_l_max=args.hidden_l_max,
              correlation=args.correlation, cutoff=args.cutoff, n_radial=args.n_radial,
              radial_mlp=[int(w) for w in args.radial_mlp.split(",")], avg_neighbors=avg_neighbors,
              steps=args.steps, warmup=args.warmup, threads=args.threads)
    batches = _make_batches(frames, [int(n) for n in args.atoms.split(",")])

    load_before = os.getloadavg()
    report = {"benchmark": "mace_race", "dataset": dataset_hash, "hyperparameters": hp, "dtype": "float32",
              "cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(), "device": "cpu",
              "torch": torch.__version__}
    args.workspace.mkdir(parents=True, exist_ok=True)
    path = args.workspace / "batches.extxyz"
    tagged = []
    for k, members in enumerate(batches):
        for atoms in members:
            a = atoms.copy()
            a.info = {"race_batch": k, "race_energy": float(atoms.info["energy"])}
            a.arrays = {"numbers": a.arrays["numbers"], "positions": a.arrays["positions"]}
            a.arrays["race_forces"] = np.asarray(atoms.arrays["forces"])
            tagged.append(a)
    ase.io.write(path, tagged, format="extxyz")
    mace, failure = _run_mace(path, hp, args.mace_version, args.workspace)
    report["mace_torch"] = mace
    report["mace_torch_failure"] = failure
    ranks = {"equal_hyperparameters": DEFAULT_ELEMENT_FEATURES}
    if mace is not None:
        ranks["equal_parameters"] = match_parameters(hp, mace["n_parameters"])
    report["settings"] = []
    for name, rank in ranks.items():
        farfield = _farfield_run(batches, hp, rank)
        setting = {"name": name, "farfield_n_element_features": rank, "farfield": farfield}
        if mace is not None:
            setting["parameters"] = {"farfield": farfield["n_parameters"], "mace_torch": mace["n_parameters"]}
            setting["comparison"] = _comparison(farfield, mace)
        report["settings"].append(setting)
    load_after = os.getloadavg()
    report["load_average_1min"] = {"before": load_before[0], "after": load_after[0]}
    report["measured_under_load"] = max(load_before[0], load_after[0]) > 0.5 * (os.cpu_count() or 1)
    if report["measured_under_load"]:
        report["note"] = ("measured under load (other jobs shared the cores, niced): wall times include them; "
                          "single-thread process-CPU seconds per step are the robust figures")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for setting in report["settings"]:
        print(f"{setting['name']}: farfield {setting['farfield']['n_parameters']} parameters "
              f"(n_element_features {setting['farfield_n_element_features']})"
              + (f", mace-torch {mace['n_parameters']}" if mace else ""))
        for row in setting.get("comparison", []):
            print(f"{row['n_atoms']:>5} atoms: farfield {row['farfield_s']:.3f} s/step ({row['farfield_cpu_s']:.3f} "
                  f"CPU s), mace-torch {row['mace_torch_s']:.3f} s/step ({row['mace_torch_cpu_s']:.3f} CPU s), "
                  f"ratio {row['ratio_farfield_over_mace']:.2f} (CPU {row['cpu_ratio_farfield_over_mace']:.2f})")
    if failure:
        print(f"mace-torch unavailable: {failure}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
