"""Compatibility names: the split file and the random split (see :mod:`farfield.data.splitting`)."""

from farfield.data.splitting import SIDES, Split, make_split, random_split, split_statistics

__all__ = ["SIDES", "Split", "make_split", "random_split", "split_statistics"]
