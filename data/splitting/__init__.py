"""Train/val/test splits over parent MOFs: strategies, statistics, split files.

``make_split(store, SplitConfig)`` is the API of ``farfield split make``; strategies are
small classes in :mod:`.strategies` picked by ``SplitConfig.strategy``.
"""

from farfield.data.splitting.api import (
    SplitOutcome,
    assign_sides,
    make_split,
    parents_table_path,
    random_split,
    side_counts,
    split_parents,
    split_statistics,
)
from farfield.data.splitting.split_file import SIDES, Split
from farfield.data.splitting.strategies import STRATEGIES, ParentSet, SplittingStrategy, strategy_from_config

__all__ = ["SIDES", "STRATEGIES", "ParentSet", "Split", "SplitOutcome", "SplittingStrategy", "assign_sides",
           "make_split", "parents_table_path", "random_split", "side_counts", "split_parents",
           "split_statistics", "strategy_from_config"]
