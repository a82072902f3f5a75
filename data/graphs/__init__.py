"""Graph preparation, the data stage between a dataset store and a model's tensors.

    neighbors   vesin's full periodic neighbour list of one structure; the cutoff check
    arrays      one structure as the numpy arrays of a graph (inputs, labels, edges)
    cache       those arrays for every shard of a store, per (dataset hash, cutoff), on Ray

Numpy only: ``farfield.models.graph.AtomicGraph.from_arrays`` makes tensors of the arrays.
"""

from farfield.data.graphs.arrays import ATOM_KEYS, EDGE_KEYS, STRUCTURE_KEYS, structure_arrays
from farfield.data.graphs.cache import FORMAT_VERSION, CacheFileError, GraphCache, graph_cache_dir, precompute_graphs
from farfield.data.graphs.cache import shard_arrays
from farfield.data.graphs.neighbors import NeighborPairs, check_cutoff, neighbor_pairs

__all__ = ["ATOM_KEYS", "EDGE_KEYS", "FORMAT_VERSION", "STRUCTURE_KEYS", "CacheFileError", "GraphCache",
           "NeighborPairs", "check_cutoff", "graph_cache_dir", "neighbor_pairs", "precompute_graphs",
           "shard_arrays", "structure_arrays"]
