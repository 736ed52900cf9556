"""A loaded backbone, and everything derived from it.

A :class:`LoadedBackbone` is the one owner of a network's runtime state: its
copies on other devices, its ``torch.compile`` forms and its output width per
layer and pooling. The factory (:mod:`sktransfer.backbones._factory`) keeps a
bounded number of them; evicting or clearing one calls :meth:`release`, which
frees all of that at once. Nothing is keyed by ``id()``: the state hangs off the
object it derives from.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sktransfer.backbones._features import build_feature_model, feature_width
from sktransfer.backbones._spec import BackboneSpec

__all__ = ["MAX_COMPILED", "LoadedBackbone"]

# compiled forms kept per backbone (least recently used out)
MAX_COMPILED = 4


@dataclass(eq=False)
class LoadedBackbone:
    """A loaded backbone, shared (read-only) by every estimator in the process.

    Attributes
    ----------
    spec : BackboneSpec
        The spec, with the preprocessing that the weights actually use.
    model : nn.Module
        The network in eval mode with gradients off. Never modify it in place:
        fine-tuning works on a deep copy.
    tokenizer : object or None
        A Hugging Face tokenizer, for text backbones.
    weights_id : str
        Identity of the weights that were loaded (file path, size and mtime; a
        package and version; or ``"random"``). Part of the embedding cache key.
    """

    spec: BackboneSpec
    model: nn.Module
    tokenizer: Any = None
    weights_id: str = "random"
    _device_copies: dict = field(default_factory=dict, repr=False)
    _compiled: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _widths: dict = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _lock: Any = field(default_factory=threading.RLock, repr=False)

    @property
    def is_user_module(self) -> bool:
        """A user's own ``nn.Module``: it may change in place, so nothing about
        it is remembered (no device copy, no width, no cache key)."""
        return self.spec.source == "module"

    def on_device(self, device: torch.device) -> nn.Module:
        """The network on ``device``: the original on the CPU, else one copy.

        A user's module is copied afresh on every call (it may have changed).
        """
        if device.type == "cpu":
            return self.model
        if self.is_user_module:
            return copy.deepcopy(self.model).to(device)
        key = str(device)
        with self._lock:
            if key not in self._device_copies:
                self._device_copies[key] = copy.deepcopy(self.model).to(device)
            return self._device_copies[key]

    def feature_model(
        self,
        device: torch.device,
        layer=None,
        pooling: str = "auto",
        compile_options: dict | None = None,
    ) -> nn.Module:
        """The feature module on ``device``; compiled once per settings if asked."""

        def eager() -> nn.Module:
            features = build_feature_model(
                self.spec, self.on_device(device), layer, pooling
            )
            return features.to(device).eval()

        if compile_options is None:
            return eager()
        if self.is_user_module:  # it may change: never remembered
            return torch.compile(eager(), **compile_options)
        key = (str(device), repr(layer), pooling, repr(sorted(compile_options.items())))
        with self._lock:
            if key not in self._compiled:
                self._compiled[key] = torch.compile(eager(), **compile_options)
                while len(self._compiled) > MAX_COMPILED:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(key)
            return self._compiled[key]

    def width(self, layer=None, pooling: str = "auto", n_features_in=None) -> int:
        """Output width for ``layer`` and ``pooling``, learnt by one CPU probe.

        The one source of truth for both estimators; remembered per settings
        (except for a user's module).
        """
        key = (repr(layer), pooling, n_features_in)
        with self._lock:
            if key in self._widths and not self.is_user_module:
                return self._widths[key]
            features = build_feature_model(self.spec, self.model, layer, pooling)
            features.eval()  # the shared network stays in eval mode
            width = feature_width(features, self.spec, self.tokenizer, n_features_in)
            if not self.is_user_module:
                self._widths[key] = width
            return width

    def fingerprint(self) -> str:
        """SHA-256 of the network's tensors (names, dtypes, shapes, bytes).

        The weights' identity wherever they live (``weights_id`` names a file
        on this machine); what a saved model records and checks at load.
        Remembered, except for a user's module (it may change in place).
        """
        with self._lock:
            if self._fingerprint is not None and not self.is_user_module:
                return self._fingerprint
            digest = hashlib.sha256()
            for name, tensor in self.model.state_dict().items():
                t = tensor.detach().cpu().contiguous()
                digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
            value = digest.hexdigest()
            if not self.is_user_module:
                self._fingerprint = value
            return value

    def release(self) -> None:
        """Free everything derived from this backbone (device copies, compiled
        forms, widths)."""
        with self._lock:
            self._device_copies.clear()
            self._compiled.clear()
            self._widths.clear()
            self._fingerprint = None

    def derived_state(self) -> dict[str, int]:
        """How many device copies, compiled forms and widths are held now."""
        with self._lock:
            return {
                "device_copies": len(self._device_copies),
                "compiled": len(self._compiled),
                "widths": len(self._widths),
            }
