"""Fidelity runs: farfield's CELLI, LES and EFA against the published reference codes → JSON.

Each reference runs in its own virtual environment that this script creates under
``build/fidelity/`` with pinned versions (as benchmarks/mace_race.py does for mace-torch);
farfield never imports a reference, and the reference workers never import farfield. They
read the same inputs (``inputs.py``) and write their outputs as JSON; this script compares.

    python benchmarks/fidelity/run.py --paper-repo PATH --les-repo PATH --efa-repo PATH

The three paths are git clones (bare mirrors work too) of the reference repositories; the
files used are read at the pinned commits below (``git show``/``git archive``) and installed
into the environment only, never into farfield:

* CELLI: ``chemtrain/MOF2/jax_md_mod/custom_electrostatics.py`` of msan9908/MLIP_generalizability
  (the paper's Supporting-Information code; chemtrain 0.2.0 on PyPI lacks this module), dropped
  into the ``jax_md_mod`` package of chemtrain 0.2.0;
* LES: the ``les`` package of ChengUCB/les (not on PyPI);
* EFA: the ``euclidean_fast_attention`` package of thorben-frank/euclidean_fast_attention;
* CELLI's parametrisation (``celli_layer``): chemutils' ``AllegroQeqLayer`` and ``ScaleShiftLayer``
  and the MACE training script's radius table, exported to ``build/fidelity/celli_layer/`` and
  loaded by the worker (``celli_layer_reference.py``).

Writes ``benchmarks/results/fidelity_{celli,celli_layer,les,efa}.json`` (inputs, reference outputs, farfield
outputs, largest deviations, versions and commits); tests/test_fidelity_pins.py pins farfield's
defaults against the stored reference values. A reference that cannot be installed or run is
recorded with the reason. Never asserts.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import farfield_side  # noqa: E402
from inputs import make_inputs  # noqa: E402

BUILD = ROOT / "build" / "fidelity"
RESULTS = ROOT / "benchmarks" / "results"

PAPER = {"repository": "msan9908/MLIP_generalizability", "commit": "9f22f21e2295e4d136402df0e30f76c7485371f8",
         "file": "chemtrain/MOF2/jax_md_mod/custom_electrostatics.py"}
PAPER_LAYER = {"repository": PAPER["repository"], "commit": PAPER["commit"], "folder": "chemtrain/MOF2",
               "files": ["chemutils/models/allegroQeq_mod_orig.py", "chemutils/models/layers/scale_shift.py",
                         "MACE_c_rand.py"]}
#: The parametrisation comparison: ethanol, farfield's edges within CELLI_LAYER_CUTOFF (Å), node
#: features of CELLI_LAYER_SIZES["channels"] and the layer's MLP sizes (smaller than the paper's
#: 128 × 2 so that the transplanted weights fit in the results file; the equations do not depend on them).
CELLI_LAYER_CUTOFF = 4.0
CELLI_LAYER_SIZES = {"channels": 8, "hidden": 16, "layers": 2, "n_radial": 8}
LES = {"repository": "ChengUCB/les", "commit": "c8063fad18e3d59cb4d783e0ed5a1efea8d55b8d", "package": "src/les"}
EFA = {"repository": "thorben-frank/euclidean_fast_attention", "commit": "93a4f5cd23d8d103845ef783b01458a119b7aa50",
       "package": "euclidean_fast_attention"}
#: The JAX environment (CELLI and EFA references). chemtrain 0.2.0 asks for jax <= 0.4.37, but no
#: jax-md release runs on those (0.2.8 uses the removed ``jax.random.KeyArray``; 0.2.26 needs
#: jax >= 0.5), so jax 0.5.0 with jax-md 0.2.26, and chemtrain installed without its dependencies
#: (only its ``jax_md_mod`` package is used). jax-md without dependencies too (it would pull pymatgen).
JAX_PINS = ["jax==0.5.0", "jaxlib==0.5.0", "scipy<1.13", "numpy<2.2", "lineax==0.0.7", "equinox==0.11.10",
            "e3nn-jax==0.21.0", "e3x==1.0.2", "flax==0.10.2", "jaxtyping", "dm-haiku==0.0.17", "sympy"]
JAX_NO_DEPS = ["jax-md==0.2.26", "chemtrain==0.2.0"]
TORCH_PINS = ["torch==2.13.0", "numpy"]


def _run(command: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed: {proc.stderr.strip()[-1500:]}")


def _export(repo: Path, commit: str, path: str, target: Path) -> Path:
    """``path`` of ``repo`` at ``commit`` extracted under ``target`` (a file or a folder)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit, path], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / path


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def ensure_jax_env(venv: Path, paper_repo: Path, efa_repo: Path) -> Path:
    """The JAX environment with chemtrain's jax_md_mod + the paper's custom_electrostatics and EFA."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import jax_md, e3x, haiku, sympy; from jax_md_mod import custom_electrostatics; "
             "import euclidean_fast_attention"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "--quiet", *JAX_PINS])
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *JAX_NO_DEPS])
    with tempfile.TemporaryDirectory() as tmp:
        source = _export(paper_repo, PAPER["commit"], PAPER["file"], Path(tmp))
        (_site_packages(python) / "jax_md_mod" / "custom_electrostatics.py").write_bytes(source.read_bytes())
        package = _export(efa_repo, EFA["commit"], EFA["package"], Path(tmp) / "efa")
        # The package's __init__ imports its training utilities (wandb, clu, orbax); only the
        # attention modules are installed, under an empty __init__.
        (package / "__init__.py").write_text("")
        (Path(tmp) / "efa" / "pyproject.toml").write_text(
            '[project]\nname = "euclidean_fast_attention"\nversion = "0.0.1"\n'
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            '[tool.setuptools]\npackages = ["euclidean_fast_attention"]\n')
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(Path(tmp) / "efa")])
    _run(check)
    return python


def ensure_torch_env(venv: Path, les_repo: Path) -> Path:
    """The torch environment with the ``les`` package."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import torch; from les.module.ewald import Ewald"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(python), "-m", "pip", "install", "--quiet", *TORCH_PINS])
    with tempfile.TemporaryDirectory() as tmp:
        _export(les_repo, LES["commit"], LES["package"], Path(tmp) / "les")
        (Path(tmp) / "les" / "pyproject.toml").write_text(
            '[project]\nname = "les"\nversion = "0.1.0"\n'
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            '[tool.setuptools.packages.find]\nwhere = ["src"]\n')
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(Path(tmp) / "les")])
    _run(check)
    return python


