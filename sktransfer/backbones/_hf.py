"""Hugging Face transformers text encoders, and sentence-transformers folders.

A sentence-transformers folder (``modules.json``) is honoured: its ``Pooling``
module sets the default pooling, a ``Normalize`` module sets L2 normalisation, and
``sentence_bert_config.json`` sets the maximum sequence length. So our vectors
equal ``SentenceTransformer(...).encode`` without sentence-transformers installed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from sktransfer.backbones._dual import is_dual
from sktransfer.backbones._loaded import LoadedBackbone
from sktransfer.backbones._spec import BackboneSpec, TextPreprocessing
from sktransfer.backbones._weights import (
    HEAD_PREFIXES,
    Attempts,
    check_weights,
    file_identity,
)
from sktransfer.exceptions import InvalidWeightsError

__all__ = ["load_hf", "read_sentence_transformers_config"]

_INSTALL = "transformers is not installed: pip install 'sktransfer[text]'"
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
}


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report and progress bar (they go to stderr)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def read_sentence_transformers_config(folder: Path) -> dict:
    """Pooling, normalisation, max length and model sub-folder of an ST folder.

    Returns an empty dict for a plain transformers folder.
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return {}
    modules = json.loads(modules_file.read_text())
    out: dict = {"normalize": False, "model_dir": folder}
    for mod in modules:
        kind = mod.get("type", "").rsplit(".", 1)[-1]
        sub = folder / mod.get("path", "")
        if kind == "Transformer":
            out["model_dir"] = sub
        elif kind == "Pooling":
            cfg = json.loads((sub / "config.json").read_text())
            modes = [v for k, v in _POOLING_KEYS.items() if cfg.get(k)]
            mode = cfg.get("pooling_mode") or (modes[0] if len(modes) == 1 else None)
            if mode not in ("cls", "mean", "max"):
                raise ValueError(
                    f"{folder}: sentence-transformers pooling {cfg} is not supported "
                    "(sktransfer supports one of cls / mean / max); pass pooling=."
                )
            out["pooling"] = mode
        elif kind == "Normalize":
            out["normalize"] = True
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
        if max_len:
            out["max_length"] = int(max_len)
    return out


def _resolve_folder(spec: BackboneSpec, attempts: Attempts) -> Path:
    ident = spec.model_id
    if os.path.isdir(ident):
        return Path(ident)
    attempts.add("local folder", f"{ident!r} is not a directory")
    from huggingface_hub import snapshot_download

    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        return Path(
            snapshot_download(ident, local_files_only=True, cache_dir=cache_dir)
        )
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
        attempts.add("Hugging Face cache", f"not cached ({type(exc).__name__})")
    return Path(
        attempts.download_or_fail(
            lambda: snapshot_download(ident, cache_dir=cache_dir),
            "Pass a local folder (backbone='hf:/path/to/model'), or run once with "
            f"network access so that {ident!r} is cached.",
        )
    )


def check_loading_info(model, info: dict, folder: Path) -> None:
    """transformers' loading report as an error (its log is silenced): a tensor
    the model needs that the folder lacks would be randomly initialised, and a
    wrong dtype cast silently. Unexpected tensors may only be a task head the
    encoder drops (``pooler.``, ``cls.``, ``lm_head.``...); every tensor is
    checked for NaN and inf."""
    source = f"the folder {str(folder)!r}"
    problems = []
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(
        k for k in info.get("unexpected_keys") or [] if not k.startswith(HEAD_PREFIXES)
    )
    mismatched = [
        str(m[0] if isinstance(m, tuple) else m)
        for m in info.get("mismatched_keys") or []
    ]
    if missing:
        problems.append(
            f"missing {len(missing)} tensor(s), which transformers would initialise "
            f"at random: {', '.join(missing[:8])}"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected tensor(s): {', '.join(unexpected[:8])}"
        )
    if mismatched:
        problems.append(f"tensors of the wrong shape: {', '.join(mismatched[:8])}")
    if problems:
        raise InvalidWeightsError(
            f"The weights in {source} do not fit {type(model).__name__}: "
            f"{'; '.join(problems)}. Check that the folder is complete and belongs "
            "to this model (config.json and its weights file)."
        )
    from safetensors import safe_open

    loaded = model.state_dict()
    wrong = []
    for file in sorted(folder.glob("*.safetensors")):  # the file's own dtypes
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
                name = key if key in loaded else key.split(".", 1)[-1]
                dtype = f.get_slice(key).get_dtype()  # metadata only
                floating = name in loaded and loaded[name].is_floating_point()
                if floating and not dtype.startswith(("F", "BF")):  # F16, BF16...
                    wrong.append(f"{key} is {dtype}")
    if wrong:
        raise InvalidWeightsError(
            f"The weights in {source} do not fit {type(model).__name__}: "
            f"non-floating tensors where it computes in floating point (they would "
            f"be cast silently): {', '.join(wrong[:8])}."
        )
    check_weights(loaded, loaded, source)  # NaN / inf in what was loaded


