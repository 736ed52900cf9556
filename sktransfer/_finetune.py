"""FineTunedClassifier / FineTunedRegressor: fine-tune a backbone as a skorch net."""

from __future__ import annotations

import copy
import os
import tempfile

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_y, _num_samples, validate_data
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochScoring,
    LoadInitState,
)
from skorch.dataset import Dataset, ValidSplit, unpack_data
from skorch.utils import TeeGenerator
from torch import nn
from torch.utils.data import Subset

from sktransfer._embed import build_feature_model, feature_width
from sktransfer._extractor import PretrainedFeatureExtractor, modality_tags
from sktransfer._finetune_data import LengthGroupedBatchSampler, SampleDataset
from sktransfer._finetune_module import BatchAugment, TransferModule, trainable_prefixes
from sktransfer._inputs import Samples, as_samples, check_texts
from sktransfer._runtime import autocast, resolve_device, resolve_precision
from sktransfer.backbones._modules import block_names
from sktransfer.backbones._registry import get_backbone_spec, load_backbone
from sktransfer.exceptions import InputError

__all__ = ["FineTunedClassifier", "FineTunedRegressor"]

STRATEGIES = ("head", "last_n", "full", "gradual")


class _GradualUnfreeze(Callback):
    """Unfreeze one more block at the start of every epoch (``strategy="gradual"``)."""

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1
        inner = net.module_.backbone.sktransfer_inner
        n = min(epoch + 1, len(block_names(inner)))
        net.module_.set_trainable(trainable_prefixes(inner, n))


class _OriginalLabelScorer:
    """A sklearn scorer fed the original labels (skorch passes encoded ones)."""

    def __init__(self, scoring: str):
        self.scoring = scoring

    def __call__(self, net, X, y):
        from sklearn.metrics import get_scorer

        y = np.asarray(y)
        if hasattr(net, "label_encoder_"):
            y = net.classes_[y.astype(int)]
        return get_scorer(self.scoring)(net, X, y)


def _bad_callbacks(callbacks) -> bool:
    """True unless ``callbacks`` is None or a list of skorch callbacks."""
    if callbacks is None:
        return False
    if not isinstance(callbacks, list):
        return True

    def ok(cb):
        if isinstance(cb, tuple) and len(cb) == 2 and isinstance(cb[0], str):
            cb = cb[1]
        return isinstance(cb, Callback) or (
            isinstance(cb, type) and issubclass(cb, Callback)
        )

    return not all(ok(cb) for cb in callbacks)


