"""Periodic graphs as torch tensors: ``AtomicGraph`` and batches of them.

Neighbour lists, a structure's numpy arrays and the graph cache are data preparation:
``farfield.data.graphs``.
"""

from farfield.models.graph.batch import AtomicGraph, collate, matrix_to_voigt

__all__ = ["AtomicGraph", "collate", "matrix_to_voigt"]
