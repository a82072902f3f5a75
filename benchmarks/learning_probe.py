"""How well does one trial config learn? Train it in this process (no Ray, no MLflow) and
report the learning curve, the final train/test errors against their baselines, and where the
test force error sits (per element, per configuration kind, small vs large reference forces).

    python benchmarks/learning_probe.py configs/sweep-protocol.yaml \
        --set training.epochs=30 --set model.channels=64 --train-fraction 0.5 \
        --out benchmarks/results/learning_probe/painn-32x2-half.json

``--set PATH=VALUE`` overrides the trial config (VALUE is parsed as JSON, else kept as a
string); a sweep config's ``sweep`` block is ignored. ``--train-fraction f`` keeps a seeded
random fraction f of the training *parents* (the test side is unchanged): one point of a
learning curve in training-set size. Baselines: zero forces, and the per-element reference
energies fitted on the (kept) training side. One torch thread (``--threads``) unless told.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        path, _, value = item.partition("=")
        try:
            out[path] = json.loads(value)
        except json.JSONDecodeError:
            out[path] = value
    return out


def _apply(tree: dict, overrides: dict) -> dict:
    for path, value in overrides.items():
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _force_breakdown(potential, graphs, structure_ids) -> dict:
    """Test force MAE vs the zero-force error per element, per configuration (``-c<k>``) and for
    atoms with |F| below / above 1 eV/Å (meV/Å; atom counts)."""
    rows = []
    for graph, sid in zip(graphs, structure_ids):
        predicted = potential(graph, compute_forces=True)["forces"].detach()
        error = (predicted - graph.forces).abs().mean(1).numpy()
        zero = graph.forces.abs().mean(1).numpy()
        norm = graph.forces.norm(dim=1).numpy()
        kind = sid.rsplit("-c", 1)[-1]
        rows += [(int(z), kind, e, z0, n) for z, e, z0, n in zip(graph.numbers.numpy(), error, zero, norm)]
    table = pd.DataFrame(rows, columns=["Z", "config", "error", "zero", "norm"])

    def summary(group) -> dict:
        return {str(k): {"f_mae": 1e3 * float(g.error.mean()), "zero_force": 1e3 * float(g.zero.mean()),
                         "n_atoms": len(g)} for k, g in group}

    return {"per_element": summary(table.groupby("Z")), "per_config": summary(table.groupby("config")),
            "by_reference_force": summary(table.groupby(np.where(table.norm > 1.0, "above 1 eV/Å", "below 1 eV/Å")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    parser.add_argument("--train-fraction", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from farfield.data.datasets import resolve_dataset
    from farfield.models.blocks.readout import fit_reference_energies
    from farfield.models.registry import build_potential
    from farfield.models.training.graphs import element_count_matrix, force_rms, graphs_from_cache
    from farfield.models.training.metrics import baseline_maes
    from farfield.models.training.trainer import Trainer
    from farfield.orchestrator import trial_pipeline as T
    from farfield.orchestrator.config import TrialConfig

    torch.set_num_threads(args.threads)
    data = yaml.safe_load(args.config.read_text())
    data.pop("sweep", None)
    overrides = _parse_set(args.set)
    config = TrialConfig.model_validate(_apply(data, overrides))
    T.seed_everything(config.seed)
    store = resolve_dataset(config.data.dataset, config.workspace)
    split = T.make_split(config, store)
    ids = T.side_ids(config, store, split)
    if args.train_fraction is not None:
        parent_of = store.index.set_index("structure_id")["parent_id"]
        parents = sorted(set(parent_of[ids["train"]]))
        keep = set(np.random.default_rng(config.seed).permutation(parents)[: round(args.train_fraction * len(parents))])
        ids["train"] = [sid for sid in ids["train"] if parent_of[sid] in keep]
    graphs = graphs_from_cache(T.graph_cache(config, store), ids, config.model.torch_dtype)
    counts = element_count_matrix(graphs["train"])
    reference = fit_reference_energies(counts, np.array([float(g.energy[0]) for g in graphs["train"]]))
    potential = build_potential(config.model, reference_energies=reference, energy_scale=force_rms(graphs["train"]))

    history = []

    class Recorder:
        last = time.perf_counter()

        def on_epoch(self, epoch, metrics):
            now = time.perf_counter()
            history.append({"epoch": epoch, "seconds": now - Recorder.last,
                            **{k: float(v) for k, v in metrics.items()}})
            Recorder.last = now
            print(f"epoch {epoch}: {history[-1]['seconds']:.0f} s, "
                  f"val f_mae {metrics['val_f_mae']:.1f} meV/Å, e_mae {metrics['val_e_mae']:.1f} meV/atom",
                  flush=True)

    trainer = Trainer(potential, config.training, seed=config.seed, reporter=Recorder(), progress=False)
    trainer.fit(graphs["train"], graphs["val"])
    result = {side: trainer.evaluate(graphs[side]).metrics for side in ("train", "test")}
    test = graphs["test"]
    dummy = baseline_maes(test, reference)
    baselines = {"zero_force_f_mae": dummy["f_mae"], "reference_energy_e_mae": dummy["e_mae"]}
    out = {
        "config": str(args.config), "overrides": overrides, "train_fraction": args.train_fraction,
        "dataset_hash": store.content_hash, "split_hash": split.content_hash,
        "n_structures": {side: len(graphs[side]) for side in graphs},
        "n_parameters": sum(p.numel() for p in potential.parameters()),
        "torch": torch.__version__, "threads": args.threads,
        "seconds_per_epoch_median": float(np.median([h["seconds"] for h in history])),
        "train": result["train"], "test": result["test"], "baselines": baselines,
        "test_relative": {"f_mae": result["test"]["f_mae"] / baselines["zero_force_f_mae"],
                          "e_mae": result["test"]["e_mae"] / baselines["reference_energy_e_mae"]},
        "test_force_breakdown": _force_breakdown(trainer.potential.eval(), test, ids["test"]),
        "history": history,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"test force MAE {result['test']['f_mae']:.1f} meV/Å ({100 * out['test_relative']['f_mae']:.0f} % of "
          f"zero-force {baselines['zero_force_f_mae']:.1f}); energy MAE {result['test']['e_mae']:.1f} meV/atom "
          f"({100 * out['test_relative']['e_mae']:.0f} % of reference energies "
          f"{baselines['reference_energy_e_mae']:.1f}); {out['seconds_per_epoch_median']:.0f} s/epoch")


if __name__ == "__main__":
    main()
