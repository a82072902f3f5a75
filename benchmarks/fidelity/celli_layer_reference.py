"""CELLI layer reference worker: the paper's ``AllegroQeqLayer`` as its MACE models call it.

Runs inside the JAX environment that ``run.py`` builds; imports neither farfield nor torch.
Usage: ``python celli_layer_reference.py INPUTS.json OUT.json``. ``INPUTS["paper_files"]`` is
a folder with ``chemutils/models/allegroQeq_mod_orig.py``, ``chemutils/models/layers/scale_shift.py``
and ``MACE_c_rand.py`` of msan9908/MLIP_generalizability at the pinned commit (``run.py``
exports them). The layer module imports ``jaxopt`` and chemutils' ``AtomicEnergyLayer`` without
using them in the layer, so both are stubbed.

As in chemutils' MACE with ``qeq_rbf`` (``MACE.__call__``): edge vectors are divided by the cutoff,
``y = x[senders] · envelope(|v|)``, the layer reads ``[y, RadialBesselLayer(|v|)]`` and its
per-edge output ``dx`` is summed onto the senders (before MACE's ``epsilon``). ``charge_fn``
records χ, the hardness and the pre-softplus widths, applies ``learn_radius`` with the script's
radii (``(1 + r_pm)/100`` Å, in nm) and returns the given charges instead of solving, so that the
feedback is compared for the same charges. Records the layer's parameters, χ and J in the
reference's units (kJ/mol, charge unit with k_e = 1), σ in nm and the summed feedback.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import types
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import haiku as hk  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paper_modules(files: Path):
    sys.modules["jaxopt"] = types.SimpleNamespace(ProjectedGradient=None)
    scale_shift = _load(files / "chemutils" / "models" / "layers" / "scale_shift.py", "scale_shift")
    layers = types.ModuleType("chemutils.models.layers")
    layers.ScaleShiftLayer, layers.AtomicEnergyLayer = scale_shift.ScaleShiftLayer, None
    for name in ("chemutils", "chemutils.models"):
        sys.modules[name] = types.ModuleType(name)
    sys.modules["chemutils.models.layers"] = layers
    return _load(files / "chemutils" / "models" / "allegroQeq_mod_orig.py", "allegroQeq_mod_orig")


def _script_radii(script: Path) -> dict[int, float]:
    """``atomic_number_to_radius`` (pm) of the paper's MACE training script."""
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "atomic_number_to_radius":
            return ast.literal_eval(node.value)
    raise RuntimeError(f"atomic_number_to_radius not found in {script}")


def main(inputs_path: str, out_path: str) -> None:
    data = json.loads(Path(inputs_path).read_text())
    files = Path(data["paper_files"])
    paper = _paper_modules(files)
    from jax_md_mod.model.layers import RadialBesselLayer, SmoothingEnvelope

    radii = _script_radii(files / "MACE_c_rand.py")
    numbers = np.asarray(data["numbers"])
    radius_nm = np.array([(1 + radii.get(int(z), 1.0)) / 100.0 for z in numbers]) * 0.1  # the scripts' scale_R = 0.1
    senders, receivers = (jnp.asarray(np.asarray(e, dtype=np.int32)) for e in data["edges"])
    positions = jnp.asarray(data["positions"])
    vectors = (positions[receivers] - positions[senders]) / data["cutoff"]
    node_scalars, charges = jnp.asarray(data["node_features"]), jnp.asarray(data["charges"])
    species = jnp.asarray(numbers)
    recorded = {}

    def charge_fn(gammas, chis, hardness):
        recorded.update(chi=chis, hardness=hardness, gammas=gammas,
                        widths_nm=jax.nn.softplus(gammas * jnp.asarray(radius_nm)))
        return charges, jnp.zeros(())

    def forward():
        import e3nn_jax as e3nn

        dr = jnp.linalg.norm(vectors, axis=-1)
        rbf = RadialBesselLayer(cutoff=1.0, num_radial=data["n_radial"], envelope_p=6)(dr)
        y = node_scalars[senders] * SmoothingEnvelope(6)(dr)[:, None]
        layer = paper.AllegroQeqLayer(
            epsilon=1.0, irreps_out=None, charge_embed_n_hidden=data["hidden"], charge_embed_n_layers=data["layers"],
            num_species=data["num_species"], mlp_n_hidden=node_scalars.shape[1], mlp_n_layers=data["layers"], p=6,
            mlp_activation=jax.nn.silu,
        )
        (dx, _), _ = layer(e3nn.IrrepsArray("1o", vectors), jnp.concatenate([y, rbf], axis=-1), None, senders,
                           species, charge_fn)
        return jax.ops.segment_sum(dx, senders, numbers.size)

    model = hk.transform(forward)
    params = model.init(jax.random.PRNGKey(data["seed"]))
    feedback = model.apply(params, None)
    out = {
        "params": {module: {name: np.asarray(value).tolist() for name, value in entries.items()}
                   for module, entries in params.items()},
        "electronegativity": np.asarray(recorded["chi"]).tolist(),
        "hardness": np.asarray(recorded["hardness"]).tolist(),
        "gammas": np.asarray(recorded["gammas"]).tolist(),
        "widths_nm": np.asarray(recorded["widths_nm"]).tolist(),
        "radius_nm": radius_nm.tolist(),
        "feedback": np.asarray(feedback).tolist(),
        "versions": {"python": sys.version.split()[0], "jax": jax.__version__, "haiku": hk.__version__},
    }
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
