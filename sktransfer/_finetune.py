"""FineTunedClassifier / FineTunedRegressor: fine-tune a backbone as a skorch net."""

from __future__ import annotations

import copy
import os
import tempfile

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback, Checkpoint, EarlyStopping, EpochScoring
from skorch.dataset import Dataset, ValidSplit
from torch import nn

from sktransfer._embed import build_feature_model
from sktransfer._extractor import PretrainedFeatureExtractor
from sktransfer._finetune_module import BatchAugment, TransferModule, trainable_prefixes
from sktransfer._images import prepare_image
from sktransfer._inputs import Samples, as_samples, check_texts
from sktransfer._runtime import resolve_device
from sktransfer.backbones._modules import block_names
from sktransfer.backbones._registry import get_backbone_spec, load_backbone
from sktransfer.exceptions import InputError

__all__ = ["FineTunedClassifier", "FineTunedRegressor"]

STRATEGIES = ("head", "last_n", "full", "gradual")


class _SampleDataset(Dataset):
    """Decodes one image (or passes one text) per item, with its row in errors."""

    def __init__(self, samples: Samples, y, modality: str, preprocessing):
        super().__init__(np.arange(len(samples)), y)
        self.samples = samples
        self.modality = modality
        self.pre = preprocessing

    def transform(self, X, y):
        i = int(X)
        value = self.samples.values[i]
        if self.modality == "image":
            arr = prepare_image(value, self.samples.row(i), self.pre)
            X = torch.tensor(arr).permute(2, 0, 1).contiguous()
        else:
            X = i  # the collate function tokenises
        y = torch.as_tensor(0 if y is None else y)
        return X, y