def _worker(python: Path, script: str, payload: dict, reuse: bool = False) -> dict:
    """Run a reference worker on ``payload``; its output is kept in build/fidelity/ and, with
    ``reuse``, read back instead of rerunning when it was made from the same payload."""
    BUILD.mkdir(parents=True, exist_ok=True)
    inputs, out = BUILD / f"{Path(script).stem}.in.json", BUILD / f"{Path(script).stem}.out.json"
    text = json.dumps(payload)
    if reuse and out.exists() and inputs.exists() and inputs.read_text() == text:
        return json.loads(out.read_text())
    inputs.write_text(text)
    _run([str(python), str(HERE / script), str(inputs), str(out)])
    return json.loads(out.read_text())


def _relative(a, b) -> float:
    """max |a − b| / max |b| (dimensionless)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _packages(python: Path, names: list[str]) -> dict:
    code = ("import importlib.metadata as m, json, sys; "
            "print(json.dumps({n: (m.version(n) if n else None) for n in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# --- comparisons ---------------------------------------------------------------------------

#: farfield energy mode ↔ the reference quantity it corresponds to.
CELLI_MODES = {"electrostatic": "model_energy", "qeq": "function_energy", "coulomb": "pair_energy"}


def compare_celli(data: dict, reference: dict) -> dict:
    """Every reference case against farfield's CELLI (default solver, Ewald k-sum at the default
    accuracy) in each energy mode, and against the matrix-free PME path for PME cases."""
    rows = []
    for ref in reference["results"]:
        structure, inputs = data["structures"][ref["structure"]], data["celli"][ref["structure"]]
        configs = {"default": {}}
        if ref["method"] == "pme":
            configs["cg+pme"] = {"solver": "cg", "method": "pme"}
        for label, config in configs.items():
            modes = {mode: farfield_side.celli(structure, inputs, ref["total_charge"], energy=mode, **config)
                     for mode in CELLI_MODES}
            row = {"structure": ref["structure"], "total_charge": ref["total_charge"],
                   "reference_method": ref["method"], "farfield_config": label,
                   "charges_relative": _relative(modes["qeq"]["charges"], ref["charges"]),
                   "farfield": {m: out["energy"] for m, out in modes.items()},
                   "reference": {key: ref[key] for key in CELLI_MODES.values()}}
            row["energy_relative"] = {mode: abs(modes[mode]["energy"] - ref[key]) / abs(ref[key])
                                      for mode, key in CELLI_MODES.items()}
            row["farfield_default_mode_relative"] = abs(
                farfield_side.celli(structure, inputs, ref["total_charge"], **config)["energy"] - ref["model_energy"]
            ) / abs(ref["model_energy"])
            rows.append(row)
    return {"comparisons": rows, "periodic_diagnosis": _diagnose_periodic(data, reference)}


def compare_celli_layer(payload: dict, reference: dict) -> dict:
    """farfield's default CELLI parametrisation with the paper's layer's parameters against that
    layer: χ, J, σ and the feedback, converted to farfield's units (χ·ε/c, J·ε/c², σ·10 Å)."""
    from farfield.models.heads.celli_parameters import REFERENCE_CHARGE, REFERENCE_ENERGY, REFERENCE_LENGTH

    ours = farfield_side.celli_layer(payload, reference["params"])
    theirs = {"electronegativity": np.asarray(reference["electronegativity"]) * REFERENCE_ENERGY / REFERENCE_CHARGE,
              "hardness": np.asarray(reference["hardness"]) * REFERENCE_ENERGY / REFERENCE_CHARGE**2,
              "widths": np.asarray(reference["widths_nm"]) * REFERENCE_LENGTH,
              "feedback": np.asarray(reference["feedback"])}
    same_silu = farfield_side.celli_layer(payload, reference["params"], farfield_side.e3nn_silu_scale())
    return {"reference_params": reference["params"],
            "reference_outputs": {key: reference[key] for key in ("electronegativity", "hardness", "gammas", "widths_nm",
                                                                  "radius_nm", "feedback")},
            "farfield": ours,
            "relative": {key: _relative(ours[key], value) for key, value in theirs.items()},
            # the same with e3nn's quantile estimate of the SiLU normalisation instead of the exact moment:
            # what is left is the reference's float32 hardness and Bessel frequencies
            "relative_with_e3nn_silu_constant": {key: _relative(same_silu[key], value) for key, value in theirs.items()},
            "units": {"electronegativity": "reference × ε/c (eV/e)", "hardness": "reference × ε/c² (eV/e²)",
                      "widths": "reference nm × 10 (Å)", "feedback": "as is (feature units)",
                      "epsilon_eV": REFERENCE_ENERGY, "charge_unit_e": REFERENCE_CHARGE}}


