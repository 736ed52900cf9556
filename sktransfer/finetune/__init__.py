"""Fine-tuning: a pretrained backbone and a new head, trained as a skorch net.

- :mod:`._classifier`, :mod:`._regressor`: the two estimators;
- :mod:`._mixin`: what they share, on skorch's public hooks;
- :mod:`._params`: their parameter checks;
- :mod:`._strategies`: head / last_n / full / gradual as freezing;
- :mod:`._callbacks`: scoring, early stopping, checkpoints, fp16 loss scaling;
- :mod:`._data`, :mod:`._module`: the dataset and the torch module.
"""

from sktransfer.finetune._classifier import FineTunedClassifier
from sktransfer.finetune._module import BatchAugment, TransferModule
from sktransfer.finetune._regressor import FineTunedRegressor

__all__ = [
    "BatchAugment",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "TransferModule",
]
