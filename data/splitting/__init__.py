"""Train/val/test splits over parent MOFs: strategies, statistics, split files.

``make_split(store, SplitConfig)`` is the API of ``farfield split make``; strategies are
small classes in :mod:`.strategies` (farfield's) and :mod:`.paper` (the paper's protocol),
picked by ``SplitConfig.strategy`` through :mod:`.registry`; :mod:`.element_coverage` holds
the rare-element and unseen-element rules.
"""

from farfield.data.splitting.api import (
    SplitOutcome,
    assign_sides,
    make_split,
    parent_space,
    parents_table_path,
    random_split,
    side_counts,
    split_parents,
    split_statistics,
    validation_count,
)
from farfield.data.splitting.element_coverage import RareElements, drop_rare_elements, exclude_unseen_elements
from farfield.data.splitting.registry import BIASED, STRATEGIES, strategy_from_config
from farfield.data.splitting.split_file import SIDES, Split, split_path
from farfield.data.splitting.strategies import ParentSet, SplittingStrategy

__all__ = ["BIASED", "SIDES", "STRATEGIES", "ParentSet", "RareElements", "Split", "SplitOutcome",
           "SplittingStrategy", "assign_sides", "drop_rare_elements", "exclude_unseen_elements", "make_split",
           "parent_space", "parents_table_path", "random_split", "side_counts", "split_parents",
           "split_path", "split_statistics", "strategy_from_config", "validation_count"]
