"""FewShotClassifier: contrastive fine-tuning on label pairs, then a head."""

from __future__ import annotations

import copy
import os
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from sktransfer._base import BackboneMixin
from sktransfer._compat import HasMethods, Interval, StrOptions, _fit_context
from sktransfer._inputs import check_y_missing
from sktransfer.backbones._features import build_feature_model
from sktransfer.backbones._spec import BackboneSpec
from sktransfer.fewshot._pairs import draw_pairs, pair_budget
from sktransfer.finetune._data import SampleDataset
from sktransfer.finetune._mixin import fuses

__all__ = ["FewShotClassifier"]


class FewShotClassifier(BackboneMixin, ClassifierMixin, BaseEstimator):
    """SetFit's recipe as a scikit-learn classifier: contrastive fine-tuning
    of a pretrained encoder on pairs drawn from the labels, then a head.

    1. Pairs of training samples are drawn from the labels, half of the same
       class and half of different classes, ``n_pairs`` of them (by default
       40 per sample, SetFit's 20 iterations of a positive and a negative
       pair, at most the number of distinct pairs), so memory and time grow
       with the samples, not with their pairs.
    2. A copy of the backbone is trained so that the cosine similarity of a
       pair's embeddings approaches 1 for the same class and 0 otherwise
       (SetFit's ``CosineSimilarityLoss``), for ``epochs`` passes over the
       pairs by AdamW at ``lr``, warmed up over the first ``warmup`` share
       of the steps and decayed linearly to 0, the gradient's norm clipped
       at ``max_grad_norm`` (the schedule and clipping SetFit's trainer,
       Hugging Face's ``Trainer``, applies by default).
    3. ``head`` (logistic regression by default) is fitted on the tuned
       embeddings of the training samples.

    Texts and images alike (any backbone of the registry). With
    ``class_texts=`` and a text backbone, the class names (or descriptions),
    put into ``template``, join the training set as one labelled example each:
    the zero-shot prior, which the pairs and the head then refine with the
    few labels.

    Parameters
    ----------
    backbone : str, path, nn.Module or BackboneSpec, default="all-MiniLM-L6-v2"
    n_pairs : int or "auto", default="auto"
        Pair budget (``"auto"``: 40 per sample, at most all distinct pairs).
    epochs : int, default=1
        Passes over the pairs.
    lr : float, default=2e-5
        Peak AdamW learning rate of the encoder (SetFit's
        ``body_learning_rate``).
    warmup : float, default=0.1
        Share of the steps over which the learning rate rises linearly from 0
        to ``lr``; it then falls linearly to 0 at the last step (SetFit's
        ``warmup_proportion`` and its trainer's linear schedule). ``0`` with
        ``schedule="constant"`` keeps ``lr`` throughout.
    schedule : {"linear", "constant"}, default="linear"
        After the warm-up: linear decay to 0, or ``lr`` held.
    max_grad_norm : float or None, default=1.0
        The gradient's global norm is clipped to this before each step
        (Hugging Face's ``Trainer`` default, which SetFit inherits); None
        does not clip.
    batch_size : int, default=16
        Pairs per step.
    head : classifier, default=None
        Fitted on the tuned embeddings; ``None``: ``LogisticRegression``.
    class_texts : None, True or dict, default=None
        Text backbones: ``True`` adds each class name through ``template`` as
        a labelled example; a dict maps classes to descriptions.
    template : str, default="This text is about {}."
    freeze_batchnorm : bool, default=True
        Keep the backbone's BatchNorm layers in inference mode while it is
        tuned: their pretrained running statistics normalise every batch and
        are not updated (their scale and shift still train). Batches of 16
        pairs drawn from a few samples per class make poor statistics: on
        scikit-learn's 8x8 digits (EfficientNet-Lite0, 8 per class, 5 seeds)
        updating them scored 0.785 and freezing them 0.847, against 0.838 for
        the frozen backbone + LR. Transformers have no BatchNorm, so text
        backbones are unaffected.
    weights, pooling, device, precision, max_length, trust_remote_code
        As for :class:`~sktransfer.PretrainedFeatureExtractor`.
    random_state : int or None, default=None
        Seeds the pairs, the encoder's training and the head.

    Attributes
    ----------
    classes_ : ndarray
    encoder_ : nn.Module
        The tuned feature module (backbone, pooling, normalisation).
    head_ : classifier
    n_pairs_ : int
        Pairs trained on.
    fit_seconds_ : float

    Examples
    --------
    >>> texts = ["good", "great", "fine", "bad", "awful", "poor"]
    >>> clf = FewShotClassifier("test-text", random_state=0)
    >>> clf = clf.fit(texts, ["pos"] * 3 + ["neg"] * 3)
    >>> clf.classes_.tolist(), clf.predict_proba(texts).shape
    (['neg', 'pos'], (6, 2))
    """

    _parameter_constraints: dict = {
        "backbone": [str, os.PathLike, nn.Module, BackboneSpec],
        "n_pairs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "schedule": [StrOptions({"linear", "constant"})],
        "max_grad_norm": [None, Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "head": [None, HasMethods(["fit", "predict"])],
        "class_texts": [None, "boolean", dict],
        "template": [str],
        "freeze_batchnorm": ["boolean"],
        "weights": [None, str, os.PathLike],
        "pooling": [StrOptions({"auto", "avg", "max", "cls", "mean"})],
        "device": [None, str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16", "fp16"})],
        "max_length": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": [None, Interval(Integral, 0, None, closed="left")],
        "trust_remote_code": ["boolean"],
    }

    def __init__(
        self,
        backbone="all-MiniLM-L6-v2",
        *,
        n_pairs="auto",
        epochs=1,
        lr=2e-5,
        warmup=0.1,
        schedule="linear",
        max_grad_norm=1.0,
        batch_size=16,
        head=None,
        class_texts=None,
        template="This text is about {}.",
        freeze_batchnorm=True,
        weights=None,
        pooling="auto",
        device="auto",
        precision="auto",
        max_length=None,
        random_state=None,
        trust_remote_code=False,
    ):
        self.backbone = backbone
        self.n_pairs = n_pairs
        self.epochs = epochs
        self.lr = lr
        self.warmup = warmup
        self.schedule = schedule
        self.max_grad_norm = max_grad_norm
        self.batch_size = batch_size
        self.head = head
        self.class_texts = class_texts
        self.template = template
        self.freeze_batchnorm = freeze_batchnorm
        self.weights = weights
        self.pooling = pooling
        self.device = device
        self.precision = precision
        self.max_length = max_length
        self.random_state = random_state
        self.trust_remote_code = trust_remote_code

    # ------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Draw pairs, tune the encoder on them, fit the head.

        Parameters
        ----------
        X : images or texts, as for the extractor
        y : array-like of shape (n_samples,)
            Labels (two classes or more; one sample of a class is enough).

        Returns
        -------
        self
        """
        start = time.perf_counter()
        samples = self._samples(X, reset=True)
        y = check_y_missing(y)
        check_classification_targets(y)
        if len(y) != len(samples):
            raise ValueError(
                f"X has {len(samples)} samples but y has {len(y)}; they must match."
            )
        self.label_encoder_ = LabelEncoder().fit(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has one class ({self.classes_[0]!r}); a classifier needs two."
            )
        values, labels = list(samples.values), self.label_encoder_.transform(y)
        extra = self._class_examples()
        if extra:
            values += [t for _, t in extra]
            labels = np.r_[labels, self.label_encoder_.transform([c for c, _ in extra])]
        train = self._check_samples(_column(values), reset=False)
        loaded = self._load_backbone()
        runtime = self._runtime(loaded)
        rng = np.random.default_rng(self.random_state)
        self.n_pairs_ = pair_budget(self.n_pairs, labels)
        pairs = draw_pairs(labels, self.n_pairs_, rng)
        encoder = build_feature_model(
            loaded.spec, copy.deepcopy(loaded.model), pooling=self.pooling
        ).to(runtime.device)
        for p in encoder.parameters():  # the registry's copy is frozen
            p.requires_grad_(True)
        dataset = SampleDataset(train, None, loaded, runtime.max_length)
        with torch.random.fork_rng(devices=[]):
            if self.random_state is not None:
                torch.manual_seed(self.random_state)
            self._train(encoder, dataset, pairs, runtime.device, rng)
        encoder.eval()
        self.encoder_ = encoder
        head = LogisticRegression(max_iter=2000) if self.head is None else self.head
        head = clone(head)
        if "random_state" in head.get_params():
            head.set_params(random_state=self.random_state)
        self.head_ = head.fit(self._embed(dataset), labels)
        self.n_pairs_ = len(pairs)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _samples(self, X, reset):
        return self._checked_samples(X, reset=reset)

    def _class_examples(self) -> list[tuple]:
        if self.class_texts is None or self.class_texts is False:
            return []
        if self._backbone_spec().modality != "text":
            raise ValueError(
                "class_texts= adds class names as text examples; the backbone "
                f"{self.backbone!r} is not a text backbone."
            )
        if self.template.count("{}") != 1:
            raise ValueError(
                "template must contain one '{}' for the class; got "
                f"{self.template!r}."
            )
        if isinstance(self.class_texts, dict):
            missing = [c for c in self.classes_ if c not in self.class_texts]
            if missing:
                raise ValueError(f"class_texts has no description for {missing}.")
            return [
                (c, self.template.format(self.class_texts[c])) for c in self.classes_
            ]
        return [(c, self.template.format(c)) for c in self.classes_]

    def _train(self, encoder, dataset, pairs, device, rng) -> None:
        params = [p for p in encoder.parameters() if p.requires_grad]
        if not params:
            return
        optimizer = _adamw(params, self.lr)
        steps = self.epochs * -(-len(pairs) // self.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_factor(steps, self.warmup, self.schedule)
        )
        encoder.train()
        if self.freeze_batchnorm:  # pretrained statistics, not a batch's
            for m in encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for _ in range(self.epochs):
            order = rng.permutation(len(pairs))
            for lo in range(0, len(order), self.batch_size):
                batch = pairs[order[lo : lo + self.batch_size]]
                rows, where = np.unique(batch[:, :2], return_inverse=True)
                where = torch.as_tensor(where.reshape(-1, 2), device=device)
                feats = nn.functional.normalize(
                    self._forward(encoder, dataset, rows, device).float(), dim=1
                )
                cosine = (feats[where[:, 0]] * feats[where[:, 1]]).sum(1)
                target = torch.as_tensor(batch[:, 2], dtype=cosine.dtype, device=device)
                loss = nn.functional.mse_loss(cosine, target)
                optimizer.zero_grad()
                loss.backward()
                if self.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                optimizer.step()
                scheduler.step()

    @staticmethod
    def _forward(encoder, dataset, rows, device):
        items = [dataset[int(i)] for i in rows]
        collate = dataset.collate
        if collate is not None:
            X, _ = collate(items)
        else:
            X = torch.stack([x for x, _ in items])
        if isinstance(X, dict):
            return encoder(**{k: v.to(device) for k, v in X.items()})
        return encoder(X.to(device))

    def _embed(self, dataset, batch_size: int = 64) -> np.ndarray:
        device = next(self.encoder_.parameters()).device
        out = []
        with torch.inference_mode():
            for lo in range(0, len(dataset), batch_size):
                rows = np.arange(lo, min(lo + batch_size, len(dataset)))
                feats = self._forward(self.encoder_, dataset, rows, device)
                out.append(nn.functional.normalize(feats.float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    # ------------------------------------------------------------ predict
    def transform(self, X) -> np.ndarray:
        """The tuned, L2-normalised embeddings of ``X``."""
        check_is_fitted(self)
        samples = self._samples(X, reset=False)
        loaded = self._load_backbone()
        dataset = SampleDataset(samples, None, loaded, self._runtime(loaded).max_length)
        return self._embed(dataset)

    def predict(self, X):
        """The head's labels for the tuned embeddings of ``X``."""
        return self.label_encoder_.inverse_transform(
            self.head_.predict(self.transform(X))
        )

    def predict_proba(self, X):
        """Class probabilities (columns follow ``classes_``)."""
        return self.head_.predict_proba(self.transform(X))

    def decision_function(self, X):
        """The head's decision function."""
        return self.head_.decision_function(self.transform(X))

    @property
    def classes_(self):
        return self.label_encoder_.classes_

    def __sklearn_tags__(self):
        return super().__sklearn_tags__()


def lr_factor(steps: int, warmup: float, schedule: str):
    """The learning rate's factor at each step (``LambdaLR``'s lambda):
    rising linearly over the first ``ceil(warmup * steps)`` steps, then 1
    (``"constant"``) or falling linearly toward 0 at step ``steps``
    (``"linear"``), as ``transformers.get_linear_schedule_with_warmup``,
    except that no step is taken at a rate of 0 (its first step is: on a few
    samples, one step of a handful).

    Examples
    --------
    >>> f = lr_factor(10, 0.2, "linear")
    >>> [round(f(i), 3) for i in (0, 1, 2, 6, 9)]
    [0.333, 0.667, 1.0, 0.5, 0.125]
    >>> lr_factor(10, 0.0, "constant")(7)
    1.0
    """
    n_warm = int(np.ceil(warmup * steps))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / (n_warm + 1)
        if schedule == "constant":
            return 1.0
        return max(0.0, (steps - step) / max(1, steps - n_warm))

    return factor


def _adamw(params: list, lr: float) -> torch.optim.AdamW:
    """AdamW (weight decay 0.01) with biases and normalisation weights (the
    1-d tensors) not decayed, as Hugging Face's ``Trainer`` groups them for
    SetFit; fused into one kernel where every parameter's device has it (the
    fine-tuners' rule, :func:`~sktransfer.finetune._mixin.fuses`)."""
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]],
        lr=lr,
        fused=fuses(torch.optim.AdamW, {}, params) or None,
    )


def _column(values: list):
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out
