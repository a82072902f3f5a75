"""CELLI reference worker: chemtrain's ``charge_eq_energy_neighborlist`` on the shared inputs.

Runs inside the JAX environment that ``run.py`` builds (jax, jax-md, chemtrain's
``jax_md_mod`` with the paper's ``custom_electrostatics.py``); imports neither farfield nor
torch. Usage: ``python celli_reference.py INPUTS.json OUT.json``.

Units. The reference has no Coulomb constant (the paper's scripts fold it into the charges).
With ``s = √k_e`` the reference is called with χ/s, J/s², total charge s·Q; its charges
are then s·q and its energies are in eV.

For every case it records the two energies the paper's code produces:
``function_energy`` — what ``charge_eq_energy_neighborlist(..., chi, idmp)`` returns next to
the charges (pair + self + core terms, the minimised Qeq energy), and ``model_energy`` — what
the paper's CELLI models add to the potential (``charge_qeq_fn`` in chemutils' MACE, PaiNN and
Allegro calls the same function again with ``charge=`` the equilibrated charges and without
χ and J: pair + Gaussian self-energies). ``pair_energy`` is ``model_energy`` minus the
reference's own ``shielded_self``.
"""

from __future__ import annotations

import json
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax_md import partition, space  # noqa: E402
from jax_md_mod import custom_electrostatics as reference  # noqa: E402

#: Real-space cutoff (Å) and switching onset of the periodic cases (< half the supercell width),
#: and the Ewald splitting α (1/Å, kernel erf(α r)): erfc(α r_c) ≈ 1e-11.
PERIODIC_CUTOFF, PERIODIC_ONSET, ALPHA = 5.8, 5.7, 0.8
#: Reciprocal grids: the positive-octant index range of the reference's Ewald sum, and the PME mesh.
EWALD_GRID, PME_GRID = 20, 96
#: Non-periodic: one cutoff far beyond the molecule, so the switching function is never reached.
MOLECULE_CUTOFF, MOLECULE_ONSET = 40.0, 39.0


def _solve(structure: dict, inputs: dict, total_charge: float, method: str, k_e: float) -> dict:
    s = np.sqrt(k_e)
    chi = jnp.asarray(inputs["chi"]) / s
    hardness = jnp.asarray(inputs["hardness"]) / k_e
    widths = jnp.asarray(inputs["widths"])
    positions = np.asarray(structure["positions"])
    if structure["periodic"]:
        cell = np.asarray(structure["cell"])  # rows are lattice vectors
        box = jnp.asarray(cell.T)  # jax-md: columns are lattice vectors
        position = jnp.asarray(np.mod(positions @ np.linalg.inv(cell), 1.0))  # fractional, as the paper's scripts
        displacement, _ = space.periodic_general(box, fractional_coordinates=True)
        neighbor_fn = partition.neighbor_list(displacement, box, PERIODIC_CUTOFF, format=partition.Sparse,
                                              fractional_coordinates=True, disable_cell_list=True)
        cutoff, onset, grid = PERIODIC_CUTOFF, PERIODIC_ONSET, EWALD_GRID if method == "ewald" else PME_GRID
    else:
        box = None
        position = jnp.asarray(positions)
        displacement, _ = space.free()
        neighbor_fn = partition.neighbor_list(displacement, 100.0, MOLECULE_CUTOFF, format=partition.Sparse,
                                              disable_cell_list=True)
        cutoff, onset, grid = MOLECULE_CUTOFF, MOLECULE_ONSET, None
    neighbors = neighbor_fn.allocate(position)
    box_kwargs = {} if box is None else {"box": box}  # the paper's models pass the box per structure
    energy_fn = reference.charge_eq_energy_neighborlist(
        displacement, r_onset=onset, r_cutoff=cutoff, solver="direct", electrostatics=method,
        grid=grid, alpha=ALPHA, fractional_coordinates=True, box=box,
    )
    function_energy, charges = energy_fn(position, neighbors, radii=widths, chi=chi, idmp=hardness,
                                         total_charge=s * total_charge, **box_kwargs)
    model_energy = energy_fn(position, neighbors, radii=widths, charge=charges, **box_kwargs)
    self_energy = reference.shielded_self(charges, widths)
    return {
        "method": method, "alpha": ALPHA, "real_cutoff": cutoff, "switch_onset": onset, "grid": grid,
        "n_pairs": int(neighbors.idx.shape[1]),
        "charges": (np.asarray(charges) / s).tolist(),
        "function_energy": float(function_energy),
        "model_energy": float(model_energy),
        "pair_energy": float(model_energy - self_energy),
    }


def main(inputs_path: str, out_path: str) -> None:
    import jax_md

    data = json.loads(open(inputs_path).read())
    k_e = data["coulomb_constant"]
    versions = {"jax": jax.__version__, "jax_md": getattr(jax_md, "__version__", "?")}
    results = []
    runs = [(case, method) for method in ("direct", "ewald", "pme") for case in data["celli_cases"]
            if (method == "direct") != data["structures"][case["structure"]]["periodic"]]
    for case, method in runs:  # cheapest first; the file is rewritten after each case
        structure = data["structures"][case["structure"]]
        result = _solve(structure, data["celli"][case["structure"]], case["total_charge"], method, k_e)
        results.append({**case, **result})
        open(out_path, "w").write(json.dumps({"versions": versions, "results": results}))
        print(f"{case['structure']} Q={case['total_charge']} {method}: done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