def _diagnose_periodic(data: dict, reference: dict) -> list[dict]:
    """The reference's periodic model energies re-evaluated from its own charges (reference_sums.py):
    correct reciprocal sum, one-octant Ewald sum, PME kernel with swapped axes."""
    import reference_sums

    rows = []
    for ref in reference["results"]:
        structure = data["structures"][ref["structure"]]
        if not structure["periodic"]:
            continue
        widths = data["celli"][ref["structure"]]["widths"]
        energies = {kind: reference_sums.model_energy(structure, widths, ref["charges"], ref["alpha"], ref["real_cutoff"],
                                                      kind, ref["grid"] if kind == "octant" else 16, data["coulomb_constant"])
                    for kind in ("full", "octant", "swapped")}
        rows.append({"structure": ref["structure"], "method": ref["method"], "reference_model_energy": ref["model_energy"],
                     "numpy": energies,
                     "relative_to_reference": {k: abs(v - ref["model_energy"]) / abs(ref["model_energy"]) for k, v in energies.items()}})
    return rows


def compare_les(data: dict, reference: dict) -> dict:
    rows = []
    for ref in reference["results"]:
        structure = data["structures"][ref["structure"]]
        charges = data["les"][ref["structure"]][ref["charges"]]
        row = {"structure": ref["structure"], "charges": ref["charges"], "net_charge": float(np.sum(charges)),
               "reference_energy": ref["energy"]}
        for label, config in {"default": {}, "background": {"background": True}}.items():
            out = farfield_side.les(structure, charges, **config)
            row[f"farfield_{label}_energy"] = out["energy"]
            row[f"{label}_energy_relative"] = abs(out["energy"] - ref["energy"]) / abs(ref["energy"])
            row[f"{label}_forces_relative"] = _relative(out["forces"], ref["forces"])
        # LES's 1/(2ε₀) = 90.4756 eV·Å/e² (rounded) against farfield's 2π k_e: the units alone.
        units = ref["norm_factor"] / (2 * np.pi * data["coulomb_constant"])
        row["units_ratio"] = units
        row["default_energy_relative_after_units"] = abs(row["farfield_default_energy"] * units - ref["energy"]) / abs(ref["energy"])
        rows.append(row)
    return {"comparisons": rows}


