"""Chemical space of parent MOFs: descriptors, metrics, embedding and clusters.

Data flow: frames → :func:`describe_frames` (per structure; :func:`store_descriptors`
shards it over Ray actors and caches it by dataset hash) → :func:`chemical_space` (per
parent, standardised, joint metric with weight ``w``) → :func:`cluster_parents` (PCA +
HDBSCAN, explicit noise handling). The paper's protocol: :class:`MeanSoapSettings` (one
frame per parent, same sharded cache) → :func:`soap_cosine_space` (1 − cosine of mean SOAP)
→ :func:`kmeans_parents`.
"""

from farfield.data.chemspace.clustering import Clustering, cluster_parents, embed, embed_2d, kmeans_parents
from farfield.data.chemspace.descriptors import (
    DescriptorKind,
    DescriptorSettings,
    FrameDescriptors,
    describe_frames,
)
from farfield.data.chemspace.mean_soap import (
    MeanSoapSettings,
    index_parents,
    mean_soap_settings,
    soap_cosine_space,
)
from farfield.data.chemspace.metric import DEFAULT_WEIGHT, METRICS, ChemicalSpace, chemical_space
from farfield.data.chemspace.sharded import describe_shards, descriptor_cache_path, store_descriptors

__all__ = ["DEFAULT_WEIGHT", "METRICS", "ChemicalSpace", "Clustering", "DescriptorKind", "DescriptorSettings",
           "FrameDescriptors", "MeanSoapSettings", "chemical_space", "cluster_parents", "describe_frames",
           "describe_shards", "descriptor_cache_path", "embed", "embed_2d", "index_parents", "kmeans_parents",
           "mean_soap_settings", "soap_cosine_space", "store_descriptors"]
