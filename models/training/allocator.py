"""The C library's allocator set up for training on CPU: freed tensor memory is kept for reuse.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves every block above its
mmap threshold (128 KiB at start, adapting) with fresh pages from the kernel and gives the top of
its heap back to the kernel when more than 128 KiB of it is free. A training step on a batch of
MOFs makes dozens of (n_edges, F) temporaries of 1-4 MB each (forward, backward and the double
backward of the forces), so without tuning each of them is page-faulted and zeroed by the
kernel again at every step. With the mmap threshold at its maximum (32 MiB on 64-bit glibc) and
trimming off, freed blocks stay in the heap and the next step reuses them.

Measured in a trial's own data path on the study's model (configs/study-paper.yaml: PaiNN 32 x 2,
4.5 Å, batch 4, one thread): 0.174 → 0.147 s per training step, median of 3 fresh processes
each, peak RSS unchanged at ~1 GB (benchmarks/trial_step.py --compare-malloc). How much glibc's
own adaptive threshold already gives depends on the process's history: a process that first
unpickled or read a large file may see no difference.

Set ``FARFIELD_MALLOC=system`` to leave the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``), bytes.
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: Free heap top kept before glibc trims it, bytes (1 GiB: in practice never).
_TRIM_THRESHOLD = 1 << 30
#: The environment variable that opts out (``system``).
ENV_VAR = "FARFIELD_MALLOC"

_retained = False


def retain_freed_memory() -> bool:
    """Keep freed memory in this process's heap for reuse (glibc on Linux); idempotent.

    Returns True when the allocator is (now or already) set up, False where it was left alone:
    not Linux, no glibc ``mallopt``, or ``FARFIELD_MALLOC=system``.
    """
    global _retained
    if _retained:
        return True
    if os.environ.get(ENV_VAR, "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _retained = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _retained
