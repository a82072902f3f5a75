"""The paper's chemical-space metric: mean per-atom SOAP vectors compared by cosine similarity.

Settings follow the paper's published code (../shared/PAPER.md): ``dscribe`` SOAP with
r_cut 4 Å, n_max 9, l_max 9, σ 0.1 Å, GTO radial basis, species-resolved over the dataset's
elements, ``"crossover"`` compression (the power spectrum is taken within each species only,
so the vector has n_species · n_max(n_max+1)/2 · (l_max+1) entries — 27,900 for 62 species —
growing linearly with the number of species). A structure is the mean of its per-atom vectors
(dscribe ``average="outer"``); the distance between two parents is 1 − cosine similarity of
those means. Because the channels are species-resolved, this one number mixes geometry and
composition (farfield's joint metric keeps them as two weighted blocks instead).

Cost: about 2 ms per atom with 62 species on one core, so each parent is described by **one
representative frame — its first configuration in the store index** — not by every
configuration (the first in the whole store, even where ``data.min_element_parents`` dropped
that configuration from a parent it kept in part). Computed through :func:`farfield.data.chemspace.sharded.store_descriptors`
(Ray actors over shards, cached by dataset hash and these settings), i.e. once per store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import atomic_numbers
from pydantic import Field, field_validator

from farfield.data.chemspace.descriptors import DescriptorKind, FrameDescriptors, describe_with, soap_for_pbc
from farfield.data.chemspace.metric import ChemicalSpace

__all__ = ["MeanSoap", "MeanSoapSettings", "index_parents", "mean_soap_settings", "soap_cosine_space"]


class MeanSoapSettings(DescriptorKind):
    """The paper's SOAP (defaults as in its code); ``species``: element symbols, in Z order.

    ``r_cut``, ``sigma``: Å; ``n_max``/``l_max``: radial/angular orders; ``rbf``: dscribe radial
    basis; ``compression``: dscribe compression mode. Describes one frame per parent (``select``).
    """

    r_cut: float = 4.0
    n_max: int = 9
    l_max: int = 9
    sigma: float = 0.1
    rbf: Literal["gto", "polynomial"] = "gto"
    compression: Literal["crossover", "off"] = "crossover"
    species: list[str] = Field(min_length=1)

    @field_validator("species")
    @classmethod
    def _known_symbols_in_z_order(cls, species: list[str]) -> list[str]:
        unknown = [s for s in species if s not in atomic_numbers or s == "X"]
        if unknown:
            raise ValueError(f"species {unknown} are not element symbols (e.g. 'Zn', 'Cu')")
        return sorted(set(species), key=atomic_numbers.get)

    def select(self, index: pd.DataFrame) -> pd.DataFrame:
        """The representative frame of each parent: its first row in the index."""
        return index.drop_duplicates("parent_id", keep="first")

    def describe(self, frames: Sequence[Atoms]) -> FrameDescriptors:
        return describe_with(frames, MeanSoap(self))


def mean_soap_settings(elements) -> MeanSoapSettings:
    """The paper's settings over ``elements`` (e.g. a store manifest's ``elements``)."""
    return MeanSoapSettings(species=list(elements))


class MeanSoap:
    """``(atoms, structure_id)`` → (n_features,) mean of the per-atom SOAP vectors (not normalised)."""

    def __init__(self, settings: MeanSoapSettings):
        from dscribe.descriptors import SOAP

        self.settings = settings
        common = dict(species=list(settings.species), r_cut=settings.r_cut, n_max=settings.n_max,
                      l_max=settings.l_max, sigma=settings.sigma, rbf=settings.rbf, average="outer",
                      compression={"mode": settings.compression}, sparse=False)
        self._periodic = SOAP(periodic=True, **common)
        self._molecular = SOAP(periodic=False, **common)

    @property
    def n_features(self) -> int:
        return self._periodic.get_number_of_features()

    def __call__(self, atoms: Atoms, structure_id: str) -> np.ndarray:
        if len(atoms) == 0:
            raise ValueError(f"structure {structure_id!r} has no atoms; cannot describe it")
        missing = sorted(set(atoms.get_chemical_symbols()) - set(self.settings.species), key=atomic_numbers.get)
        if missing:
            raise ValueError(f"structure {structure_id!r} contains {' '.join(missing)}, absent from the SOAP "
                             f"species {' '.join(self.settings.species)}; build the settings from the store's "
                             f"elements (mean_soap_settings(store.manifest['elements']))")
        soap = soap_for_pbc(atoms, structure_id, self._periodic, self._molecular)
        return np.asarray(soap.create(atoms), dtype=np.float64).reshape(-1)


def index_parents(index: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    """Per parent of a store ``index`` (sorted by parent_id): ``(parent_ids (n,) str, mean atoms
    per configuration (n,), configurations (n,) int, element symbols in Z order)``."""
    grouped = index.groupby("parent_id", sort=True)
    elements = grouped["elements"].agg(lambda col: {e for entry in col for e in str(entry).split()})
    return (np.asarray(grouped.size().index, dtype=str), grouped["n_atoms"].mean().to_numpy(dtype=np.float64),
            grouped.size().to_numpy(), [tuple(sorted(row, key=atomic_numbers.get)) for row in elements])


def soap_cosine_space(descriptors: FrameDescriptors, index: pd.DataFrame) -> ChemicalSpace:
    """The parents of ``index`` as a :class:`ChemicalSpace` with ``metric="soap_cosine"``.

    ``descriptors``: mean SOAP of one representative frame per parent (``MeanSoapSettings``);
    ``index``: the store index rows in play (atoms, configurations and elements per parent
    come from all of a parent's rows there). Every parent of ``index`` needs a descriptor row.
    """
    parent_ids, n_atoms, n_configurations, elements = index_parents(index)
    if len(parent_ids) == 0:
        raise ValueError("soap_cosine_space: the index has no structures")
    row_of = {str(p): row for row, p in enumerate(descriptors.parent_ids)}
    missing = [p for p in parent_ids if p not in row_of]
    if missing:
        raise ValueError(f"soap_cosine_space: {len(missing)} parent(s) have no mean SOAP descriptor, e.g. "
                         f"{missing[:3]}; describe the store with MeanSoapSettings")
    vectors = descriptors.geometry[[row_of[p] for p in parent_ids]]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"soap_cosine_space: parents {list(parent_ids[norms[:, 0] == 0][:3])} have an all-zero "
                         f"mean SOAP vector (no neighbour within r_cut?); the cosine is undefined")
    return ChemicalSpace(parent_ids=parent_ids, n_atoms=n_atoms, n_configurations=n_configurations,
                         elements=elements, geometry=vectors / norms, composition=np.zeros((len(parent_ids), 0)),
                         composition_names=[], weight=1.0, metric="soap_cosine")
