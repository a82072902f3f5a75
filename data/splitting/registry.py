"""Split strategies by name: ``split.strategy`` → the strategy object with its parameters."""

from __future__ import annotations

from farfield.data.config import DEFAULT_KMEANS_CLUSTERS, STRATEGY_NAMES, SplitConfig
from farfield.data.splitting.paper import FarthestFromSeedSplit, KMeansSplit
from farfield.data.splitting.strategies import (
    ClusterSplit,
    ElementSplit,
    MaxSeparationSplit,
    MetalSplit,
    RandomSplit,
    SizeSplit,
    SplittingStrategy,
)

__all__ = ["BIASED", "STRATEGIES", "kmeans_clusters", "strategy_from_config"]

STRATEGIES: dict[str, type[SplittingStrategy]] = {
    cls.name: cls for cls in (RandomSplit, SizeSplit, MaxSeparationSplit, ClusterSplit, ElementSplit, MetalSplit,
                              KMeansSplit, FarthestFromSeedSplit)
}
if tuple(STRATEGIES) != STRATEGY_NAMES:  # the config's names are the registry's: one list, checked here
    raise RuntimeError(f"strategy classes {tuple(STRATEGIES)} differ from SplitConfig's {STRATEGY_NAMES}")
#: Strategies whose test set is out of distribution on purpose: their test parents with an
#: element absent from the training side are excluded (and counted in the split file).
BIASED = frozenset(STRATEGIES) - {"random"}


def kmeans_clusters(config: SplitConfig) -> int:
    """Clusters of ``strategy: kmeans``: ``split.n_clusters``, else the paper's 20."""
    return config.n_clusters if config.n_clusters is not None else DEFAULT_KMEANS_CLUSTERS


def strategy_from_config(config: SplitConfig) -> SplittingStrategy:
    """The strategy object named by ``config.strategy`` with its parameters."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"split.strategy {config.strategy!r} is unknown; expected one of {sorted(STRATEGIES)}")
    if config.strategy == "max_separation":
        return MaxSeparationSplit(gap=config.gap)
    if config.strategy == "cluster":
        return ClusterSplit(config.held_out_clusters, config.n_folds, config.fold)
    if config.strategy in ("element", "metal"):
        return STRATEGIES[config.strategy](element=config.element or "")
    if config.strategy == "size":
        return SizeSplit(max_train_atoms=config.max_train_atoms)
    return STRATEGIES[config.strategy]()
