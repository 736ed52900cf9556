"""What the extractor and the fine-tuners share: one path for every job.

:class:`BackboneMixin` owns, for every estimator that runs a backbone, the input
checks and conversion, loading the backbone (with ``trust_remote_code``), the
output width (asked of the loaded backbone, the one source of truth), the
device / precision / max-length resolution, the scikit-learn input tags, and the
rule that a changed network needs a new ``fit`` (as skrub's single-column
transformers share one base for their column checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import validate_data
from torch import nn

from sktransfer._inputs import Samples, as_samples, check_texts
from sktransfer._runtime import resolve_device, resolve_precision
from sktransfer.backbones._factory import load_backbone
from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._registry import get_backbone_spec
from sktransfer.backbones._spec import BackboneSpec
from sktransfer.exceptions import InputError

__all__ = ["BackboneMixin", "Runtime", "modality_tags"]

# Parameters that decide which network runs and how wide its output is (and,
# for the fine-tuners, how the module is built: ``strategy="head"`` is a head on
# cached features, the others a whole network): after ``fit``, changing one of
# them needs a new ``fit``.
NETWORK_PARAMS = (
    "backbone",
    "weights",
    "layer",
    "pooling",
    "trust_remote_code",
    "strategy",
)


def modality_tags(tags, backbone):
    """Input tags for ``backbone``'s modality (2-D arrays only for tabular)."""
    try:
        modality = get_backbone_spec(backbone).modality
    except Exception:  # an invalid backbone is reported by fit, not by tags
        modality = "image"
    tags.input_tags.two_d_array = modality == "tabular"
    tags.input_tags.string = modality == "text"
    return tags


@dataclass(frozen=True)
class Runtime:
    """Where and how a backbone runs for one call."""

    device: torch.device
    dtype: torch.dtype | None
    max_length: int


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, nn.Module) or isinstance(b, nn.Module):
        return False  # a module is the same only if it is the same object
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # an exotic __eq__
        return False


class BackboneMixin:
    """Shared by :class:`~sktransfer.PretrainedFeatureExtractor` and the
    fine-tuners. Expects the parameters ``backbone``, ``weights``, ``pooling``,
    ``device``, ``precision``, ``max_length`` and ``trust_remote_code``."""

    # ------------------------------------------------------------ backbone
    def _backbone_spec(self) -> BackboneSpec:
        return get_backbone_spec(self.backbone)

    def _load_backbone(self) -> LoadedBackbone:
        spec = self._backbone_spec()
        n_in = self.n_features_in_ if spec.modality == "tabular" else None
        return load_backbone(
            spec,
            self.weights,
            n_features_in=n_in,
            trust_remote_code=self.trust_remote_code,
        )

    def _output_width(self, loaded: LoadedBackbone) -> int:
        n_in = self.n_features_in_ if loaded.spec.modality == "tabular" else None
        return loaded.width(getattr(self, "layer", None), self.pooling, n_in)

    def _resolved_device(self) -> torch.device:
        """The device computations run on (``"auto"`` resolved)."""
        return resolve_device(self.device)

    def _runtime(self, loaded: LoadedBackbone) -> Runtime:
        device = self._resolved_device()
        pre = loaded.spec.preprocessing
        return Runtime(
            device,
            resolve_precision(self.precision, device),
            self.max_length or getattr(pre, "max_length", 512),
        )

    # ------------------------------------------------------------ inputs
    def _check_samples(self, X, *, reset: bool) -> Samples:
        """Validate ``X`` for the backbone's modality (tabular: sklearn's
        ``validate_data``); with ``reset``, record ``n_features_in_`` and
        ``feature_names_in_``."""
        spec = self._backbone_spec()
        if spec.modality == "tabular":
            X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
            return Samples(X)
        samples = as_samples(X, spec.modality)
        if reset:
            self.n_features_in_ = 1
            if samples.feature_names is not None:
                self.feature_names_in_ = samples.feature_names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif (
            samples.feature_names is not None
            and hasattr(self, "feature_names_in_")
            and list(samples.feature_names) != list(self.feature_names_in_)
        ):
            raise InputError(
                f"X has column {samples.feature_names[0]!r}, but this estimator was "
                f"fitted on column {self.feature_names_in_[0]!r}."
            )
        return samples

    def _checked_samples(self, X, *, reset: bool) -> Samples:
        """``_check_samples``, and for texts the text checks (lone surrogates):
        the first bad text is an ``InputError``."""
        samples = self._check_samples(X, reset=reset)
        if self._backbone_spec().modality == "text":
            bad = check_texts(samples)
            if bad:
                raise InputError(next(iter(bad.values())))
        return samples

    # ------------------------------------------------------------ refit rule
    def _remember_network(self) -> None:
        """Record the network parameters ``fit`` used."""
        self._fitted_network_ = {
            name: getattr(self, name) for name in NETWORK_PARAMS if hasattr(self, name)
        }

    def _check_network_unchanged(self) -> None:
        """Raise ``NotFittedError`` naming ``fit`` if ``set_params`` changed the
        network since ``fit``."""
        fitted = getattr(self, "_fitted_network_", None)
        if fitted is None:
            return
        changed = [
            f"{name}={getattr(self, name)!r:.60} (fitted with {value!r:.60})"
            for name, value in fitted.items()
            if not _same(getattr(self, name), value)
        ]
        if changed:
            raise NotFittedError(
                f"{type(self).__name__} was fitted with another network: "
                f"{'; '.join(changed)} was set after fit. Call fit again before "
                "using it."
            )

    def __sklearn_tags__(self):
        return modality_tags(super().__sklearn_tags__(), self.backbone)
