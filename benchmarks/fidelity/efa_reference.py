"""EFA reference worker: the attention kernel of ``euclidean_fast_attention`` as a function of distance.

Runs inside the JAX environment that ``run.py`` builds (jax, e3x, flax and the
``euclidean_fast_attention`` package from its repository); imports no farfield.

For one rotary frequency θ (two feature channels, ``parametrized=False`` so that query =
key = value = the input) and two atoms carrying the feature (1, 0), the module returns
``y_0 = D^{-1/2} Σ_n w_n [1 + cos(θ u_n·(r_1 − r_0))]`` in channel 0 (Lebedev directions u_n,
weights w_n), and a lone atom ``D^{-1/2} Σ_n w_n``. Their ratio minus one is the reference's
attention kernel for that frequency, ``S_θ(r) = Σ_n w_n cos(θ u_n·r) / Σ_n w_n`` — computed
here through the module itself. Usage: ``python efa_reference.py EFA_INPUTS.json OUT.json``
with ``settings``: a list of {lebedev_num, frequencies (1/Å)}, ``displacements`` (n, 3) Å.
"""

from __future__ import annotations

import json
import sys

import jax

jax.config.update("jax_enable_x64", True)

import e3x  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from euclidean_fast_attention.fast_attention import EuclideanFastAttention  # noqa: E402


def _kernel(lebedev_num: int, frequencies: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """``S_θ(r)`` (n_frequencies, n_displacements) through the reference module."""
    module = EuclideanFastAttention(lebedev_num=lebedev_num, parametrized=False, epe_frequencies_trainable=True,
                                    epe_max_frequency=1.0, epe_max_length=1.0, param_dtype=jnp.float64)
    feature = jnp.zeros((1, 1, 1, 2), dtype=jnp.float64).at[..., 0].set(1.0)
    graph_mask = jnp.array([True])
    params = module.init(jax.random.PRNGKey(0), feature, jnp.zeros((1, 3)), jnp.zeros(1, dtype=jnp.int32), graph_mask)

    def channel0(theta, positions):
        p = {"params": {**params["params"], "frequencies": jnp.reshape(theta, (1,))}}
        n = positions.shape[0]
        y = module.apply(p, jnp.repeat(feature, n, axis=0), positions, jnp.zeros(n, dtype=jnp.int32), graph_mask)
        return y[0, 0, 0, 0]

    @jax.jit
    def kernel(theta, displacement):
        pair = channel0(theta, jnp.stack([jnp.zeros(3), displacement]))
        alone = channel0(theta, jnp.zeros((1, 3)))
        return pair / alone - 1.0

    batched = jax.vmap(jax.vmap(kernel, in_axes=(None, 0)), in_axes=(0, None))
    return np.asarray(batched(jnp.asarray(frequencies), jnp.asarray(displacements)))


def main(inputs_path: str, out_path: str) -> None:
    data = json.loads(open(inputs_path).read())
    displacements = np.asarray(data["displacements"])
    results = []
    for setting in data["settings"]:
        frequencies = np.asarray(setting["frequencies"])
        grid_u, grid_w = e3x.so3.lebedev_quadrature(num=setting["lebedev_num"])
        results.append({**setting, "kernel": _kernel(setting["lebedev_num"], frequencies, displacements).tolist(),
                        "grid_directions": np.asarray(grid_u).tolist(), "grid_weights": np.asarray(grid_w).tolist()})
    import flax

    versions = {"jax": jax.__version__, "e3x": getattr(e3x, "__version__", "?"), "flax": flax.__version__}
    open(out_path, "w").write(json.dumps({"versions": versions, "results": results}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
