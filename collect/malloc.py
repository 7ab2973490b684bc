"""Keep freed memory in the process (glibc): large CPU tensors without fresh page faults.

A CPU training step allocates and frees the same large tensors at every step: the logits of
the ℓ target tokens over the vocabulary and their gradient (100 MB each at ℓ = 512 on
SmolLM2's 49,152 tokens), the activations of every layer above the prefix cache. glibc serves
a block above its mmap threshold (128 KiB, raised as blocks are freed, to 32 MiB at most) with
a fresh ``mmap`` and unmaps it when it is freed, so every step takes a page fault and a
kernel zeroing for each of those pages again: about a tenth of a step on SmolLM2 at
ℓ = 512 (``python benchmarks/bench_malloc.py`` measures it against glibc's defaults in
the same run, and checks that ΔL is the same to the bit: the allocator never touches the
arithmetic).

:func:`keep_freed_memory` raises the mmap and trim thresholds so that freed blocks stay in
the heap for the next step. The process keeps the memory of its largest step instead of
returning it between steps, which it would take again a moment later. Set
``COLLECT_MALLOC=system`` to leave glibc's defaults; on other C libraries (macOS, musl) it
does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

from collect.errors import CollectError

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap, and this much free memory may stay at its top
KEEP_BYTES = 1 << 30
#: ``COLLECT_MALLOC=system`` leaves the C library's defaults
ENV = "COLLECT_MALLOC"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`KEEP_BYTES`, once per process.

    Returns
    -------
    bool
        True where the thresholds are raised (now or by an earlier call); False on a C library
        other than glibc, or where ``COLLECT_MALLOC=system`` asks for the defaults.

    Raises
    ------
    CollectError
        ``COLLECT_MALLOC`` holds something other than ``system`` or ``keep``.
    """
    global _applied
    if _applied is not None:
        return _applied
    choice = os.environ.get(ENV, "keep")
    if choice not in ("keep", "system"):
        raise CollectError(
            f"{ENV} takes 'keep' (the default: freed memory stays for the next step) or "
            f"'system' (the C library's defaults), got {choice!r}; unset it or pick one."
        )
    _applied = choice == "keep" and _glibc_keep()
    return _applied


def _glibc_keep() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    done = [libc.mallopt(param, KEEP_BYTES) for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)]
    return all(done)


__all__ = ["ENV", "KEEP_BYTES", "keep_freed_memory"]
