"""Process-wide state: who owns each piece, and the one way to clear it all.

- Loaded backbones, and per backbone its device copies, compiled forms and
  output widths: owned by :mod:`sktransfer.backbones._factory`, an LRU of
  :class:`~sktransfer.backbones.LoadedBackbone` (``MAX_LOADED``), each of which
  owns what derives from it (evicting one frees it all).
- The default in-memory embedding cache (``cache="memory"``): owned by
  :mod:`sktransfer._cache`, bounded by its ``max_bytes`` (1 GiB).
- One :class:`~sktransfer.DiskCache` handle per directory named by a string:
  owned by :mod:`sktransfer._cache`.
- Whether the CPU computes bf16 natively (read once): owned by
  :func:`sktransfer._runtime.cpu_has_native_bf16`.

Nothing else is kept between calls.
"""

from __future__ import annotations

from sktransfer._cache import clear_store_handles
from sktransfer._runtime import cpu_has_native_bf16
from sktransfer.backbones._factory import clear_loaded

__all__ = ["clear_caches"]


def clear_caches() -> None:
    """Free all process-wide state: loaded backbones (with their device copies,
    compiled forms and widths), the in-memory embedding cache, the disk-cache
    handles and the remembered CPU bf16 support.

    Files of a disk cache are never deleted here (they are yours; use
    :meth:`sktransfer.DiskCache.clear`).

    Examples
    --------
    >>> import sktransfer
    >>> sktransfer.clear_caches()
    >>> len(sktransfer.memory_cache())
    0
    """
    clear_loaded()
    clear_store_handles()
    cpu_has_native_bf16.cache_clear()