def load_hf(
    spec: BackboneSpec,
    weights=None,
    trust_remote_code: bool = False,
) -> LoadedBackbone:
    """Load a transformers encoder and its fast tokenizer from a folder or hub id."""
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    attempts = Attempts(spec.name)
    folder = Path(weights) if weights else _resolve_folder(spec, attempts)
    if is_dual(spec):
        return _load_dual(spec, folder, trust_remote_code)
    st = read_sentence_transformers_config(folder)
    model_dir = st.get("model_dir", folder)
    tokenizer = AutoTokenizer.from_pretrained(
        model_dir, local_files_only=True, trust_remote_code=trust_remote_code
    )
    kwargs = {
        "local_files_only": True,
        "trust_remote_code": trust_remote_code,
        "output_loading_info": True,
    }
    with _quiet_transformers():  # its report is checked below instead
        try:  # BERT-like encoders: skip the unused (and often untrained) pooler
            model, info = AutoModel.from_pretrained(
                model_dir, add_pooling_layer=False, **kwargs
            )
        except TypeError:
            model, info = AutoModel.from_pretrained(model_dir, **kwargs)
    check_loading_info(model, info, Path(model_dir))
    limit = tokenizer.model_max_length
    limit = limit if isinstance(limit, int) and limit < 100_000 else 512
    pos = getattr(model.config, "max_position_embeddings", limit) or limit
    pre = TextPreprocessing(
        max_length=min(st.get("max_length", limit), limit, pos),
        pooling=st.get("pooling", "mean"),
        normalize=st.get("normalize", False),
    )
    weights_id = _weights_id(Path(model_dir))
    return LoadedBackbone(spec.replace(preprocessing=pre), model, tokenizer, weights_id)


def _weights_id(folder: Path) -> str:
    """The identity of a folder's first weights file (safetensors, else bin)."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return file_identity(str(files[0])) if files else str(folder)


def _load_dual(spec: BackboneSpec, folder: Path, trust_remote_code: bool):
    """A CLIP / SigLIP folder: the whole model (both towers), and the
    tokenizer when ``spec`` is the text tower. When the other tower of the
    same weights is loaded already, its model is shared, not loaded again
    (loaded models are read-only)."""
    from transformers import AutoModel, AutoTokenizer

    from sktransfer.backbones._factory import loaded_backbones

    weights_id = _weights_id(folder)
    model = next(
        (
            other.model
            for other in loaded_backbones()
            if is_dual(other.spec)
            and other.spec.model_id == spec.model_id
            and other.weights_id == weights_id
        ),
        None,
    )
    if model is None:
        with _quiet_transformers():
            model, info = AutoModel.from_pretrained(
                folder,
                local_files_only=True,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
            )
        check_loading_info(model, info, folder)
    if spec.option("tower") == "image":
        return LoadedBackbone(spec, model, None, weights_id)
    tokenizer = AutoTokenizer.from_pretrained(
        folder, local_files_only=True, trust_remote_code=trust_remote_code
    )
    limit = tokenizer.model_max_length
    limit = limit if isinstance(limit, int) and limit < 100_000 else 77
    pos = model.config.text_config.max_position_embeddings
    pre = TextPreprocessing(max_length=min(limit, pos), pooling="mean")
    options = (*spec.options, ("pad_id", int(tokenizer.pad_token_id or 0)))
    return LoadedBackbone(
        spec.replace(preprocessing=pre, options=options), model, tokenizer, weights_id
    )
