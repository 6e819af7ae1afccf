"""
Which heap allocator this process runs with, said once in the training log.

A CPU training step allocates and frees many tensors of several MB (the joint encoder's VTM pairs, the video tower's
activations and their gradients). glibc's malloc serves blocks that large with `mmap` and hands them back to the
system when they are freed, so the next step page-faults them in again; tcmalloc keeps freed memory for reuse. With
Debian's `libtcmalloc-minimal4` preloaded (`LD_PRELOAD`, as `make quickstart` and `make ablation` do), 150 steps
of the quickstart trained in 53 s instead of 65 s of `train_runtime`, with a fifth of the page faults (README,
"Training speed on CPU"; `python -m benchmarks.allocator_cost`). The allocator has to be chosen before Python starts,
so the library can only report it, not switch it.
"""

import logging
import os

logger = logging.getLogger(__name__)

# Shared-library name -> allocator, as it appears among the mapped files of a process that preloads it.
ALLOCATOR_LIBRARIES = {"libtcmalloc": "tcmalloc", "libjemalloc": "jemalloc", "libmimalloc": "mimalloc"}
TCMALLOC_HINT = ("LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 (Debian package "
                 "libtcmalloc-minimal4; training/install_tcmalloc.sh installs it)")


def active_allocator(maps_file: str = "/proc/self/maps") -> str:
    """`"tcmalloc"`, `"jemalloc"` or `"mimalloc"` when that library is mapped into this process, `"glibc"` when none
    is, `"unknown"` where the process's memory map cannot be read (not Linux)."""
    try:
        with open(maps_file, encoding="utf-8", errors="replace") as handle:
            mapped = {os.path.basename(line.split()[-1]) for line in handle if "/" in line}
    except OSError:
        return "unknown"
    for library, allocator in ALLOCATOR_LIBRARIES.items():
        if any(name.startswith(library) for name in mapped):
            return allocator
    return "glibc"


def log_allocator() -> str:
    """Logs the allocator once (with how to get tcmalloc when it is glibc's malloc) and returns its name."""
    allocator = active_allocator()
    if allocator == "glibc":
        logger.info("Heap allocator: glibc malloc. On CPU, training with tcmalloc preloaded is about a sixth faster "
                    "(README, \"Training speed on CPU\"): start Python with %s.", TCMALLOC_HINT)
    else:
        logger.info("Heap allocator: %s.", allocator)
    return allocator


__all__ = ["active_allocator", "log_allocator", "ALLOCATOR_LIBRARIES"]
