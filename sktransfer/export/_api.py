"""``to_onnx``: a fitted model as one ONNX graph, and what serving it needs."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from sktransfer.export._graphs import (
    ClassifierGraph,
    FeatureGraph,
    RegressorGraph,
    export_graph,
)
from sktransfer.export._heads import append_labels, convert_head, join

__all__ = ["OnnxExport", "to_onnx"]

MODEL = "model.onnx"
TOKENIZER = "tokenizer.json"


@dataclass
class OnnxExport:
    """An exported model: where its files are and how to feed it.

    Attributes
    ----------
    path : pathlib.Path
        The ONNX model (``model.onnx``).
    tokenizer : pathlib.Path or None
        The tokenizer (``tokenizer.json``, for the ``tokenizers`` package;
        truncation and padding set), for text models.
    inputs, outputs : tuple of str
        The graph's input and output names.
    metadata : dict
        What the graph's ``metadata_props`` also hold: the modality, the image
        size and resize rule or the maximum length, the classes, the backbone
        and the versions it was exported with.
    check : dict or None
        With ``to_onnx(check=X)``: the largest absolute difference between
        onnxruntime's and the torch path's embeddings (and outputs) on ``X``,
        and whether the labels are identical.
    """

    path: Path
    tokenizer: Path | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    metadata: dict
    check: dict | None = None
    _model: Any = field(default=None, repr=False)
    _session: Any = field(default=None, repr=False)

    def session(self, **options):
        """An ``onnxruntime.InferenceSession`` of the model (CPU by default)."""
        import onnxruntime as ort

        if self._session is None or options:
            options.setdefault("providers", ["CPUExecutionProvider"])
            self._session = ort.InferenceSession(str(self.path), **options)
        return self._session

    def feed(self, X) -> dict[str, np.ndarray]:
        """The graph's inputs for raw samples ``X`` (paths, arrays, PIL images
        or texts), prepared as sktransfer prepares them (decode, resize and
        crop; or tokenise, truncate and pad)."""
        return _feed(self._model, X)

    def run(self, X) -> dict[str, np.ndarray]:
        """All outputs of the graph on raw samples ``X``, by name."""
        names = [o.name for o in self.session().get_outputs()]
        return dict(zip(names, self.session().run(None, self.feed(X)), strict=True))


# ------------------------------------------------------------------ pieces
def _is_zero_shot(model) -> bool:
    from sktransfer.zeroshot import ZeroShotClassifier

    return isinstance(model, ZeroShotClassifier)


def _zero_shot_extractor(model):
    """The fitted extractor of a zero-shot classifier's inputs (a text
    backbone, or a dual encoder's image tower), normalising as it does."""
    check_is_fitted(model, "class_embeddings_")
    ext = model._extractor()
    modality = ext._backbone_spec().modality
    probe = ["probe"] if modality == "text" else [np.zeros((8, 8, 3), np.uint8)]
    return ext.fit(probe)


def _extractor_of(model):
    from sktransfer._extractor import PretrainedFeatureExtractor

    if isinstance(model, PretrainedFeatureExtractor):
        return model
    if _is_zero_shot(model):
        return _zero_shot_extractor(model)
    if isinstance(model, Pipeline) and isinstance(
        model.steps[0][1], PretrainedFeatureExtractor
    ):
        return model.steps[0][1]
    return None


def _net_kind(model) -> str | None:
    from sktransfer.finetune import FineTunedClassifier, FineTunedRegressor

    if isinstance(model, FineTunedClassifier):
        return "classifier"
    if isinstance(model, FineTunedRegressor):
        return "regressor"
    return None


def _loaded(model):
    ext = _extractor_of(model)
    return (model if ext is None else ext)._load_backbone()


def _feature_graph(model, loaded) -> FeatureGraph:
    """The torch module from inputs to the embeddings the head reads."""
    import torch

    ext = _extractor_of(model)
    if ext is None and model.strategy == "head":
        ext = model._head_extractor_
    if ext is not None:
        features = loaded.feature_model(torch.device("cpu"), ext.layer, ext.pooling)
        return FeatureGraph(features, loaded.spec.modality, ext._normalize(loaded))
    return FeatureGraph(model.module_.backbone, loaded.spec.modality)


