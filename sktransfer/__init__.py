"""sktransfer: transfer learning for scikit-learn.

Pretrained image and text backbones as scikit-learn transformers
(:class:`PretrainedFeatureExtractor`) and fine-tunable estimators.
"""

from sktransfer._cache import DiskCache, clear_memory_cache, memory_cache
from sktransfer._extractor import PretrainedFeatureExtractor
from sktransfer._finetune import FineTunedClassifier, FineTunedRegressor
from sktransfer.backbones import list_backbones

__version__ = "0.1.0"

__all__ = [
    "DiskCache",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "PretrainedFeatureExtractor",
    "__version__",
    "clear_memory_cache",
    "list_backbones",
    "memory_cache",
]
