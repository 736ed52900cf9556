"""ZeroShotClassifier: classify texts or images by their similarity to class names."""

from __future__ import annotations

import os
from numbers import Integral, Real

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sktransfer._cache import DiskCache, MemoryCache
from sktransfer._compat import Interval, StrOptions, _fit_context
from sktransfer._extractor import PretrainedFeatureExtractor
from sktransfer.backbones._dual import is_dual, tower
from sktransfer.backbones._registry import get_backbone_spec
from sktransfer.backbones._spec import BackboneSpec

__all__ = ["DEFAULT_TEMPLATES", "IMAGE_TEMPLATES", "ZeroShotClassifier"]

DEFAULT_TEMPLATES = ("This text is about {}.",)
IMAGE_TEMPLATES = ("a photo of a {}.",)  # CLIP's own prompt
DEFAULT_TEMPERATURE = 0.05  # cosine similarities of sentence encoders span ~0.1-0.3


def _class_texts(labels) -> tuple[np.ndarray, list[str]]:
    """The classes and the text that describes each (its name, or the value
    of a ``{class: description}`` mapping), checked."""
    if isinstance(labels, dict):
        classes, texts = list(labels), [labels[c] for c in labels]
    else:
        classes = list(labels)
        texts = [str(c) for c in classes]
    if len(classes) < 2:
        raise ValueError(
            f"ZeroShotClassifier needs at least two classes; got {classes!r}."
        )
    for c, t in zip(classes, texts, strict=True):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(
                f"class {c!r} has an empty name or description; give every class "
                "a few words that say what it is."
            )
    seen: dict = {}
    for c in classes:
        if c in seen:
            raise ValueError(f"class {c!r} is given twice; class names must be unique.")
        seen[c] = True
    repeated = {t for t in texts if texts.count(t) > 1}
    if repeated:
        raise ValueError(
            f"classes share a description ({sorted(repeated)}): they could never "
            "be told apart. Describe each differently."
        )
    return np.asarray(
        classes, dtype=object if isinstance(classes[0], str) else None
    ), texts


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify texts or images by their cosine similarity to class names.

    The class names (or descriptions), put into each ``template``, are embedded
    by a sentence encoder, or by the text tower of an image-text dual encoder
    (a CLIP or SigLIP folder or hub id) whose image tower then embeds the
    images; a class's vector is the mean of its normalised template
    embeddings. An input's ``decision_function`` is its cosine similarity to
    each class, ``predict_proba`` their softmax at ``temperature``,
    ``predict`` the most similar class. No labelled example is
    needed: ``fit(X=None, y=labels)`` only sets ``classes_`` (as skorch's
    ``ZeroShotClassifier``). Given labelled texts, ``fit`` calibrates the
    temperature on them (``temperature="auto"``), nothing else; the embeddings
    go through the extractor's cache, so a grid search over ``templates`` or
    ``temperature`` embeds each text once.

    Parameters
    ----------
    backbone : str, path, nn.Module or BackboneSpec, default="all-MiniLM-L6-v2"
        A text backbone, as for :class:`~sktransfer.PretrainedFeatureExtractor`
        (``X`` are texts), or an image-text dual encoder: a transformers
        ``CLIPModel`` / ``SiglipModel`` folder, or ``"hf:<id>"`` of one in the
        Hugging Face cache (``X`` are images).
    labels : list or dict, default=None
        The classes; a dict maps each class to the text that describes it.
        None: the labels passed to ``fit`` as ``y`` (their sorted unique
        values).
    templates : sequence of str or "auto", default="auto"
        Each with one ``{}`` for the class's name or description; several are
        averaged. ``"auto"``: ``("This text is about {}.",)`` for a text
        backbone, CLIP's ``("a photo of a {}.",)`` for a dual encoder.
    temperature : float or "auto", default="auto"
        The softmax temperature of ``predict_proba``. ``"auto"``: fitted by
        log loss on labelled inputs given to ``fit``, else 0.05 for a text
        backbone and the model's own ``1 / exp(logit_scale)`` for a dual
        encoder.
    batch_size, device, precision, cache
        As for :class:`~sktransfer.PretrainedFeatureExtractor`.

    Attributes
    ----------
    classes_ : ndarray
    class_embeddings_ : ndarray of shape (n_classes, n_features)
        Unit vectors, one per class.
    temperature_ : float

    Examples
    --------
    >>> from sktransfer.zeroshot import ZeroShotClassifier
    >>> clf = ZeroShotClassifier("test-text").fit(None, ["sport", "cooking"])
    >>> clf.classes_.tolist()
    ['cooking', 'sport']
    >>> clf.predict_proba(["a match", "a recipe"]).shape
    (2, 2)
    """

    _parameter_constraints: dict = {
        "backbone": [str, os.PathLike, nn.Module, BackboneSpec],
        "labels": [None, list, tuple, dict, np.ndarray],
        "templates": [list, tuple, StrOptions({"auto"})],
        "temperature": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "batch_size": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "device": [str],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "cache": [None, str, os.PathLike, MemoryCache, DiskCache],
    }

    def __init__(
        self,
        backbone="all-MiniLM-L6-v2",
        *,
        labels=None,
        templates="auto",
        temperature="auto",
        batch_size="auto",
        device="auto",
        precision="auto",
        cache="memory",
    ):
        self.backbone = backbone
        self.labels = labels
        self.templates = templates
        self.temperature = temperature
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.cache = cache

    def _towers(self):
        """``(text spec or backbone, input spec or backbone)``: one backbone
        for both, or the two towers of a dual encoder."""
        spec = get_backbone_spec(self.backbone)
        if is_dual(spec):
            return tower(spec, "text"), tower(spec, "image")
        return self.backbone, self.backbone

    def _templates(self):
        if isinstance(self.templates, str):  # "auto"
            dual = is_dual(get_backbone_spec(self.backbone))
            return IMAGE_TEMPLATES if dual else DEFAULT_TEMPLATES
        return tuple(self.templates)

    def _extractor(self, backbone=None) -> PretrainedFeatureExtractor:
        if backbone is None:
            backbone = self._towers()[1]
        return PretrainedFeatureExtractor(
            backbone,
            normalize=True,
            batch_size=self.batch_size,
            device=self.device,
            precision=self.precision,
            cache=self.cache,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Embed the classes; with labelled texts, calibrate the temperature.

        Parameters
        ----------
        X : sequence of str or None
            Labelled texts (only used to fit ``temperature="auto"``), or None.
        y : sequence
            The labels (of ``X``, or alone with ``X=None``); ignored when
            ``labels`` is given, except to check them.

        Returns
        -------
        self
        """
        spec = get_backbone_spec(self.backbone)
        if spec.modality != "text" and not is_dual(spec):
            raise ValueError(
                f"ZeroShotClassifier embeds class names, so it needs a text "
                f"backbone or an image-text dual encoder (a CLIP or SigLIP "
                f"folder); {self.backbone!r} is neither."
            )
        templates = self._templates()
        for t in templates:
            if not isinstance(t, str) or t.count("{}") != 1:
                raise ValueError(
                    f"each template needs exactly one '{{}}' for the class; got {t!r}."
                )
        if self.labels is not None:
            classes, texts = _class_texts(self.labels)
        elif y is not None:
            classes, texts = _class_texts(sorted(set(np.asarray(y).tolist())))
        else:
            raise ValueError(
                "ZeroShotClassifier needs its classes: pass labels=[...] or "
                "fit(None, y=[class names])."
            )
        if y is not None and X is not None and self.labels is not None:
            unknown = set(np.asarray(y).tolist()) - set(classes.tolist())
            if unknown:
                raise ValueError(f"y has labels {sorted(unknown)} not in labels=.")
        self.classes_ = classes
        ext = self._extractor(self._towers()[0]).fit(["a"])
        prompts = [t.format(text) for text in texts for t in templates]
        emb = ext.transform(prompts).reshape(len(texts), len(templates), -1)
        emb = emb.mean(axis=1)
        self.class_embeddings_ = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        self.n_features_in_ = 1
        self.temperature_ = self._fit_temperature(X, y)
        return self

    def _fit_temperature(self, X, y) -> float:
        if self.temperature != "auto":
            return float(self.temperature)
        if X is None or y is None:
            return self._default_temperature()
        sims = self.decision_function(X)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        rows = np.arange(len(sims))
        cols = np.array([index[v] for v in np.asarray(y).tolist()])

        def log_loss(log_t):
            return -log_softmax(sims / np.exp(log_t), axis=1)[rows, cols].mean()

        result = minimize_scalar(
            log_loss, bounds=(np.log(1e-3), np.log(10)), method="bounded"
        )
        return float(np.exp(result.x))

    def _default_temperature(self) -> float:
        spec = get_backbone_spec(self.backbone)
        if not is_dual(spec):
            return DEFAULT_TEMPERATURE
        from sktransfer.backbones import load_backbone

        scale = getattr(load_backbone(spec).model, "logit_scale", None)
        return float(np.exp(-float(scale))) if scale is not None else 0.01

    def decision_function(self, X) -> np.ndarray:
        """Cosine similarity of each input to each class, shape (n, n_classes)."""
        check_is_fitted(self, "class_embeddings_")
        ext = self._extractor()
        ext.fit(X.iloc[:1] if hasattr(X, "iloc") else X[:1])
        return ext.transform(X) @ self.class_embeddings_.T

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the similarities at ``temperature_``."""
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X) -> np.ndarray:
        """The most similar class of each input."""
        return self.classes_[self.decision_function(X).argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.target_tags.required = False
        return tags