def _build(model, loaded, opset: int):
    """The ONNX model."""
    if _is_zero_shot(model):  # cosine to each class over the temperature
        import torch
        from torch import nn

        emb = np.asarray(model.class_embeddings_, np.float32)
        head = nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(emb / model.temperature_))
        graph = ClassifierGraph(_feature_graph(model, loaded), head)
        names = ["embeddings", "probabilities", "label_index"]
        onnx_model = export_graph(graph, loaded, names, opset)
        append_labels(onnx_model, model.classes_)
        return onnx_model
    kind = _net_kind(model)
    if kind is not None:
        model._check_fitted()
        module = copy.deepcopy(model.module_).cpu().eval()
        if model.strategy == "head":  # Sequential(dropout, linear) on features
            features, head = _feature_graph(model, loaded), module
        else:
            features = FeatureGraph(module.backbone, loaded.spec.modality)
            head = module.head
        if kind == "classifier":
            graph = ClassifierGraph(features, head)
            names = ["embeddings", "probabilities", "label_index"]
            onnx_model = export_graph(graph, loaded, names, opset)
            append_labels(onnx_model, model.classes_)
            return onnx_model
        graph = RegressorGraph(features, head, model.target_mean_, model.target_scale_)
        return export_graph(graph, loaded, ["embeddings", "variable"], opset)
    ext = _extractor_of(model)
    check_is_fitted(ext)
    if loaded.spec.modality == "tabular":
        raise TypeError("to_onnx exports image and text backbones, not tabular ones.")
    body = export_graph(_feature_graph(model, loaded), loaded, ["embeddings"], opset)
    if model is ext or len(model.steps) == 1:
        return body
    rest = model.steps[1:]
    steps = rest[0][1] if len(rest) == 1 else Pipeline(rest)
    head = convert_head(steps, ext._n_features_out, opset)
    return join(body, head)


def _metadata(model, loaded) -> dict:
    spec = loaded.spec
    meta = {
        "modality": spec.modality,
        "backbone": spec.name,
        "backbone_sha256": loaded.fingerprint(),
        "sktransfer": metadata.version("sktransfer"),
        "torch": metadata.version("torch"),
    }
    pre = spec.preprocessing
    if spec.modality == "image":
        meta.update(
            size=pre.size,
            resize_size=pre.resize_size,
            interpolation=pre.interpolation,
        )
    else:
        ext = _extractor_of(model)
        meta["max_length"] = (model if ext is None else ext)._runtime(loaded).max_length
    classes = getattr(model, "classes_", None)
    if classes is not None:
        meta["classes"] = np.asarray(classes).tolist()
    return meta


def _write_tokenizer(loaded, max_length: int, path: Path) -> None:
    from tokenizers import Tokenizer

    tok = loaded.tokenizer
    fast = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    fast.enable_truncation(max_length)
    fast.enable_padding(pad_id=tok.pad_token_id or 0, pad_token=tok.pad_token or "")
    fast.save(str(path))


def _feed(model, X) -> dict[str, np.ndarray]:
    from sktransfer._images import prepare_image
    from sktransfer._inputs import as_samples
    from sktransfer._text import pad_tokens, token_ids

    loaded = _loaded(model)
    samples = as_samples(X, loaded.spec.modality)
    if loaded.spec.modality == "image":
        pre = loaded.spec.preprocessing
        images = [
            prepare_image(v, samples.row(i), pre) for i, v in enumerate(samples.values)
        ]
        return {"images": np.stack(images)}
    ext = _extractor_of(model)
    max_length = (model if ext is None else ext)._runtime(loaded).max_length
    ids = token_ids(loaded.tokenizer, samples.values, max_length)
    batch = pad_tokens(ids, loaded.tokenizer.pad_token_id)
    return {k: v.numpy() for k, v in batch.items()}


def _fp32(model):
    """``model`` computing in float32 (the graph's precision): shallow copies,
    the user's model is not changed."""
    ext = _extractor_of(model)
    if _is_zero_shot(model):
        zero = copy.copy(model)
        vars(zero)["precision"] = "fp32"
        return zero
    if ext is not None:
        ext32 = copy.copy(ext)
        vars(ext32)["precision"] = "fp32"
        if model is ext:
            return ext32
        return Pipeline([(model.steps[0][0], ext32), *model.steps[1:]])
    net = copy.copy(model)
    vars(net)["precision"] = "fp32"
    return net


def _check(export: OnnxExport, model, X) -> dict:
    """onnxruntime against the torch path in float32 on ``X`` (and the labels
    against the model as it runs by default)."""
    out = export.run(X)
    ref = _fp32(model)
    ext = _extractor_of(ref)
    report = {"n_samples": len(out["embeddings"])}
    reference = ext.transform(X) if ext is not None else _torch_embeddings(ref, X)
    report["embeddings_max_abs_diff"] = float(
        np.abs(out["embeddings"] - reference).max()
    )
    if "probabilities" in out and hasattr(ref, "predict_proba"):
        report["probabilities_max_abs_diff"] = float(
            np.abs(out["probabilities"] - ref.predict_proba(X)).max()
        )
    if "label" in out:
        expected = np.asarray(ref.predict(X))
        found = out["label"].astype(expected.dtype)
        report["labels_equal"] = bool(np.array_equal(found, expected))
        report["labels_equal_at_default_precision"] = bool(
            np.array_equal(found, np.asarray(model.predict(X)))
        )
    if "variable" in out and _net_kind(model) == "regressor":
        expected = np.asarray(ref.predict(X)).reshape(out["variable"].shape)
        report["predictions_max_abs_diff"] = float(
            np.abs(out["variable"] - expected).max()
        )
    return report


