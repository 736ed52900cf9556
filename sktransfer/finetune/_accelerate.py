"""Fine-tuning with Hugging Face accelerate, through skorch's ``AccelerateMixin``.

:class:`AcceleratedFineTunedClassifier` / :class:`AcceleratedFineTunedRegressor`
are the fine-tuners with skorch's :class:`skorch.hf.AccelerateMixin` in front:
accelerate prepares the module, optimizer and data loaders (one process per GPU,
or several CPU processes over gloo, launched by ``accelerate launch`` or
``torchrun``), owns mixed precision (``Accelerator(mixed_precision="bf16")``)
and gradient accumulation (``gradient_accumulation_steps=``), and gathers
validation predictions from every process. Everything else is the fine-tuner's:
strategies, LP-FT, L2-SP, callbacks, ``optimizer=``.

Two things change with an accelerator:

- ``device=None`` (the default here): the accelerator places the tensors;
- in a multi-process run, validation scores are computed on the predictions
  gathered from every process (the scorers predict again instead of
  reusing the validation batches' predictions, which are each process's own
  share: one more pass over the validation set per score);
- ``precision`` is ignored: mixed precision is the accelerator's
  (``mixed_precision=``), so the two never stack;
- the epoch log is printed by the main process only (skorch's
  ``callbacks__print_log__sink="auto"`` is ``accelerator.print``), whatever
  ``verbose`` says; pass ``callbacks__print_log__sink=print`` to make
  ``verbose=0`` silence it (then every process prints with ``verbose=1``).

For histories that agree across processes (early stopping, checkpoints), pass
skorch's ``DistributedHistory`` as ``history=`` (see ``docs/guide/scaling.md``).
"""

from __future__ import annotations

import contextlib

from skorch.callbacks import EpochScoring
from skorch.hf import AccelerateMixin
from torch import nn

from sktransfer.finetune._classifier import FineTunedClassifier
from sktransfer.finetune._regressor import FineTunedRegressor

__all__ = [
    "AcceleratedFineTunedClassifier",
    "AcceleratedFineTunedRegressor",
    "FrozenCriterion",
]


class FrozenCriterion:
    """A loss module with nothing to train, kept out of ``accelerator.prepare``.

    skorch's ``AccelerateMixin`` prepares every criterion that is an
    ``nn.Module``; in a multi-process run accelerate then wraps it in
    ``DistributedDataParallel``, which refuses a module without trainable
    parameters (huggingface/accelerate#760). ``CrossEntropyLoss`` and
    ``MSELoss`` have none, so they are held here, on the accelerator's device,
    and called as usual.
    """

    def __init__(self, criterion: nn.Module):
        self.criterion = criterion

    def __call__(self, *args, **kwargs):
        return self.criterion(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FrozenCriterion({self.criterion!r})"


class _AcceleratedFineTune(AccelerateMixin):
    """What an accelerator changes in a fine-tuner (see the module docstring)."""

    def initialize_criterion(self):
        super().initialize_criterion()
        crit = self.criterion_
        if isinstance(crit, nn.Module) and not any(
            p.requires_grad for p in crit.parameters()
        ):
            self.criterion_ = FrozenCriterion(crit.to(self.accelerator.device))
        return self

    def get_default_callbacks(self):
        callbacks = super().get_default_callbacks()
        if self.accelerator.num_processes > 1:
            # skorch's scoring would reuse the validation batches' predictions,
            # which are this process's share only: predict again (gathered)
            for _, cb in callbacks:
                if isinstance(cb, EpochScoring):
                    cb.use_caching = False
        return callbacks

    def _autocast(self):  # the accelerator owns mixed precision
        return contextlib.nullcontext()

    def initialize_optimizer(self, *args, **kwargs):
        super().initialize_optimizer(*args, **kwargs)
        self.grad_scaler_ = None  # the accelerator scales fp16 losses itself
        return self

    def _plain_module(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.module_)


class AcceleratedFineTunedClassifier(_AcceleratedFineTune, FineTunedClassifier):
    """:class:`~sktransfer.FineTunedClassifier` trained through accelerate.

    Takes every parameter of :class:`~sktransfer.FineTunedClassifier`
    (``precision`` is ignored: use the accelerator's ``mixed_precision``) and
    skorch's (e.g. ``history=DistributedHistory(...)``), plus skorch's
    ``AccelerateMixin`` ones: ``accelerator`` (required, keyword only; e.g.
    ``Accelerator(mixed_precision="bf16", gradient_accumulation_steps=4)``),
    ``device=None`` (the accelerator places the tensors) and
    ``unwrap_after_train=True`` (unwrap the module after training, so the
    fitted estimator pickles and predicts in one process).

    Examples
    --------
    >>> from accelerate import Accelerator
    >>> from sktransfer.finetune import AcceleratedFineTunedClassifier
    >>> texts = ["good", "great", "bad", "awful"] * 3
    >>> clf = AcceleratedFineTunedClassifier(
    ...     "test-text", strategy="full", max_epochs=1, valid_size=None,
    ...     random_state=0, accelerator=Accelerator(cpu=True),
    ...     callbacks__print_log__sink=print,  # verbose=0 silences the log
    ... ).fit(texts, [1, 1, 0, 0] * 3)
    >>> clf.predict(texts[:2]).shape
    (2,)
    """


class AcceleratedFineTunedRegressor(_AcceleratedFineTune, FineTunedRegressor):
    """:class:`~sktransfer.FineTunedRegressor` trained through accelerate.

    Takes the parameters of :class:`~sktransfer.FineTunedRegressor` plus
    ``accelerator``, ``device=None`` and ``unwrap_after_train``, as
    :class:`AcceleratedFineTunedClassifier` does.
    """
