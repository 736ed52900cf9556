"""sktransfer: transfer learning for scikit-learn.

Pretrained image and text backbones as scikit-learn transformers
(:class:`PretrainedFeatureExtractor`) and fine-tunable estimators.
"""

from sktransfer._cache import DiskCache, MemoryCache, memory_cache
from sktransfer._extractor import PretrainedFeatureExtractor
from sktransfer._state import clear_caches
from sktransfer.adapt import domain_shift
from sktransfer.backbones import list_backbones
from sktransfer.export import to_onnx
from sktransfer.fewshot import FewShotClassifier
from sktransfer.finetune import FineTunedClassifier, FineTunedRegressor
from sktransfer.persist import load, save
from sktransfer.selection import rank_backbones
from sktransfer.zeroshot import ZeroShotClassifier

__version__ = "0.1.0"

__all__ = [
    "DiskCache",
    "FewShotClassifier",
    "FineTunedClassifier",
    "FineTunedRegressor",
    "MemoryCache",
    "PretrainedFeatureExtractor",
    "ZeroShotClassifier",
    "__version__",
    "clear_caches",
    "domain_shift",
    "list_backbones",
    "load",
    "memory_cache",
    "rank_backbones",
    "save",
    "to_onnx",
]