class _FineTuneMixin:
    """Everything the classifier and the regressor share."""

    # --------------------------------------------------------- device param
    @property
    def device(self):
        raw = self.__dict__.get("_device_raw", "auto")
        return str(resolve_device(raw)) if raw == "auto" else raw

    @device.setter
    def device(self, value):
        self.__dict__["_device_raw"] = value

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        # skorch lists every attribute not ending in "_"; private state is not a
        # parameter (and must not travel with clone, e.g. the checkpoint dir).
        params = {k: v for k, v in params.items() if not k.startswith("_")}
        params["device"] = self.__dict__.get("_device_raw", "auto")
        for skorch_only in (  # fixed by the estimator, not user parameters
            "module",
            "criterion",
            "optimizer",
            "train_split",
            "classes",
        ):
            params.pop(skorch_only, None)
        return params

    def __getstate__(self):
        state = super().__getstate__()
        state["device"] = self.device  # skorch maps CUDA tensors by this on load
        return state

    def __setstate__(self, state):
        raw = state.pop("_device_raw", state.get("device", "auto"))
        super().__setstate__(state)  # CUDA-trained tensors land on the CPU if needed
        self.__dict__.pop("device", None)
        if str(raw).startswith("cuda") and not torch.cuda.is_available():
            raw = "cpu"
        self.__dict__["_device_raw"] = raw

    def __sklearn_tags__(self):
        return modality_tags(super().__sklearn_tags__(), self.backbone)

    # --------------------------------------------------------- data
    def _spec(self):
        return get_backbone_spec(self.backbone)

    def _loaded(self):
        n_in = self.n_features_in_ if self._spec().modality == "tabular" else None
        return load_backbone(self.backbone, self.weights, n_features_in=n_in)

    def _samples(self, X, reset: bool) -> Samples:
        """Validate ``X`` with the extractor's input code (tabular: sklearn's)."""
        spec = self._spec()
        if spec.modality == "tabular":
            X = validate_data(self, X, reset=reset, dtype=np.float32)
            return Samples(X)
        samples = as_samples(X, spec.modality)
        if reset:
            self.n_features_in_ = 1
        if spec.modality == "text":
            bad = check_texts(samples)
            if bad:
                raise InputError(next(iter(bad.values())))
        return samples

    def _extractor(self):
        return PretrainedFeatureExtractor(
            self.backbone,
            weights=self.weights,
            pooling=self.pooling,
            device=self.__dict__.get("_device_raw", "auto"),
            precision=self.precision,
            max_length=self.max_length,
            normalize=False,
        )

    def get_dataset(self, X, y=None):
        if isinstance(X, Dataset):
            return X
        if self.strategy == "head":  # frozen backbone: embed once (cached)
            feats = self._head_extractor_.transform(X)
            return Dataset(feats, y)
        samples = self._samples(X, reset=False)
        return SampleDataset(samples, y, self._loaded(), self.max_length)

    def get_iterator(self, dataset, training=False):
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        collate = getattr(base, "collate", None)
        if collate is not None:
            kwargs.setdefault("collate_fn", collate)
        generator = getattr(self, "_shuffle_generator", None)
        if training and generator is not None:  # seeded shuffling (random_state)
            kwargs.setdefault("generator", generator)
        lengths = getattr(base, "lengths", None)
        if training and lengths is not None and kwargs.get("shuffle", True):
            # texts: batches of similar length (less padding), in random order
            if isinstance(dataset, Subset):
                lengths = lengths[np.asarray(dataset.indices)]
            kwargs["batch_sampler"] = LengthGroupedBatchSampler(
                lengths, kwargs.pop("batch_size"), kwargs.pop("generator", None)
            )
            kwargs.pop("shuffle", None)
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, **kwargs)

    # --------------------------------------------------------- precision
    def _amp(self):
        device = torch.device(self.device)
        return device, resolve_precision(self.precision, device)

    def infer(self, x, **fit_params):
        device, dtype = self._amp()
        with autocast(device, dtype):
            out = super().infer(x, **fit_params)
        return out.float()

    def train_step(self, batch, **fit_params):
        scaler = getattr(self, "grad_scaler_", None)
        if scaler is None:
            return super().train_step(batch, **fit_params)
        # fp16: scale the loss so small gradients do not underflow, unscale before
        # the step (skip it on inf/NaN), as in torch.amp's recipe.
        self._zero_grad_optimizer()
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler.scale(loss).backward()
        scaler.unscale_(self.optimizer_)
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        scaler.step(self.optimizer_)
        scaler.update()
        return {"loss": loss, "y_pred": y_pred}

    # --------------------------------------------------------- module
    def initialize_module(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"The 'strategy' parameter must be one of {STRATEGIES}; got "
                f"{self.strategy!r} instead."
            )
        n_out = self._n_outputs()
        if self.strategy == "head":
            self._head_extractor_ = self._extractor()
            n_in = self._head_extractor_.fit(self._probe_X())._n_features_out
            module = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(n_in, n_out))
        else:
            loaded = self._loaded()
            features = build_feature_model(
                loaded, copy.deepcopy(loaded.model), pooling=self.pooling
            )
            n_in = feature_width(
                features, loaded, getattr(self, "n_features_in_", None)
            )
            augment = None
            if loaded.spec.modality == "image" and self.augment is not False:
                augment = (
                    BatchAugment() if self.augment in (True, "auto") else self.augment
                )
            module = TransferModule(features, n_in, n_out, self.dropout, augment)
            inner = features.sktransfer_inner
            if self.strategy == "full":
                module.set_trainable(None)
            elif self.strategy == "last_n":
                module.set_trainable(trainable_prefixes(inner, self.n_blocks))
            else:  # gradual: the callback unfreezes block by block
                module.set_trainable(trainable_prefixes(inner, 0))
        self.module_ = module.to(self.device)
        return self

    def _probe_X(self):
        spec = self._spec()
        if spec.modality == "text":
            return ["probe"]
        if spec.modality == "tabular":
            return np.zeros((1, self.n_features_in_), np.float32)
        return [np.zeros((8, 8, 3), np.uint8)]

    def initialize_optimizer(self, *args, **kwargs):
        backbone_lr = self.backbone_lr
        if backbone_lr is None:
            backbone_lr = self.lr * 0.1
        backbone, head = [], []
        for name, param in self.module_.named_parameters():
            (backbone if name.startswith("backbone.") else head).append(param)
        groups = [
            {"params": backbone, "lr": backbone_lr},
            {"params": head, "lr": self.lr},
        ]
        groups = [g for g in groups if g["params"]]
        self.optimizer_ = self.optimizer(
            groups, lr=self.lr, weight_decay=self.weight_decay
        )
        device, dtype = self._amp()
        self.grad_scaler_ = (
            torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        )
        return self

    def get_default_callbacks(self):
        callbacks = []
        for name, cb in super().get_default_callbacks():
            if name == "valid_acc":  # skorch's scores encoded labels; ours decodes
                cb = EpochScoring(
                    _OriginalLabelScorer("accuracy"),
                    name="valid_acc",
                    lower_is_better=False,
                )
            callbacks.append((name, cb))
        if self.strategy == "gradual":
            callbacks.append(("gradual_unfreeze", _GradualUnfreeze()))
        return callbacks + self._extra_callbacks()

    def set_params(self, **params):
        if "callbacks" in params and _bad_callbacks(params["callbacks"]):
            self.callbacks = params.pop("callbacks")  # fit reports the bad value
        return super().set_params(**params)

    def _initialize_callbacks(self):
        if _bad_callbacks(self.callbacks):
            return self  # set_params never raises; fit reports the bad value
        return super()._initialize_callbacks()

    def get_split_datasets(self, X, y=None, **fit_params):
        dataset = self.get_dataset(X, y)
        if not self.valid_size:
            return dataset, None
        split = ValidSplit(
            self.valid_size,
            stratified=self._stratified(),
            random_state=self.random_state,
        )
        return split(dataset, y, **fit_params)

    def _extra_callbacks(self):
        scoring_name = self.scoring if isinstance(self.scoring, str) else "score"
        lower_is_better = False  # scikit-learn scorers: greater is better
        extra = []
        if self.valid_size:
            extra.append(
                (
                    f"valid_{scoring_name}",
                    EpochScoring(
                        _OriginalLabelScorer(self.scoring),
                        lower_is_better=lower_is_better,
                        name=f"valid_{scoring_name}",
                    ),
                )
            )
            if self.patience:
                extra.append(
                    (
                        "early_stopping",
                        EarlyStopping(
                            monitor=f"valid_{scoring_name}",
                            patience=self.patience,
                            lower_is_better=lower_is_better,
                            load_best=True,
                        ),
                    )
                )
        if isinstance(self.checkpoint_dir, (str, os.PathLike)):  # else: fit raises
            # best epoch on validation loss, or every epoch without validation
            checkpoint = Checkpoint(
                dirname=self._checkpoint_path(),
                monitor="valid_loss_best" if self.valid_size else None,
            )
            extra.append(("checkpoint", checkpoint))
            if self.checkpoint_dir != "auto":  # a directory of the user's: resume
                extra.append(("resume", LoadInitState(checkpoint)))
        return extra

    def _checkpoint_path(self) -> str:
        if self.checkpoint_dir == "auto":
            if getattr(self, "_auto_dir", None) is None:  # unique per clone / process
                self._auto_dir = tempfile.mkdtemp(prefix="sktransfer-ckpt-")
            return self._auto_dir
        return os.fspath(self.checkpoint_dir)

    # --------------------------------------------------------- fit
    def _fit_common(self, X, y, fit, **fit_params):
        seed = self.random_state
        with torch.random.fork_rng(devices=[]):  # never touches the global RNG
            if seed is not None:
                torch.manual_seed(seed)
            self._shuffle_generator = (
                None if seed is None else torch.Generator().manual_seed(seed)
            )
            return fit(X, y, **fit_params)

    def fit(self, X, y=None, **fit_params):
        self._check_fit_input(X, y, fit_params, partial=False)
        keep = self.warm_start and getattr(self, "initialized_", False)
        y = self._prepare_y(y, None, keep)
        return self._fit_common(X, y, super().fit, **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if fit_params.get("_routing_method") == "fit":  # from fit: y is prepared
            return super().partial_fit(X, y, classes=classes, **fit_params)
        self._check_fit_input(X, y, fit_params, partial=True)
        y = self._prepare_y(y, classes, getattr(self, "initialized_", False))
        return self._fit_common(X, y, super().partial_fit, **fit_params)

    def _check_fit_input(self, X, y, fit_params, partial: bool):
        """Validate ``X`` (tabular: sets ``n_features_in_``) and ``y``'s presence."""
        name = type(self).__name__
        if "sample_weight" in fit_params:
            raise TypeError(
                f"{name}.fit does not support sample_weight; weight classes with "
                "class_weight= (e.g. 'balanced') instead."
            )
        if y is None:
            raise ValueError(
                f"{name} requires y to be passed, but the target y is None."
            )
        if _bad_callbacks(self.callbacks):
            raise TypeError(
                "callbacks must be None or a list of skorch callbacks (or "
                f"(name, callback) pairs); got {self.callbacks!r}."
            )
        if self.checkpoint_dir is not None and not isinstance(
            self.checkpoint_dir, (str, os.PathLike)
        ):
            raise ValueError(
                "checkpoint_dir must be None, 'auto' or a directory path; got "
                f"{self.checkpoint_dir!r}."
            )
        if isinstance(X, Dataset):
            return
        reset = not (
            getattr(self, "initialized_", False) and (self.warm_start or partial)
        )
        samples = self._samples(X, reset=reset)
        if len(samples) == 0:
            raise ValueError(f"{name} got 0 samples; fit needs at least 2.")
        if _num_samples(y) != len(samples):
            raise ValueError(
                f"X has {len(samples)} samples but y has {_num_samples(y)}; they "
                "must match."
            )

    def _check_fitted(self):
        if not getattr(self, "initialized_", False):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit first."
            )