class _TextCollate:
    """Tokenise a batch of text indices (picklable, unlike a closure)."""

    def __init__(self, samples: Samples, tokenizer, max_length: int):
        self.samples = samples
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, batch):
        idx = [int(i) for i, _ in batch]
        enc = self.tokenizer(
            [self.samples.values[i] for i in idx],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        X = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return X, torch.stack([y for _, y in batch])


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


class _FineTuneMixin:
    """Everything the classifier and the regressor share."""

    _raw_params = ("device",)

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
        params["device"] = self.__dict__.get("_device_raw", "auto")
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

    # --------------------------------------------------------- data
    def _spec(self):
        return get_backbone_spec(self.backbone)

    def _loaded(self):
        return load_backbone(self.backbone, self.weights)

    def _samples(self, X) -> Samples:
        spec = self._spec()
        samples = as_samples(X, spec.modality)
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
            max_length=self.max_length,
            normalize=False,
        )

    def get_dataset(self, X, y=None):
        if isinstance(X, Dataset):
            return X
        if self.strategy == "head":  # frozen backbone: embed once (cached)
            feats = self._head_extractor_.transform(X)
            return Dataset(feats, y)
        spec = self._spec()
        samples = self._samples(X)
        return _SampleDataset(
            samples, y, spec.modality, self._loaded().spec.preprocessing
        )

    def get_iterator(self, dataset, training=False):
        if self.strategy != "head" and self._spec().modality == "text":
            samples = (
                dataset.samples
                if hasattr(dataset, "samples")
                else dataset.dataset.samples
            )
            loaded = self._loaded()
            max_len = self.max_length or loaded.spec.preprocessing.max_length
            collate = _TextCollate(samples, loaded.tokenizer, max_len)
            prefix = "iterator_train" if training else "iterator_valid"
            setattr(self, f"{prefix}__collate_fn", collate)
        return super().get_iterator(dataset, training=training)

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
            n_in = (
                PretrainedFeatureExtractor(
                    self.backbone,
                    weights=self.weights,
                    pooling=self.pooling,
                    cache=None,
                )
                .fit(self._probe_X())
                ._n_features_out
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
        return [np.zeros((8, 8, 3), np.uint8)]

    def initialize_optimizer(self, *args, **kwargs):
        backbone_lr = self.backbone_lr
        if backbone_lr is None:
            backbone_lr = self.lr * 0.1
        groups = [
            {
                "params": [
                    p
                    for n, p in self.module_.named_parameters()
                    if n.startswith("backbone.")
                ],
                "lr": backbone_lr,
            },
            {
                "params": [
                    p
                    for n, p in self.module_.named_parameters()
                    if not n.startswith("backbone.")
                ],
                "lr": self.lr,
            },
        ]
        groups = [g for g in groups if g["params"]]
        self.optimizer_ = self.optimizer(
            groups, lr=self.lr, weight_decay=self.weight_decay
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
        return callbacks

    def _extra_callbacks(self, scoring_name: str, lower_is_better: bool):
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
        if self.checkpoint_dir is not None:
            extra.append(("checkpoint", Checkpoint(dirname=self._checkpoint_path())))
        return extra

    def _checkpoint_path(self) -> str:
        if self.checkpoint_dir == "auto":
            if getattr(self, "_auto_dir", None) is None:  # unique per clone / process
                self._auto_dir = tempfile.mkdtemp(prefix="sktransfer-ckpt-")
            return self._auto_dir
        return os.fspath(self.checkpoint_dir)

    # --------------------------------------------------------- fit
    def _fit_common(self, X, y, scoring_name, lower_is_better, fit, **fit_params):
        self.train_split = (
            ValidSplit(
                self.valid_size,
                stratified=self._stratified(),
                random_state=self.random_state,
            )
            if self.valid_size
            else None
        )
        self.callbacks = list(self.user_callbacks or []) + self._extra_callbacks(
            scoring_name, lower_is_better
        )
        seed = self.random_state
        with torch.random.fork_rng(devices=[]):  # never touches the global RNG
            if seed is not None:
                torch.manual_seed(seed)
                self.iterator_train__generator = torch.Generator().manual_seed(seed)
            return fit(X, y, **fit_params)


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
        Save the best parameters there each epoch (skorch ``Checkpoint``); resume
        with ``initialize()`` then ``load_params(checkpoint=net.callbacks_...)``.
        ``"auto"`` is a fresh temporary directory per estimator, so parallel CV
        never collides.
    device : str, default="auto"
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Reserved for mixed precision on GPU; fp32 on the CPU.
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
            callbacks=None,
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
        self.user_callbacks = callbacks

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        params["callbacks"] = self.user_callbacks
        for skorch_only in (
            "module",
            "criterion",
            "optimizer",
            "train_split",
            "user_callbacks",
            "classes",
        ):
            params.pop(skorch_only, None)
        return params

    def set_params(self, **params):
        if "callbacks" in params:
            self.user_callbacks = params.pop("callbacks")
        return super().set_params(**params)

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

    def _encode(self, y):
        if y is None:
            raise ValueError("FineTunedClassifier needs y.")
        y = np.asarray(y)
        if not hasattr(self, "label_encoder_") or not (
            self.warm_start and self.initialized_
        ):
            self.label_encoder_ = LabelEncoder().fit(y)
        classes = self.label_encoder_.classes_
        if len(classes) < 2:
            raise ValueError(
                f"y has a single class ({classes[0]!r}); a classifier needs at "
                "least two. Check the labels (e.g. after filtering)."
            )
        unknown = set(np.unique(y)) - set(classes)
        if unknown:
            raise ValueError(
                f"y has labels {sorted(unknown)} not seen in the first fit."
            )
        return self.label_encoder_.transform(y).astype(np.int64)

    @property
    def classes_(self):
        return self.label_encoder_.classes_

    @classes_.setter
    def classes_(self, value):  # skorch may try to set it; ours comes from y
        pass

    def fit(self, X, y=None, **fit_params):
        y_enc = self._encode(y)
        self._y_encoded = y_enc
        return self._fit_common(
            X, y_enc, self.scoring, False, super().fit, **fit_params
        )

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if fit_params.get("_routing_method") == "fit":  # skorch's fit: y encoded
            return super().partial_fit(X, y, classes=classes, **fit_params)
        if not hasattr(self, "label_encoder_"):
            self.label_encoder_ = LabelEncoder().fit(
                classes if classes is not None else y
            )
        y_enc = self.label_encoder_.transform(np.asarray(y)).astype(np.int64)
        self._y_encoded = y_enc
        return self._fit_common(
            X, y_enc, self.scoring, False, super().partial_fit, **fit_params
        )

    def predict_proba(self, X):
        with torch.random.fork_rng(devices=[]):
            return super().predict_proba(X)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


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
            callbacks=None,
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
        self.user_callbacks = callbacks

    get_params = FineTunedClassifier.get_params
    set_params = FineTunedClassifier.set_params

    def _stratified(self):
        return False

    def _n_outputs(self):
        return self._n_targets

    def fit(self, X, y=None, **fit_params):
        y = np.asarray(y, dtype=np.float32)
        self._squeeze = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self._n_targets = y2.shape[1]
        return self._fit_common(X, y2, self.scoring, False, super().fit, **fit_params)

    def predict(self, X):
        out = super().predict(X)
        return out.ravel() if getattr(self, "_squeeze", False) else out