def efa_payload(head, displacements: np.ndarray) -> dict:
    """What the EFA worker evaluates: farfield's radial nodes with its Lebedev rule's point count,
    and the paper's setting (50 directions, rotary frequencies up to π/5 Å⁻¹)."""
    from scipy.integrate import lebedev_rule

    nodes, _ = farfield_side.efa_shells(head)
    n_directions = lebedev_rule(head.config.lebedev_degree)[1].shape[0]
    paper = np.linspace(0.0, np.pi, 8) / 5.0
    return {"displacements": displacements.tolist(),
            "settings": [{"name": "farfield_default", "lebedev_num": int(n_directions), "frequencies": nodes.tolist()},
                         {"name": "paper", "lebedev_num": 50, "frequencies": paper.tolist()}]}


def compare_efa(head, displacements: np.ndarray, reference: dict) -> dict:
    """farfield's kernel K_h(r) against Σ_m c_hm S^ref_{k_m}(r) (the reference's per-frequency
    kernel at farfield's radial nodes, weighted by farfield's spectrum and radial weights)."""
    from scipy.integrate import lebedev_rule

    by_name = {r["name"]: r for r in reference["results"]}
    default = by_name["farfield_default"]
    nodes, coefficients = farfield_side.efa_shells(head)
    shells = np.asarray(default["kernel"])  # (n_nodes, n_displacements)
    reference_kernel = (coefficients @ shells).T  # (n_displacements, n_heads)
    farfield_kernel = farfield_side.efa_kernel(head, displacements)
    distances = np.linalg.norm(displacements, axis=1)
    sinc = lambda k, r: np.sinc(np.outer(k, r) / np.pi)  # noqa: E731  sin(kr)/(kr)
    directions, weights = lebedev_rule(head.config.lebedev_degree)
    ref_u, ref_w = np.asarray(default["grid_directions"]), np.asarray(default["grid_weights"])
    ours = np.concatenate([directions.T, weights[:, None] / weights.sum()], axis=1)
    theirs = np.concatenate([ref_u, ref_w[:, None] / ref_w.sum()], axis=1)
    grid_difference = float(np.abs(np.array(sorted(map(tuple, ours.round(12)))) -
                                   np.array(sorted(map(tuple, theirs.round(12))))).max()) if ours.shape == theirs.shape else None
    paper = by_name["paper"]
    paper_sinc = sinc(np.asarray(paper["frequencies"]), distances)
    return {
        "lebedev_degree": head.config.lebedev_degree, "lebedev_points": int(weights.shape[0]),
        "lebedev_grid_max_difference": grid_difference,
        "radial_nodes": nodes.tolist(),
        "spectral_weights": head.spectral.detach().tolist(),
        "reference_shell_kernels": default["kernel"],
        "reference_kernel": reference_kernel.tolist(),
        "farfield_kernel": farfield_kernel.tolist(),
        "kernel_relative": _relative(farfield_kernel, reference_kernel),
        "kernel_absolute": float(np.abs(farfield_kernel - reference_kernel).max()),
        "reference_shells_vs_sinc": float(np.abs(shells - sinc(nodes, distances)).max()),
        "paper_setting": {"lebedev_num": 50, "frequencies": paper["frequencies"],
                          "max_abs_error_vs_sinc": float(np.abs(np.asarray(paper["kernel"]) - paper_sinc).max()),
                          "max_distance": float(distances.max())},
    }