def _torch_embeddings(model, X) -> np.ndarray:
    import torch

    loaded = _loaded(model)
    graph = _feature_graph(model, loaded).eval()
    feed = _feed(model, X)
    with torch.inference_mode():
        return graph(*[torch.from_numpy(v) for v in feed.values()]).numpy()


# ------------------------------------------------------------------ entry
def to_onnx(model, directory, *, check=None, opset: int = 18, overwrite=False):
    """Export a fitted model to one ONNX graph that runs in onnxruntime alone.

    Parameters
    ----------
    model : estimator
        A fitted ``PretrainedFeatureExtractor`` (embeddings only), a fitted
        ``Pipeline`` that starts with one and continues with scikit-learn steps
        (converted by skl2onnx's registered converters), a fitted
        ``FineTunedClassifier`` or ``FineTunedRegressor``, or a fitted
        ``ZeroShotClassifier`` (its inputs' tower, then the cosine to each
        class embedding over ``temperature_``: texts, or images through a
        CLIP / SigLIP image tower). Image and text backbones.
    directory : str or PathLike
        Folder to write ``model.onnx`` into (and ``tokenizer.json`` for text).
    check : samples, optional
        Raw samples to run through both onnxruntime and the model's torch path;
        the differences are in the returned ``check`` (see Notes).
    opset : int, default=18
        ONNX opset of the graph.
    overwrite : bool, default=False
        Replace files already in ``directory``.

    Returns
    -------
    OnnxExport

    Notes
    -----
    Inputs: images as ``images``, ``uint8 (N, H, W, 3)`` at the backbone's
    input size (resize the shorter side to ``metadata["resize_size"]`` and
    centre-crop ``metadata["size"]``; the normalisation is inside the graph);
    texts as ``input_ids`` and ``attention_mask``, ``int64 (N, T)``, from the
    saved tokenizer. The batch (and sequence) dimension is dynamic. Outputs:
    ``embeddings`` always; ``label`` and ``probabilities`` for classifiers
    (as skl2onnx names them, without ZipMap), ``variable`` for regressors.
    The graph computes in float32 (a model that runs in bf16 or fp16 in
    Python differs by that precision); the extractor's ``layer=`` taps and
    image augmentation (training only) are not part of the graph.

    Examples
    --------
    >>> import numpy as np, tempfile, sktransfer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    >>> model = make_pipeline(
    ...     sktransfer.PretrainedFeatureExtractor(backbone="test-cnn"),
    ...     LogisticRegression(),
    ... ).fit(X, [0, 1] * 4)
    >>> onnx_model = sktransfer.to_onnx(model, tempfile.mkdtemp(), check=X)
    >>> report = onnx_model.check
    >>> report["labels_equal"], report["embeddings_max_abs_diff"] < 1e-4
    (True, True)
    >>> onnx_model.outputs
    ('embeddings', 'label', 'probabilities')
    """
    import onnx

    if _extractor_of(model) is None and _net_kind(model) is None:
        raise TypeError(
            "to_onnx exports a PretrainedFeatureExtractor, a Pipeline that starts "
            "with one, a FineTunedClassifier, a FineTunedRegressor or a "
            f"ZeroShotClassifier; got {type(model).__name__}."
        )
    directory = Path(directory)
    path, tok_path = directory / MODEL, directory / TOKENIZER
    loaded = _loaded(model)
    text = loaded.spec.modality == "text"
    if not overwrite:
        existing = [p for p in (path, tok_path if text else None) if p and p.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} exists; pass overwrite=True to replace it."
            )
    if (
        getattr(model, "layer", None) is not None
        or getattr(_extractor_of(model), "layer", None) is not None
    ):
        raise TypeError("to_onnx exports the default features (layer=None) only.")
    onnx_model = _build(model, loaded, opset)
    meta = _metadata(model, loaded)
    for key, value in meta.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = f"sktransfer.{key}", json.dumps(value)
    onnx.checker.check_model(onnx_model)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(onnx_model, str(tmp))
    os.replace(tmp, path)
    if text:
        _write_tokenizer(loaded, meta["max_length"], tok_path)
    export = OnnxExport(
        path=path,
        tokenizer=tok_path if text else None,
        inputs=tuple(i.name for i in onnx_model.graph.input),
        outputs=tuple(o.name for o in onnx_model.graph.output),
        metadata=meta,
        _model=model,
    )
    if check is not None:
        export.check = _check(export, model, check)
    return export
