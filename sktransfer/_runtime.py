"""Where and how the forward pass runs: device, precision, batch size.

- ``device="auto"`` picks CUDA, then MPS, then the CPU.
- ``precision="auto"`` is bf16 autocast on a GPU that supports it (fp16 otherwise)
  and fp32 on the CPU, where autocast rarely pays off.
- ``batch_size="auto"`` starts at 32 images / 64 texts on the CPU and 256 on a
  GPU, and halves on out-of-memory errors (CUDA, MPS and the CPU allocator's),
  down to a floor; past it, a ``MemoryError`` says what to do. Any other error
  is re-raised untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

__all__ = [
    "AutoBatchSize",
    "autocast",
    "is_oom",
    "resolve_device",
    "resolve_precision",
]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda:1"`` / ``"mps"`` into a device.

    Raises a ``ValueError`` that says so when the device is not available.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r}, but CUDA is not available here "
                "(torch.cuda.is_available() is False). Use device='auto' or 'cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r}, but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible."
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}, but MPS is not available here.")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None means fp32).

    Examples
    --------
    >>> resolve_precision("auto", torch.device("cpu")) is None
    True
    >>> resolve_precision("bf16", torch.device("cpu"))
    torch.bfloat16
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    return _DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_OOM_MESSAGES = (
    "out of memory",  # CUDA, MPS
    "can't allocate memory",  # the CPU allocator (DefaultCPUAllocator)
    "cannot allocate memory",
)


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA, MPS or CPU out-of-memory error.

    Examples
    --------
    >>> is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you "
    ...                     "tried to allocate 8 GB"))
    True
    >>> is_oom(ValueError("bad shape"))
    False
    """
    if isinstance(exc, MemoryError):
        return True
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _OOM_MESSAGES)


def default_batch_size(device: torch.device, modality: str) -> int:
    """Starting batch size for ``batch_size="auto"``."""
    if device.type == "cpu":
        return 64 if modality == "text" else 32
    return 256


class AutoBatchSize:
    """Run a function over chunks of a batch, halving the chunk size on OOM.

    Parameters
    ----------
    size : int
        Starting chunk size.
    adaptive : bool
        False for a user-fixed batch size: errors are re-raised at once.
    floor : int
        Smallest size tried before giving up.

    Attributes
    ----------
    history : list of int
        Every size used, in order (starts with ``size``).

    Examples
    --------
    >>> sizer = AutoBatchSize(8)
    >>> sizer.map(lambda lo, hi: hi - lo, 20)
    [8, 8, 4]
    >>> def big(lo, hi):
    ...     if hi - lo > 2:
    ...         raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    ...     return hi - lo
    >>> sizer = AutoBatchSize(8)
    >>> sizer.map(big, 5), sizer.history
    ([2, 2, 1], [8, 2])
    """

    def __init__(self, size: int, adaptive: bool = True, floor: int = 1):
        self.size = int(size)
        self.adaptive = adaptive
        self.floor = floor
        self.history = [self.size]

    def map(self, fn: Callable[[int, int], object], n: int) -> list:
        """Call ``fn(start, stop)`` on consecutive chunks covering ``range(n)``."""
        results = []
        start = 0
        while start < n:
            stop = min(n, start + self.size)
            try:
                results.append(fn(start, stop))
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if not self.adaptive or self.size <= self.floor:
                    raise MemoryError(self._advice(exc)) from exc
                # halve what was tried (a short last chunk may be below size)
                self.size = max(self.floor, (stop - start) // 2)
                self.history.append(self.size)
                _empty_cache()
                continue
            start = stop
        return results

    def _advice(self, exc: BaseException) -> str:
        if not self.adaptive:
            what = (
                f"Out of memory with batch_size={self.size}. Use a smaller "
                "batch_size, or batch_size='auto' to back off automatically"
            )
        else:
            what = (
                f"Out of memory even at batch_size={self.size} (tried {self.history})"
            )
        return (
            f"{what}; or free memory, use precision='bf16', a shorter max_length "
            f"(texts) or a smaller backbone. The error was: {exc}"
        )


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
