"""Our estimators as records: parameters, fitted attributes, network weights.

An estimator of ours (a "part") is written as its class's import name, its
``get_params(deep=False)``, its fitted attributes and the ``state_dict`` of
each network it trained, and read back by building the estimator from its
parameters, restoring the attributes and rebuilding each network the way
``fit`` builds it (skorch's ``initialize()`` for the fine-tuners) before its
weights are loaded, strictly. Only the types listed here are parts; loading
refuses any other. The backbone's identity (name, SHA-256 of its pretrained
weights, preprocessing) is recorded and compared at load.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from sktransfer._runtime import resolve_device
from sktransfer.exceptions import EnvironmentChangeWarning, UnsafeFileError
from sktransfer.persist._codec import TAG, Decoder, Encoder, SaveError, ref_name

__all__ = ["decode_part", "encode_part", "is_part"]

# what skorch's initialize() builds again: never written
_SKORCH_REBUILT = frozenset(
    {
        "module_",
        "criterion_",
        "optimizer_",
        "callbacks_",
        "virtual_params_",
        "_params_to_validate",
        "prefixes_",
        "cuda_dependent_attributes_",
        "_modules",
        "_criteria",
        "_optimizers",
        "init_context_",
        "grad_scaler_",
        "initialized_",
        "_shuffle_generator_",
        "_head_extractor_",
        "_in_fit_",
        "_checkpoint_dirname_",
        "_fixed_epoch_",
    }
)


def _part_types() -> tuple[type, ...]:
    from sktransfer._extractor import PretrainedFeatureExtractor
    from sktransfer.fewshot import FewShotClassifier
    from sktransfer.finetune import FineTunedClassifier, FineTunedRegressor
    from sktransfer.zeroshot import ZeroShotClassifier

    return (
        PretrainedFeatureExtractor,
        FineTunedClassifier,
        FineTunedRegressor,
        FewShotClassifier,
        ZeroShotClassifier,
    )


def is_part(obj: Any) -> bool:
    """Whether ``obj`` is one of our estimators (written by this module)."""
    return type(obj) in _part_types()


def _is_net(obj: Any) -> bool:
    from skorch import NeuralNet

    return isinstance(obj, NeuralNet)


def _is_fitted(obj: Any) -> bool:
    if _is_net(obj):
        return bool(getattr(obj, "initialized_", False))
    return any(k.endswith("_") and not k.startswith("__") for k in vars(obj))


# ------------------------------------------------------------------ networks
def _rebuild_fewshot(obj) -> dict[str, nn.Module]:
    from sktransfer.backbones._features import build_feature_model

    loaded = obj._load_backbone()
    encoder = build_feature_model(
        loaded.spec, copy.deepcopy(loaded.model), pooling=obj.pooling
    )
    obj.encoder_ = encoder.to(obj._runtime(loaded).device).eval()
    return {"encoder_": obj.encoder_}


def _rebuild_net(obj) -> dict[str, nn.Module]:
    obj.initialize()
    return {"module_": obj.module_}


def _networks(obj) -> dict[str, nn.Module]:
    """The trained networks of a fitted part, by attribute."""
    if _is_net(obj):
        return {"module_": obj.module_}
    return {k: v for k, v in vars(obj).items() if isinstance(v, nn.Module)}


def _rebuilder(obj):
    if _is_net(obj):
        return _rebuild_net
    if type(obj).__name__ == "FewShotClassifier":
        return _rebuild_fewshot
    return None


# ------------------------------------------------------------------ identity
def _loaded(obj):
    """The backbone ``obj`` runs, loaded as its own code loads it
    (``BackboneMixin._load_backbone``; the zero-shot classifier's extractor)."""
    owner = obj if hasattr(obj, "_load_backbone") else obj._extractor()
    return owner._load_backbone()


def _identity(obj, enc: Encoder, where: str) -> dict | None:
    if not _is_fitted(obj):
        return None
    loaded = _loaded(obj)
    return {
        "name": loaded.spec.name,
        "source": loaded.spec.source,
        "weights": loaded.weights_id,
        "fingerprint": loaded.fingerprint(),
        "preprocessing": enc.encode(loaded.spec.preprocessing, f"{where}.spec"),
    }


def _check_identity(obj, saved: dict | None, decoder: Decoder, name: str) -> None:
    if not saved:
        return
    loaded = _loaded(obj)
    problems = []
    if loaded.fingerprint() != saved["fingerprint"]:
        problems.append(
            f"the backbone {saved['name']!r} has other weights here (SHA-256 "
            f"{loaded.fingerprint()[:12]}, saved with {saved['fingerprint'][:12]} "
            f"from {saved['weights']})"
        )
    pre = decoder.decode(saved["preprocessing"])
    if pre != loaded.spec.preprocessing:
        problems.append(
            f"its preprocessing differs ({loaded.spec.preprocessing} here, "
            f"saved with {pre})"
        )
    if problems:
        warnings.warn(
            f"{name}: {'; '.join(problems)}. Its outputs will differ from the "
            "saved model's; install the weights it was saved with.",
            EnvironmentChangeWarning,
            stacklevel=4,
        )


# ------------------------------------------------------------------ write
def encode_part(obj, enc: Encoder, where: str) -> dict:
    """The record of one of our estimators (its tensors go to ``enc``)."""
    name = type(obj).__name__
    if isinstance(obj.backbone, nn.Module):
        raise SaveError(
            f"{where} ({name}) runs a torch module you built (backbone=<module>); "
            "its code cannot be saved without pickle. Register it as a backbone "
            "folder or use a registered backbone name to save the model."
        )
    params = obj.get_params(deep=False)
    skip = set(params) | (_SKORCH_REBUILT if _is_net(obj) else set())
    networks = _networks(obj) if _is_fitted(obj) else {}
    if networks and _rebuilder(obj) is None:
        raise SaveError(f"{where} ({name}) holds networks that cannot be rebuilt.")
    attrs = {
        k: v
        for k, v in vars(obj).items()
        if k not in skip and k not in networks and not k.startswith("__")
    }
    return {
        TAG: "part",
        "type": ref_name(type(obj)),
        "params": enc.encode(params, f"{where}.get_params()"),
        "attrs": enc.encode(attrs, where),
        "networks": {
            attr: {k: enc.tensor(t) for k, t in net.state_dict().items()}
            for attr, net in networks.items()
        },
        "backbone": _identity(obj, enc, where),
    }


# ------------------------------------------------------------------ read
def _portable_device(value: Any, name: str) -> Any:
    """A device this machine lacks becomes the CPU (with a warning)."""
    if value in (None, "auto") or not isinstance(value, str | torch.device):
        return value
    try:
        resolve_device(value)
    except ValueError:
        warnings.warn(
            f"{name} was saved with device={str(value)!r}, which this machine does "
            "not have; it runs on the CPU (set_params(device=...) to change).",
            EnvironmentChangeWarning,
            stacklevel=5,
        )
        return "cpu" if isinstance(value, str) else torch.device("cpu")
    return value


def decode_part(record: dict, decoder: Decoder) -> Any:
    """Rebuild one of our estimators from its record."""
    cls = decoder.decode({TAG: "ref", "name": record.get("type")})
    if cls not in _part_types():
        raise UnsafeFileError(f"{record.get('type')!r} is not an sktransfer estimator.")
    name = cls.__name__
    params = decoder.decode(record["params"])
    attrs = decoder.decode(record["attrs"])
    if not isinstance(params, dict) or not isinstance(attrs, dict):
        raise UnsafeFileError(f"{name}: malformed parameters in the file.")
    if "device" in params:
        params["device"] = _portable_device(params["device"], name)
    if isinstance(attrs.get("device_"), torch.device):
        attrs["device_"] = torch.device(
            str(_portable_device(attrs["device_"], f"{name}.device_"))
        )
    try:
        obj = cls(**params)
    except TypeError as exc:
        raise UnsafeFileError(
            f"{name}: the file's parameters do not fit ({exc})."
        ) from exc
    vars(obj).update(attrs)
    networks = record.get("networks") or {}
    if networks:
        built = _rebuilder(obj)(obj)
        # initialize() cleared the history (in place): decoded afresh
        vars(obj).update(decoder.decode(record["attrs"]))
        if set(built) != set(networks):
            raise UnsafeFileError(
                f"{name}: the file holds networks {sorted(networks)}, the estimator "
                f"builds {sorted(built)}."
            )
        for attr, keys in networks.items():
            state = {k: decoder.tensor(v) for k, v in keys.items()}
            _load_state(built[attr], state, f"{name}.{attr}")
    _check_identity(obj, record.get("backbone"), decoder, name)
    return obj


def _load_state(module: nn.Module, state: dict, where: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} expected"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or extra or shapes:
        detail = "; ".join(
            [f"missing {missing[:3]}"] * bool(missing)
            + [f"unexpected {extra[:3]}"] * bool(extra)
            + shapes[:3]
        )
        raise UnsafeFileError(
            f"{where}: the saved weights do not fit the rebuilt network ({detail}); "
            "the file was changed, or the backbone here is another one."
        )
    module.load_state_dict(state, strict=True)
