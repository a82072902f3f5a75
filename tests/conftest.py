"""Shared fixtures: float64 by default for physics, small real structures, seeded RNGs.

Structures come from ``tests/data`` (see its README for provenance) or from ASE's
builders with fixed seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import ase.build
import ase.io
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

DATA = Path(__file__).parent / "data"

# The pytest process ends with the session's status before interpreter finalization, where
# Ray's leftover threads once crashed a green CI run (see tests/session_exit.py).
pytest_plugins = ["tests.session_exit"]


# Test graphs and matrices are small: one thread is fastest and avoids OpenMP/BLAS
# oversubscription when several processes (Ray workers, servers) share the two cores.
torch.set_num_threads(1)
threadpool_limits(1)


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Every test runs in float64 with seeded torch/numpy unless it asks otherwise."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def nacl_cell():
    """Rock-salt NaCl conventional cell (8 atoms, a = 5.64 Å), rattled by 0.05 Å."""
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.fixture
def triclinic_cell():
    """A small non-orthogonal periodic cell: primitive fcc Cu, 2 atoms, rattled."""
    atoms = ase.build.bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=2)
    return atoms


@pytest.fixture
def water_dimer():
    """A non-periodic water dimer (from tests/data if present, else built)."""
    path = DATA / "water_dimer.extxyz"
    if path.exists():
        return ase.io.read(path)
    a = ase.build.molecule("H2O")
    b = ase.build.molecule("H2O")
    b.translate([2.9, 0.0, 0.2])
    return a + b


@pytest.fixture
def mof_cell():
    """The smallest bundled CoRE MOF cell with GFN1-xTB labels (tests/data/mof_small.extxyz)."""
    path = DATA / "mof_small.extxyz"
    if not path.exists():
        pytest.fail(f"test fixture missing: {path}")
    return ase.io.read(path)


@pytest.fixture(scope="session")
def isolated_home(tmp_path_factory):
    """HOME and Ray's temp dir inside a test folder (Ray 2.60 writes an auth token into HOME)."""
    home = tmp_path_factory.mktemp("home")
    old = {k: os.environ.get(k) for k in ("HOME", "RAY_TMPDIR")}
    os.environ["HOME"] = str(home)
    yield home
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
