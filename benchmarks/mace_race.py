"""Race farfield's MACE-style backbone against mace-torch per training step → JSON.

Both models get the same hyperparameters (channels, l_max = max_ell, hidden_l_max = max_L,
correlation, layers, cutoff, Bessel functions, radial MLP, avg_num_neighbors, float32)
and train on the same batches of bundled MOF structures (energy + forces loss, backward,
Adam step), in the same run. mace-torch pins an older e3nn, so it runs in its own
virtual environment that this script creates (``benchmarks/.mace-venv``, torch first,
pinned like the project's) and drives as a subprocess; farfield never imports it.
If mace-torch cannot be installed or run, the JSON records why.

    python benchmarks/mace_race.py --out benchmarks/results/mace_race.json

``ratio_farfield_over_mace`` < 1 means farfield is faster. Never asserts on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE / ".mace-venv"


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


def ensure_mace_venv(venv: Path, torch_spec: str) -> tuple[Path | None, str | None]:
    """Create ``venv`` with ``torch_spec`` then mace-torch; returns (python, failure reason)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import mace.modules, e3nn, torch"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, None
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", torch_spec],
        [str(python), "-m", "pip", "install", "--quiet", "mace-torch"],
        check,
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"`{' '.join(cmd[:4])} ...` failed: {(proc.stderr or proc.stdout).strip()[-1500:]}"
    return python, None


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


def _farfield_run(batches, hp: dict) -> dict:
    import torch

    from farfield.models import ModelConfig, build_potential
    from farfield.models.training import build_graphs
    from farfield.models.graph import collate

    from _training_step import training_step

    torch.manual_seed(0)
    config = ModelConfig(backbone="mace", channels=hp["channels"], layers=hp["layers"], cutoff=hp["cutoff"],
                         n_radial=hp["n_radial"], l_max=hp["l_max"], hidden_l_max=hp["hidden_l_max"],
                         correlation=hp["correlation"], radial_mlp=hp["radial_mlp"],
                         avg_neighbors=hp["avg_neighbors"], dtype="float32")
    potential = build_potential(config)
    optimizer = torch.optim.Adam(potential.parameters(), lr=1e-3)
    results = []
    for batch_id, members in enumerate(batches):
        batch = collate(build_graphs(members, hp["cutoff"], torch.float32))

        def step():
            training_step(potential, optimizer, batch)

        results.append({"batch": batch_id, "n_atoms": int(batch.n_atoms.sum()),
                        **_timed_steps(step, hp["steps"], hp["warmup"])})
    return {"results": results, "n_parameters": sum(p.numel() for p in potential.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mace_race.json")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--torch-spec", default=os.environ.get("TORCH_SPEC", "torch==2.13.0"))
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
    parser.add_argument("--hp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # inside the mace venv
        print(json.dumps(_mace_worker(args.worker, json.loads(args.hp))))
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

    report = {"benchmark": "mace_race", "dataset": dataset_hash, "hyperparameters": hp, "dtype": "float32",
              "cpu": platform.processor() or platform.machine(), "device": "cpu", "torch": torch.__version__}
    python, failure = ensure_mace_venv(args.venv, args.torch_spec)
    mace = None
    if python is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "batches.extxyz"
            tagged = []
            for k, members in enumerate(batches):
                for atoms in members:
                    a = atoms.copy()
                    a.info = {"race_batch": k, "race_energy": float(atoms.info["energy"])}
                    a.arrays = {"numbers": a.arrays["numbers"], "positions": a.arrays["positions"]}
                    a.arrays["race_forces"] = np.asarray(atoms.arrays["forces"])
                    tagged.append(a)
            ase.io.write(path, tagged, format="extxyz")
            proc = subprocess.run([str(python), __file__, "--worker", str(path), "--hp", json.dumps(hp)],
                                  capture_output=True, text=True)
        if proc.returncode == 0:
            mace = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            failure = f"mace-torch run failed: {proc.stderr.strip()[-1500:]}"
    farfield = _farfield_run(batches, hp)
    report["farfield"] = farfield
    report["mace_torch"] = mace
    report["mace_torch_failure"] = failure
    if mace is not None:
        report["comparison"] = [
            {"n_atoms": f["n_atoms"], "farfield_s": f["seconds_per_step"], "mace_torch_s": m["seconds_per_step"],
             "farfield_cpu_s": f["cpu_seconds_per_step"], "mace_torch_cpu_s": m["cpu_seconds_per_step"],
             "ratio_farfield_over_mace": f["seconds_per_step"] / m["seconds_per_step"],
             "cpu_ratio_farfield_over_mace": f["cpu_seconds_per_step"] / m["cpu_seconds_per_step"]}
            for f, m in zip(farfield["results"], mace["results"])
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in report.get("comparison", []):
        print(f"{row['n_atoms']:>5} atoms: farfield {row['farfield_s']:.3f} s/step ({row['farfield_cpu_s']:.3f} "
              f"CPU s), mace-torch {row['mace_torch_s']:.3f} s/step ({row['mace_torch_cpu_s']:.3f} CPU s), "
              f"ratio {row['ratio_farfield_over_mace']:.2f} (CPU {row['cpu_ratio_farfield_over_mace']:.2f})")
    if failure:
        print(f"mace-torch unavailable: {failure}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
