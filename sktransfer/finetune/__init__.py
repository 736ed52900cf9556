"""Fine-tuning: a pretrained backbone and a new head, trained as a skorch net.

- :mod:`._classifier`, :mod:`._regressor`: the two estimators;
- :mod:`._mixin`: what they share, on skorch's public hooks;
- :mod:`._params`: their parameter checks;
- :mod:`._strategies`: head / last_n / full / gradual as freezing;
- :mod:`._callbacks`: scoring, early stopping, checkpoints, fp16 loss scaling;
- :mod:`._data`, :mod:`._module`: the dataset and the torch module;
- :mod:`._probe_start`: LP-FT (the head starts as a linear probe);
- :mod:`._accelerate`: the accelerate variants (imported on first use, since
  accelerate is optional).
"""

from sktransfer.finetune._classifier import FineTunedClassifier
from sktransfer.finetune._module import BatchAugment, TransferModule
from sktransfer.finetune._regressor import FineTunedRegressor

__all__ = [
    "AcceleratedFineTunedClassifier",
    "AcceleratedFineTunedRegressor",
    "BatchAugment",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "TransferModule",
]


def __getattr__(name):
    if name in ("AcceleratedFineTunedClassifier", "AcceleratedFineTunedRegressor"):
        from sktransfer.finetune import _accelerate

        return getattr(_accelerate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
