"""FineTunedClassifier: fine-tune a backbone with a new classification head."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from skorch import NeuralNetClassifier
from torch import nn

from sktransfer._inputs import check_y_missing
from sktransfer.adapt._domains import is_unlabeled
from sktransfer.adapt._labeled import labeled_part
from sktransfer.finetune._adaptation import UNLABELED_INDEX, parse_adaptation
from sktransfer.finetune._mixin import FineTuneMixin
from sktransfer.finetune._module import TransferModule

__all__ = ["FineTunedClassifier"]


class FineTunedClassifier(FineTuneMixin, NeuralNetClassifier):
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
        Weight decay, passed to the optimizer (``optimizer__weight_decay`` wins).
        With ``l2sp > 0`` it applies to the head only.
    head_init : {"auto", "probe", "random", "class_names"} or estimator, \
default="auto"
        How the new head starts, and what epoch 0 is. ``"auto"``: the head
        starts from PyTorch's initialisation and the linear probe (below) is
        only epoch 0's *candidate*: with a validation split it is scored as
        epoch 0 and kept when no fine-tuned epoch beats it; with few samples
        the cross-validated choice of epochs may pick it (0 epochs); without
        either no probe is fitted. Chosen as the default because on a 26-way
        WordNet task, cross-validated on training data only, starting
        fine-tuning from the probe cost 3.8 points against a random
        start (``benchmarks/bench_finetune_defaults.py``), while keeping the
        probe as a candidate keeps the model never worse on validation than
        its probe. ``"probe"`` (LP-FT, Kumar et al., ICLR 2022):
        before the first epoch, a logistic regression (ridge for the regressor)
        is fitted on the frozen, cached features of the training part of the
        split, and becomes the head, so fine-tuning starts where the frozen
        probe ends instead of sending a random head's gradients into the
        backbone. A scikit-learn linear estimator (with ``coef_`` and
        ``intercept_``, e.g. ``LogisticRegression(C=0.1)``) is fitted instead
        of the default one. ``"random"``: PyTorch's default initialisation.
        ``"class_names"`` (text backbones, and the image tower of a CLIP /
        SigLIP dual encoder): the zero-shot head, each class's name through
        :class:`~sktransfer.ZeroShotClassifier`'s default templates ("This
        text is about {}."; "a photo of a {}." for images, embedded by the
        text tower), so fine-tuning starts from the zero-shot classifier (what
        it predicts, with no label read) and the labels refine it.
        With a validation split, the start is scored as epoch 0
        (``start_scores_``) and the best epoch, epoch 0 included, is kept
        (``best_epoch_``), so the model is never worse on validation than its
        own probe.
    l2sp : float, default=0.0
        L2-SP strength (Li et al., ICML 2018): ``l2sp * sum ||w - w0||^2`` over
        the backbone's trainable weights is added to the training loss, pulling
        them toward the pretrained ``w0`` instead of toward zero. 0 disables it.
    dropout : float, default=0.1
        Dropout before the head.
    adaptation : str or None, default=None
        Adapt to unlabelled target rows given in the same ``fit`` with the
        label ``-1`` (scikit-learn's semi-supervised convention; with string
        labels, an object array holding ``-1``): ``"dann"`` (a domain
        classifier behind gradient reversal), ``"coral"`` (Deep CORAL,
        feature covariances aligned per batch), ``"entropy"`` (target
        predictions made confident), or several joined by ``+``. Training
        batches then mix both domains in a fixed share (texts grouped by
        length within each domain). The validation
        split, the probe start and the best epoch read source labels only, so
        no target label is used to choose (epoch 0, the source-only probe,
        stays a candidate). Not with ``strategy="head"``: frozen features are
        adapted by the transformers of ``sktransfer.adapt`` instead.
    adaptation_weight : float, default=1.0
        Weight of the adaptation terms beside the classification loss.
    adaptation_ratio : float or None, default=0.25
        Target rows per source row in each training epoch: every source row
        and ``ceil(adaptation_ratio * n_source)`` target rows drawn afresh
        each epoch (all target rows are seen over a few epochs), so an epoch
        costs about ``1 + adaptation_ratio`` times a source-only one. ``None``
        trains on every target row every epoch. The DANN loss weighs the two
        domains equally whatever their share of a batch.
    label_smoothing : float, default=0.0
    class_weight : dict, "balanced" or None, default=None
        Loss weights per class, as in scikit-learn.
    augment : "auto", bool or nn.Module, default="auto"
        Image augmentation in training only: ``"auto"``/True is a random resized
        crop (60-100 % of the area) and a horizontal flip; False disables it; an
        ``nn.Module`` taking a uint8 ``(N, C, H, W)`` batch replaces it.
    valid_size : float, int or None, default=0.1
        Held out (stratified) for validation: a fraction of the samples, or
        an int number of samples (as in ``train_test_split``; e.g. the number
        of classes, one sample each, on small data); None trains on
        everything. With validation, the weights of the best epoch (on
        ``scoring``; on a tie the earlier epoch; epoch 0 is the start) are
        restored at the end of a fresh ``fit``.
    refit : bool, default=False
        With a validation split: once the best epoch ``k`` is chosen, train
        anew on *every* sample (the validation rows included) for ``k``
        epochs, as ``GridSearchCV`` refits its best candidate (``k = 0``:
        the probe alone, fitted on every sample). The final model then misses
        no training row, at the cost of a second training of ``k`` epochs;
        ``validation_history_`` keeps the run that chose ``k``. The second
        training writes no checkpoint.
    scoring : str or callable, default="accuracy"
        Validation score recorded each epoch (``"f1_macro"``...), on which the
        best epoch is chosen. With ``adaptation=``, a label-free scorer of
        ``sktransfer.adapt`` (``ImportanceWeightedScorer()``,
        ``DeepEmbeddedValidationScorer()``, ``PredictionEntropyScorer()``)
        chooses the epoch from the validation split's source *and* target
        rows (frozen-backbone features place them for the importance
        weights), still without a target label.
    patience : int or None, default=None
        Early stopping on ``scoring`` after ``patience`` epochs without progress;
        the best weights are restored.
    checkpoint_dir : str, path, "auto" or None, default=None
        Save the best epoch there (skorch ``Checkpoint``; on ``valid_loss``, or
        every epoch without validation). A directory of yours also resumes:
        after every epoch the whole training state is kept there
        (``resume-epoch<k>.pt``: weights, optimizer, history, LP-FT's best
        epoch, random streams), and a new ``fit`` with the same directory
        continues from the last finished epoch to ``max_epochs``, ending where
        the uninterrupted run would (a finished run trains no more; use a new
        directory to train anew). ``"auto"`` is a fresh temporary directory
        per estimator (no resuming), so parallel CV never collides.
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
        Extra skorch callbacks (``LRScheduler``, ``Freezer``, ``GradientNormClipping``
        ...). They run after the estimator's own (strategy, scoring, early
        stopping, checkpoint), so a ``Freezer`` at an epoch where the strategy
        unfreezes a block wins.
    verbose : int, default=0
    optimizer : torch optimizer class, default=torch.optim.AdamW
        Any ``torch.optim`` class; ``optimizer__*`` parameters (``momentum``,
        ``betas``, ``param_groups``...) are routed to it as skorch documents. Unless
        ``optimizer__param_groups`` is given, the backbone's parameters form one
        group at ``backbone_lr`` and the head another at ``lr``. ``Adam`` and
        ``AdamW`` run their fused kernel (the same update, several times
        faster on a CPU) on CPU and CUDA parameters unless ``optimizer__fused``
        or ``optimizer__foreach`` is given.
    criterion : loss class or instance, default=torch.nn.CrossEntropyLoss
        ``criterion__*`` parameters are routed to it; ``class_weight`` and
        ``label_smoothing`` are passed as ``weight`` / ``label_smoothing`` unless
        given as ``criterion__weight`` / ``criterion__label_smoothing``. The module
        outputs logits.
    trust_remote_code : bool, default=False
        Allow a Hugging Face model folder to run its own code.
    **kwargs
        Passed to :class:`skorch.NeuralNetClassifier`: ``iterator_train__*``,
        ``iterator_valid__*``, ``module__*`` (to :class:`TransferModule`),
        ``warm_start``, ``train_split`` (with ``valid_size=None``)...

    Attributes
    ----------
    classes_ : ndarray
        The labels, sorted.
    history_ : skorch History
        One row per epoch (epochs 1, 2, ...).
    start_scores_ : dict or None
        ``valid_loss`` and ``valid_<scoring>`` of the start (epoch 0: the probe's
        head on the pretrained backbone), with a validation split.
    best_epoch_ : int or None
        The epoch whose weights were kept (0: the start), with a validation split.
        With ``refit=True``: the number of epochs the final training ran.
    validation_history_ : skorch History or None
        With ``refit=True``: the history of the run with validation that chose
        ``best_epoch_`` (``history_`` is then the refit's).

    See Also
    --------
    sktransfer.PretrainedFeatureExtractor : the frozen backbone as a transformer.

    Notes
    -----
    Every parameter is checked in ``fit``, with scikit-learn's wording. Changing
    ``backbone``, ``weights`` or ``pooling`` after ``fit`` needs a new ``fit``
    (``predict`` says so).

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

    _stratified = True

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
        head_init="auto",
        l2sp=0.0,
        dropout=0.1,
        label_smoothing=0.0,
        class_weight=None,
        adaptation=None,
        adaptation_weight=1.0,
        adaptation_ratio=0.25,
        augment="auto",
        valid_size=0.1,
        refit=False,
        scoring="accuracy",
        patience=None,
        checkpoint_dir=None,
        device="auto",
        precision="auto",
        max_length=None,
        random_state=None,
        callbacks=None,
        verbose=0,
        optimizer=torch.optim.AdamW,
        criterion=nn.CrossEntropyLoss,
        trust_remote_code=False,
        **kwargs,
    ):
        super().__init__(
            module=kwargs.pop("module", TransferModule),
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=kwargs.pop("train_split", None),
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
        self.head_init = head_init
        self.l2sp = l2sp
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.adaptation = adaptation
        self.adaptation_weight = adaptation_weight
        self.adaptation_ratio = adaptation_ratio
        self.augment = augment
        self.valid_size = valid_size
        self.refit = refit
        self.scoring = scoring
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.precision = precision
        self.max_length = max_length
        self.random_state = random_state
        self.trust_remote_code = trust_remote_code

    def _n_outputs(self):
        return len(self.classes_)

    def _criterion_defaults(self) -> dict:
        kwargs = {}
        if self.class_weight is not None:
            y = self.classes_[self._y_encoded_]
            w = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            kwargs["weight"] = torch.as_tensor(w, dtype=torch.float32)
        if self.label_smoothing:
            kwargs["label_smoothing"] = self.label_smoothing
        return kwargs

    def _split_targets(self, y_ready):
        return self._y_encoded_, len(self.classes_)

    def _labeled_rows(self, y_true):
        if not parse_adaptation(self.adaptation):
            return None
        return y_true >= 0

    def _prepare_y(self, y, classes, keep: bool):
        y = check_y_missing(y)
        target = None
        if parse_adaptation(self.adaptation):
            target = is_unlabeled(y)
            if not target.any():
                warnings.warn(
                    f"adaptation={self.adaptation!r} but y has no unlabelled target "
                    "row (label -1): there is nothing to adapt to, so this fit is "
                    "source-only.",
                    UserWarning,
                    stacklevel=3,
                )
            y = labeled_part(y, ~target)
        check_classification_targets(y)
        if classes is None:
            classes = self.classes  # skorch's parameter: the labels, if known
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
        unknown = set(np.unique(y).tolist()) - set(classes.tolist())
        if unknown:
            where = (
                "not among the classes of the first fit"
                if keep
                else "not in classes= (passed to partial_fit or the estimator)"
            )
            raise ValueError(
                f"y has labels {sorted(unknown)} {where} (classes: "
                f"{classes.tolist()}). Pass every label in classes=, or fit anew."
            )
        self._y_encoded_ = self.label_encoder_.transform(y).astype(np.int64)
        if target is not None and target.any():
            encoded = np.full(len(target), UNLABELED_INDEX, dtype=np.int64)
            encoded[~target] = self._y_encoded_
            return encoded
        return self._y_encoded_

    def _encode_y(self, y) -> np.ndarray:
        """Labels as the network sees them (a validation set's, say)."""
        y = check_y_missing(y)
        if parse_adaptation(self.adaptation):
            target = is_unlabeled(y)
            if target.any():
                encoded = np.full(len(target), UNLABELED_INDEX, dtype=np.int64)
                encoded[~target] = self._encode_y_labeled(labeled_part(y, ~target))
                return encoded
        return self._encode_y_labeled(y)

    def _encode_y_labeled(self, y) -> np.ndarray:
        unknown = set(np.unique(y).tolist()) - set(self.classes_.tolist())
        if unknown:
            raise ValueError(
                f"the validation set has labels {sorted(unknown)} that the training "
                f"y does not (classes: {self.classes_.tolist()})."
            )
        return self.label_encoder_.transform(y).astype(np.int64)

    def _targets_before_fit(self):
        """``initialize()`` without ``fit`` (to ``load_params`` into it): the
        head's size comes from ``classes=``."""
        if hasattr(self, "label_encoder_"):
            return
        if self.classes is None or len(self.classes) < 2:
            raise AttributeError(
                f"{type(self).__name__}.initialize() before fit needs the labels to "
                "size the head: pass classes=[...] (the saved model's classes_, "
                "e.g. FineTunedClassifier(..., classes=['cat', 'dog'])), then "
                "initialize() and load_params(f_params=...)."
            )
        self.label_encoder_ = LabelEncoder().fit(np.asarray(self.classes))

    @property
    def classes_(self):
        if not hasattr(self, "label_encoder_"):
            raise AttributeError(
                "classes_ is set by fit (or by initialize() with classes=[...])"
            )
        return self.label_encoder_.classes_

    @classes_.setter
    def classes_(self, value):  # skorch may try to set it; ours comes from y
        pass

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        self._check_fitted()
        with torch.random.fork_rng(devices=[]):
            return super().predict_proba(X)

    def predict(self, X):
        """Predicted labels (the original ones, e.g. strings)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]
