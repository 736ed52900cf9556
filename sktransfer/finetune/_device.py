"""``device="auto"`` for a skorch net: kept as given, resolved where it is read."""

from __future__ import annotations

import torch

from sktransfer._runtime import resolve_device

__all__ = ["DeviceParamMixin"]


class DeviceParamMixin:
    """skorch reads ``self.device`` wherever it moves tensors; this keeps the
    value the user gave (``"auto"``) for ``get_params`` and ``clone``, returns the
    resolved device to skorch, and pickles so that a CUDA-trained net unpickles on
    a CPU-only machine."""

    # ``device="auto"`` is kept as given (get_params, clone) and resolved
    # wherever skorch reads ``self.device``.
    @property
    def device(self):
        raw = self.__dict__.get("device", "auto")
        return (
            str(resolve_device(raw)) if isinstance(raw, str) and raw == "auto" else raw
        )

    @device.setter
    def device(self, value):
        self.__dict__["device"] = value

    def _resolved_device(self) -> torch.device:
        """Where the net computes: ``device`` resolved and checked as the
        extractor checks it (a clear error when CUDA or MPS is not there); with
        ``device=None`` (an accelerator places everything) the accelerator's
        device."""
        raw = self.device
        if raw is None:
            accelerator = getattr(self, "accelerator", None)
            return (
                accelerator.device if accelerator is not None else torch.device("cpu")
            )
        return resolve_device(raw)

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params["device"] = self.__dict__.get("device", "auto")
        # skorch's own bookkeeping, which skorch 1.4 lists as a parameter
        params.pop("_params_to_validate", None)
        return params

    def __getstate__(self):
        state = super().__getstate__()
        state["sktransfer_device"] = state.get("device", "auto")
        state["device"] = self.device  # skorch maps CUDA tensors by this on load
        return state

    def __setstate__(self, state):
        raw = state.pop("sktransfer_device", state.get("device", "auto"))
        super().__setstate__(state)  # CUDA-trained tensors land on the CPU if needed
        if str(raw).startswith("cuda") and not torch.cuda.is_available():
            raw = "cpu"
        self.__dict__["device"] = raw