def _displacements(seed: int = 5) -> np.ndarray:
    """Pair displacements (n, 3) Å: distances 0.5–12 Å along three seeded random directions."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((3, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    distances = np.linspace(0.5, 12.0, 24)
    return (distances[None, :, None] * directions[:, None, :]).reshape(-1, 3)


def _write(name: str, report: dict) -> None:
    path = RESULTS / f"fidelity_{name}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paper-repo", type=Path, required=True, help="git clone of msan9908/MLIP_generalizability")
    parser.add_argument("--les-repo", type=Path, required=True, help="git clone of ChengUCB/les")
    parser.add_argument("--efa-repo", type=Path, required=True, help="git clone of thorben-frank/euclidean_fast_attention")
    parser.add_argument("--only", choices=["celli", "celli_layer", "les", "efa"], action="append")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a reference worker's output in build/fidelity/ made from the same inputs")
    args = parser.parse_args()
    import torch

    from farfield.models.electrostatics import COULOMB_CONSTANT

    torch.set_num_threads(1)
    data = make_inputs(COULOMB_CONSTANT)
    machine = {"python": platform.python_version(), "farfield_torch": torch.__version__}
    wanted = args.only or ["celli", "celli_layer", "les", "efa"]
    jax_python = torch_python = None
    failures = {}
    built = BUILD / "jax-venv" / "bin" / "python", BUILD / "torch-venv" / "bin" / "python"
    if args.reuse and built[0].exists():
        jax_python = built[0]
    elif {"celli", "celli_layer", "efa"} & set(wanted):
        try:
            jax_python = ensure_jax_env(BUILD / "jax-venv", args.paper_repo, args.efa_repo)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            failures["jax"] = str(error)
    if args.reuse and built[1].exists():
        torch_python = built[1]
    elif "les" in wanted:
        try:
            torch_python = ensure_torch_env(BUILD / "torch-venv", args.les_repo)
        except (RuntimeError, subprocess.CalledProcessError) as error:
            failures["torch"] = str(error)

    def report(name: str, source: dict, python: Path | None, run) -> None:
        if python is None:
            _write(name, {"reference": source, "failure": failures.get("torch" if name == "les" else "jax")})
            return
        out = {"reference": source, "machine": machine}
        try:
            out.update(run(python))
        except RuntimeError as error:
            out["failure"] = str(error)
        _write(name, out)

    if "celli" in wanted:
        def run_celli(python):
            reference = _worker(python, "celli_reference.py", data, args.reuse)
            versions = {**reference["versions"], **_packages(python, ["jax", "jaxlib", "jax-md", "chemtrain", "lineax"])}
            return {"versions": versions, "inputs": {k: data[k] for k in ("coulomb_constant", "seed", "sources", "structures", "celli", "celli_cases")},
                    "reference_results": reference["results"], **compare_celli(data, reference)}
        report("celli", PAPER, jax_python, run_celli)
    if "celli_layer" in wanted:
        def run_celli_layer(python):
            for name in PAPER_LAYER["files"]:
                _export(args.paper_repo, PAPER_LAYER["commit"], f"{PAPER_LAYER['folder']}/{name}", BUILD / "celli_layer")
            files = BUILD / "celli_layer" / PAPER_LAYER["folder"]
            payload = farfield_side.celli_layer_payload(data["structures"]["ethanol"], CELLI_LAYER_CUTOFF,
                                                        **CELLI_LAYER_SIZES)
            reference = _worker(python, "celli_layer_reference.py", {**payload, "paper_files": str(files)}, args.reuse)
            return {"versions": {**reference["versions"], **_packages(python, ["jax", "dm-haiku", "e3nn-jax", "chemtrain"])},
                    "inputs": {**payload, "source": data["sources"]["ethanol"]},
                    **compare_celli_layer(payload, reference)}
        report("celli_layer", PAPER_LAYER, jax_python, run_celli_layer)
    if "les" in wanted:
        def run_les(python):
            reference = _worker(python, "les_reference.py", data, args.reuse)
            return {"versions": {**reference["versions"], **_packages(python, ["les"])},
                    "inputs": {k: data[k] for k in ("coulomb_constant", "seed", "sources", "structures", "les")},
                    "reference_results": reference["results"], **compare_les(data, reference)}
        report("les", LES, torch_python, run_les)
    if "efa" in wanted:
        def run_efa(python):
            head = farfield_side.efa_head(seed=0)
            displacements = _displacements()
            reference = _worker(python, "efa_reference.py", efa_payload(head, displacements), args.reuse)
            return {"versions": {**reference["versions"], **_packages(python, ["e3x", "flax", "euclidean_fast_attention"])},
                    "inputs": {"displacements": displacements.tolist(), "farfield_config": head.config.model_dump()},
                    **compare_efa(head, displacements, reference)}
        report("efa", EFA, jax_python, run_efa)


if __name__ == "__main__":
    main()
