"""Where and how the forward pass runs: device, precision, batch size.

- ``device="auto"`` picks CUDA, then MPS, then the CPU.
- ``precision="auto"`` is bf16 autocast on a GPU that supports it (fp16
  otherwise). On the CPU, the extractor (inference) runs bf16 where the CPU
  computes bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``, ARM ``bf16``;
  :func:`cpu_has_native_bf16`) and fp32 elsewhere, where bf16 is emulated and
  slower; training (the fine-tuners) stays fp32 on every CPU. The bf16 choice
  was measured on every demo task (``docs/performance.md``).
- ``batch_size="auto"`` starts at 32 images / 64 texts on the CPU and 256 on a
  GPU, and halves on out-of-memory errors (CUDA, MPS and the CPU allocator's),
  down to a floor; past it, a ``MemoryError`` says what to do. Any other error
  is re-raised untouched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
from collections.abc import Callable

import torch

__all__ = [
    "AutoBatchSize",
    "autocast",
    "cpu_has_native_bf16",
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


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as the operating system lists them (lower case)."""
    if platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key.strip() in ("flags", "Features"):  # x86, ARM
                        return set(value.lower().split())
        except OSError:
            return set()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return set()
        return {"bf16"} if out == "1" else set()
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware.

    x86: ``avx512_bf16`` or ``amx_bf16`` (Intel Cooper Lake and Sapphire Rapids
    on, AMD Zen 4 on); ARM: ``bf16`` (Graviton 3 on, Apple M2 on). Read once per
    process from ``/proc/cpuinfo`` (Linux) or ``sysctl`` (macOS); anything else
    says False. ``SKTRANSFER_CPU_BF16=0`` / ``=1`` overrides the answer.
    :func:`sktransfer.clear_caches` forgets it.

    Examples
    --------
    >>> isinstance(cpu_has_native_bf16(), bool)
    True
    """
    forced = os.environ.get("SKTRANSFER_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_precision(
    precision: str, device: torch.device, *, training: bool = False
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None means fp32).

    ``"auto"``: bf16 on a GPU that supports it, else fp16; on the CPU, bf16 for
    inference when :func:`cpu_has_native_bf16`, fp32 otherwise and for training.

    Examples
    --------
    >>> resolve_precision("auto", torch.device("cpu"), training=True) is None
    True
    >>> resolve_precision("bf16", torch.device("cpu"))
    torch.bfloat16
    """
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and not training and cpu_has_native_bf16():
            return torch.bfloat16
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