class FineTunedClassifier(_FineTuneMixin, NeuralNetClassifier):
    """Fine-tune a pretrained backbone with a new classification head.

    A :class:`skorch.NeuralNetClassifier`: skorch's callbacks, history,
    ``save_params`` / ``load_params``, ``warm_start`` and ``partial_fit`` all work,
    and it is a scikit-learn classifier (string or gapped labels, ``classes_``,
    ``predict`` returns the original labels, ``predict_proba`` columns follow
    ``classes_``).

    Parameters
    ----------
    backbone : str, path, nn.Module or BackboneSpec, default="efficientnet_lite0"
        As in :class:`~sktransfer.PretrainedFeatureExtractor`.
    strategy : {"head", "last_n", "full", "gradual"}, default="last_n"
        ``"head"``: the backbone stays frozen and only the head is trained; the
        backbone runs once per sample (cached embeddings), not once per epoch.
        ``"last_n"``: the last ``n_blocks`` blocks (and the layers after them) are
        trained too. ``"full"``: everything is trained. ``"gradual"``: one more
        block is unfrozen at the start of each epoch, last block first.
    n_blocks : int, default=2
        Blocks trained by ``"last_n"``.
    weights : str or path, default=None
        As in the extractor.
    pooling : str, default="auto"
        As in the extractor.
    lr : float, default=1e-3
        Learning rate of the head.
    backbone_lr : float, default=None
        Learning rate of the backbone's trainable parameters (discriminative
        learning rates); None means ``lr / 10``.
    max_epochs : int, default=10
    batch_size : int, default=32
    weight_decay : float, default=0.01
        AdamW weight decay.
    dropout : float, default=0.1
        Dropout before the head.
    label_smoothing : float, default=0.0
    class_weight : dict, "balanced" or None, default=None
        Loss weights per class, as in scikit-learn.
    augment : "auto", bool or nn.Module, default="auto"
        Image augmentation in training only: ``"auto"``/True is a random resized
        crop (60-100 % of the area) and a horizontal flip; False disables it; an
        ``nn.Module`` taking a uint8 ``(N, C, H, W)`` batch replaces it.
    valid_size : float or None, default=0.1
        Fraction held out (stratified) for validation; None trains on everything.
    scoring : str, default="accuracy"
        Validation score recorded each epoch (``"f1_macro"``...).
    patience : int or None, default=None
        Early stopping on ``scoring`` after ``patience`` epochs without progress;
        the best weights are restored.
    checkpoint_dir : str, path, "auto" or None, default=None
        Save the best epoch there (skorch ``Checkpoint``; on ``valid_loss``, or
        every epoch without validation). A directory of yours also resumes:
        ``fit`` first loads the parameters, optimizer and history saved there,
        then trains ``max_epochs`` more. ``"auto"`` is a fresh temporary
        directory per estimator (no resuming), so parallel CV never collides.
    device : str, default="auto"
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Forward passes under ``torch.autocast`` in that dtype (weights and
        optimizer stay float32; fp16 scales the loss with a ``GradScaler``).
        ``"auto"``: bf16 on a GPU that supports it, else fp16; fp32 on the CPU.
    max_length : int, default=None
        Token limit for text backbones.
    random_state : int or None, default=None
        Seeds initialisation, shuffling, dropout and augmentation without touching
        the global RNG: two fits with the same seed give identical models on CPU.
    callbacks : list, default=None
        Extra skorch callbacks.
    verbose : int, default=0
    **kwargs
        Passed to :class:`skorch.NeuralNetClassifier`.

    Examples
    --------
    >>> from sktransfer import FineTunedClassifier
    >>> texts = ["good", "great", "bad", "awful"] * 3
    >>> labels = ["pos", "pos", "neg", "neg"] * 3
    >>> clf = FineTunedClassifier("test-text", strategy="full", max_epochs=2,
    ...                           valid_size=None, random_state=0).fit(texts, labels)
    >>> clf.classes_.tolist()
    ['neg', 'pos']
    >>> clf.predict_proba(texts[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        backbone="efficientnet_lite0",
        strategy="last_n",
        *,
        n_blocks=2,
        weights=None,
        pooling="auto",
        lr=1e-3,
        backbone_lr=None,
        max_epochs=10,
        batch_size=32,
        weight_decay=0.01,
        dropout=0.1,
        label_smoothing=0.0,
        class_weight=None,
        augment="auto",
        valid_size=0.1,
        scoring="accuracy",
        patience=None,
        checkpoint_dir=None,
        device="auto",
        precision="auto",
        max_length=None,
        random_state=None,
        callbacks=None,
        verbose=0,
        **kwargs,
    ):
        super().__init__(
            module=TransferModule,
            criterion=nn.CrossEntropyLoss,
            optimizer=torch.optim.AdamW,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=None,
            callbacks=callbacks,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.backbone = backbone
        self.strategy = strategy
        self.n_blocks = n_blocks
        self.weights = weights
        self.pooling = pooling
        self.backbone_lr = backbone_lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.augment = augment
        self.valid_size = valid_size
        self.scoring = scoring
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.precision = precision
        self.max_length = max_length
        self.random_state = random_state

    def _stratified(self):
        return True

    def _n_outputs(self):
        return len(self.classes_)

    def initialize_criterion(self, *args, **kwargs):
        weight = None
        if self.class_weight is not None and hasattr(self, "_y_encoded"):
            w = (
                compute_class_weight(
                    self.class_weight,
                    classes=np.arange(len(self.classes_)),
                    y=self._y_encoded,
                )
                if self.class_weight == "balanced"
                else np.array([self.class_weight.get(c, 1.0) for c in self.classes_])
            )
            weight = torch.as_tensor(w, dtype=torch.float32, device=self.device)
        self.criterion_ = nn.CrossEntropyLoss(
            weight=weight, label_smoothing=self.label_smoothing
        )
        return self

    def _encode(self, y, classes=None, keep: bool = False):
        y = np.asarray(y)
        check_classification_targets(y)
        if not keep or not hasattr(self, "label_encoder_"):
            self.label_encoder_ = LabelEncoder().fit(
                y if classes is None else np.asarray(classes)
            )
        classes = self.label_encoder_.classes_
        if len(classes) < 2:
            raise ValueError(
                f"y has one class ({classes[0]!r}); a classifier needs at least "
                "two. Check the labels (e.g. after filtering)."
            )
        unknown = set(np.unique(y)) - set(classes)
        if unknown:
            raise ValueError(
                f"y has labels {sorted(unknown)} not seen in the first fit "
                f"(classes: {classes.tolist()})."
            )
        return self.label_encoder_.transform(y).astype(np.int64)

    @property
    def classes_(self):
        if not hasattr(self, "label_encoder_"):
            raise AttributeError("classes_ is set by fit")
        return self.label_encoder_.classes_

    @classes_.setter
    def classes_(self, value):  # skorch may try to set it; ours comes from y
        pass

    def _prepare_y(self, y, classes, keep: bool):
        self._y_encoded = self._encode(y, classes=classes, keep=keep)
        return self._y_encoded

    def predict_proba(self, X):
        self._check_fitted()
        with torch.random.fork_rng(devices=[]):
            return super().predict_proba(X)

    def predict(self, X):
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]


class FineTunedRegressor(_FineTuneMixin, NeuralNetRegressor):
    """Fine-tune a pretrained backbone with a new regression head.

    Same parameters as :class:`FineTunedClassifier`, without the classification
    ones (``label_smoothing``, ``class_weight``); ``scoring`` defaults to ``"r2"``
    and the loss is the mean squared error. ``y`` may be 1-D or 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import FineTunedRegressor
    >>> X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8)
    >>> reg = FineTunedRegressor("test-cnn", strategy="full", max_epochs=1,
    ...                          valid_size=None, random_state=0).fit(X, np.arange(8.0))
    >>> reg.predict(X).shape
    (8,)
    """

    def __init__(
        self,
        backbone="efficientnet_lite0",
        strategy="last_n",
        *,
        n_blocks=2,
        weights=None,
        pooling="auto",
        lr=1e-3,
        backbone_lr=None,
        max_epochs=10,
        batch_size=32,
        weight_decay=0.01,
        dropout=0.1,
        augment="auto",
        valid_size=0.1,
        scoring="r2",
        patience=None,
        checkpoint_dir=None,
        device="auto",
        precision="auto",
        max_length=None,
        random_state=None,
        callbacks=None,
        verbose=0,
        **kwargs,
    ):
        super().__init__(
            module=TransferModule,
            criterion=nn.MSELoss,
            optimizer=torch.optim.AdamW,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=None,
            callbacks=callbacks,
            verbose=verbose,
            device=device,
            **kwargs,
        )
        self.backbone = backbone
        self.strategy = strategy
        self.n_blocks = n_blocks
        self.weights = weights
        self.pooling = pooling
        self.backbone_lr = backbone_lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.augment = augment
        self.valid_size = valid_size
        self.scoring = scoring
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.precision = precision
        self.max_length = max_length
        self.random_state = random_state

    def _stratified(self):
        return False

    def _n_outputs(self):
        return self._n_targets

    def _prepare_y(self, y, classes, keep: bool):  # classes: classifiers only
        y = _check_y(y, multi_output=True, y_numeric=True).astype(np.float32)
        if not keep:
            self._squeeze = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        if keep and y2.shape[1] != self._n_targets:
            raise ValueError(
                f"y has {y2.shape[1]} targets, but this regressor was fitted on "
                f"{self._n_targets}."
            )
        self._n_targets = y2.shape[1]
        return y2

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may be (n_samples, n_targets)
        return tags

    @property
    def predict_proba(self):  # a regressor has no probabilities
        raise AttributeError("FineTunedRegressor has no predict_proba; use predict.")

    def predict(self, X):
        """Predicted targets: shape (n_samples,) or (n_samples, n_targets)."""
        self._check_fitted()
        with torch.random.fork_rng(devices=[]):
            parts = [
                yp.detach().float().cpu().numpy()
                for yp in self.forward_iter(X, training=False)
            ]
        out = np.concatenate(parts, 0).astype(np.float64)  # sklearn's convention
        return out.ravel() if getattr(self, "_squeeze", False) else out
