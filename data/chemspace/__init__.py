"""Chemical space of parent MOFs: descriptors, the joint metric, embedding and clusters.

Data flow: frames → :func:`describe_frames` (per structure; :func:`store_descriptors`
shards it over Ray actors and caches it by dataset hash) → :func:`chemical_space` (per
parent, standardised, joint metric with weight ``w``) → :func:`cluster_parents` (PCA +
HDBSCAN, explicit noise handling).
"""

from farfield.data.chemspace.clustering import Clustering, cluster_parents, embed
from farfield.data.chemspace.descriptors import DescriptorSettings, FrameDescriptors, describe_frames
from farfield.data.chemspace.metric import DEFAULT_WEIGHT, ChemicalSpace, chemical_space
from farfield.data.chemspace.sharded import describe_shards, descriptor_cache_path, store_descriptors

__all__ = ["DEFAULT_WEIGHT", "ChemicalSpace", "Clustering", "DescriptorSettings", "FrameDescriptors",
           "chemical_space", "cluster_parents", "describe_frames", "describe_shards",
           "descriptor_cache_path", "embed", "store_descriptors"]
