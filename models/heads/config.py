"""Options of the long-range heads (``model.heads.<name>`` in a trial config).

Every head has a sub-section with defaults; a head listed in ``model.long_range``
reads its own and ignores the others. Units: Å, 1/Å, eV/e² as named.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from farfield.data.config import StrictModel

ElectrostaticsMethod = Literal["auto", "ewald", "pme"]


class CelliConfig(StrictModel):
    """CELLI charge equilibration.

    ``parametrisation``: how χ, J and σ come from the backbone and what is fed back
    (``farfield.models.heads.celli_parameters``, docs/fidelity.md) — ``reference`` (default:
    the paper's CELLI layer: χ from an MLP of edge features, J = softplus(h) from h = 10,
    σ from covalent radii, stop-gradient of σ in the energy) or ``farfield`` (χ from an MLP
    of node features, J and σ per element from ``initial_hardness`` and ``initial_width``).
    ``hidden`` × ``hidden_layers``: hidden widths of the MLPs (default: 128 × 2 for
    ``reference``, the paper's, and 32 × 1 for ``farfield``). ``initial_hardness`` (eV/e²) and
    ``initial_width`` (Å): starting per-element hardness and width of the ``farfield``
    parametrisation (other values are an error with ``reference``). ``accuracy``: relative accuracy of the
    periodic Coulomb sums; ``method``: Ewald k-sum, PME or ``auto`` (by size).
    ``solver``: ``dense`` (exact, O(n³)), ``cg`` (matrix-free conjugate gradients) or
    ``auto`` (dense up to ``dense_max_atoms`` atoms per structure). ``cg_tolerance``:
    relative residual; ``cg_max_iter``: iterations before giving up. ``feedback``: run the
    backbone a second time with what the parametrisation feeds back (``reference``: an edge
    MLP of the charges and elements, as the paper's models always do; ``farfield``: the
    charges) as a per-atom input.
    ``energy``: the term added to the energy — ``electrostatic`` (default: pair interaction
    + Gaussian self-energies of the equilibrated charges, what the paper's CELLI models add;
    docs/fidelity.md), ``coulomb`` (the pair interaction only) or ``qeq`` (the whole
    minimised charge-equilibration energy, what chemtrain's solver function returns).
    """

    parametrisation: Literal["reference", "farfield"] = "reference"
    hidden: int | None = Field(default=None, ge=1)
    hidden_layers: int | None = Field(default=None, ge=1)
    initial_hardness: float = Field(default=8.0, gt=0)
    initial_width: float = Field(default=1.0, gt=0)
    accuracy: float = Field(default=1e-6, gt=0, lt=1)
    method: ElectrostaticsMethod = "auto"
    solver: Literal["auto", "dense", "cg"] = "auto"
    dense_max_atoms: int = Field(default=5000, ge=1)
    cg_tolerance: float = Field(default=1e-10, gt=0, lt=1)
    cg_max_iter: int = Field(default=1000, ge=1)
    feedback: bool = True
    energy: Literal["coulomb", "electrostatic", "qeq"] = "electrostatic"

    @model_validator(mode="after")
    def _farfield_options_only_with_farfield(self) -> CelliConfig:
        fields = type(self).model_fields
        misplaced = [name for name in ("initial_hardness", "initial_width") if getattr(self, name) != fields[name].default]
        if misplaced and self.parametrisation != "farfield":
            raise ValueError(
                f"model.heads.celli: {', '.join(misplaced)} belong to parametrisation: farfield; "
                f"the {self.parametrisation!r} parametrisation starts from its own values"
            )
        return self

    def mlp_widths(self) -> tuple[int, int]:
        """``(hidden width, hidden layers)`` of the parametrisation's MLPs."""
        default = (128, 2) if self.parametrisation == "reference" else (32, 1)
        return self.hidden or default[0], self.hidden_layers or default[1]


class LesConfig(StrictModel):
    """LES latent Ewald summation.

    ``hidden``: width of the latent-charge MLP. ``smearing`` σ (Å): Gaussian of the
    reciprocal-space sum. ``wavelength_cutoff`` λ_c (Å): wave vectors ``|k| ≤ 2π/λ_c``.
    ``neutral``: shift each structure's latent charges to sum to its total charge.
    ``background``: add the neutralising-background term −π k_e σ² Q²/V of a periodic cell
    with net latent charge Q. Off by default, as in the reference LES (and MACELES), so the
    energy equals LES's for any charges (docs/long_range.md).
    """

    hidden: int = Field(default=32, ge=1)
    smearing: float = Field(default=1.0, gt=0)
    wavelength_cutoff: float = Field(default=2.0, gt=0)
    neutral: bool = False
    background: bool = False


class EfaConfig(StrictModel):
    """Euclidean fast attention (periodic construction in docs/long_range.md).

    ``n_heads`` × ``head_dim``: attention width. ``max_frequency`` k_max (1/Å): largest
    wave number (shortest wavelength 2π/k_max). ``n_basis``: radial basis functions of
    the learned spectral kernel. ``lebedev_degree``: Lebedev rule of the directions for
    non-periodic structures; ``radial_nodes``: Gauss–Legendre nodes in |k| for them.
    """

    n_heads: int = Field(default=4, ge=1)
    head_dim: int = Field(default=4, ge=1)
    max_frequency: float = Field(default=1.5, gt=0)
    n_basis: int = Field(default=8, ge=1)
    lebedev_degree: int = Field(default=35, ge=3)
    radial_nodes: int = Field(default=16, ge=2)

    @model_validator(mode="after")
    def _known_lebedev_degree(self) -> EfaConfig:
        from farfield.models.heads.efa import lebedev_degrees

        degrees = lebedev_degrees()
        if self.lebedev_degree not in degrees:
            raise ValueError(
                f"model.heads.efa.lebedev_degree = {self.lebedev_degree} is not an available Lebedev rule; "
                f"choose one of {degrees}"
            )
        return self


class D3Config(StrictModel):
    """D3 dispersion with Becke–Johnson damping (``dftd3``), a fixed physical term.

    ``functional``: the DFT functional whose D3(BJ) parameters to use (e.g. ``pbe``).
    ``three_body``: include the Axilrod–Teller–Muto three-body term (off, as in dftd3's
    own default). ``cutoff``,
    ``three_body_cutoff``, ``coordination_cutoff`` (Å): real-space cutoffs of the
    two-body sum, the three-body sum and the coordination numbers (dftd3's defaults:
    60, 40 and 40 bohr).
    """

    functional: str = "pbe"
    three_body: bool = False
    cutoff: float = Field(default=60 * 0.529177210903, gt=0)
    three_body_cutoff: float = Field(default=40 * 0.529177210903, gt=0)
    coordination_cutoff: float = Field(default=40 * 0.529177210903, gt=0)


class HeadsConfig(StrictModel):
    """One optional sub-section per head; a head listed in ``model.long_range`` reads its own."""

    celli: CelliConfig = Field(default_factory=CelliConfig)
    les: LesConfig = Field(default_factory=LesConfig)
    efa: EfaConfig = Field(default_factory=EfaConfig)
    d3: D3Config = Field(default_factory=D3Config)
