"""Periodic graphs: neighbour lists and batches of structures."""

from farfield.models.graph.batch import AtomicGraph, collate, matrix_to_voigt
from farfield.models.graph.neighbors import NeighborPairs, neighbor_pairs

__all__ = ["AtomicGraph", "NeighborPairs", "collate", "matrix_to_voigt", "neighbor_pairs"]
