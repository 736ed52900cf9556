"""Domain shift: measure it, adapt across it, choose without target labels.

:func:`domain_shift` (also ``sktransfer.domain_shift``) diagnoses; the
adapters (:class:`DomainStandardScaler`, :class:`CORAL`) and
:class:`LabeledOnly` build adaptation pipelines on frozen features; the
fine-tuners adapt while training with ``adaptation=``; the scorers and
:func:`source_only_unless_better` choose with no target label. Unlabelled
target rows enter ``fit`` with the label ``-1`` (:data:`UNLABELED`), as in
scikit-learn's semi-supervised estimators.
"""

from sktransfer.adapt._diagnosis import DomainShiftReport, domain_shift
from sktransfer.adapt._domains import UNLABELED, is_unlabeled, split_domains
from sktransfer.adapt._labeled import EncodedLabels, LabeledOnly
from sktransfer.adapt._scorers import (
    CircularValidationScorer,
    DeepEmbeddedValidationScorer,
    ImportanceWeightedScorer,
    PredictionEntropyScorer,
    source_only_unless_better,
)
from sktransfer.adapt._transformers import CORAL, DomainAdapter, DomainStandardScaler

__all__ = [
    "CORAL",
    "UNLABELED",
    "CircularValidationScorer",
    "DeepEmbeddedValidationScorer",
    "DomainAdapter",
    "DomainShiftReport",
    "DomainStandardScaler",
    "EncodedLabels",
    "ImportanceWeightedScorer",
    "LabeledOnly",
    "PredictionEntropyScorer",
    "domain_shift",
    "is_unlabeled",
    "source_only_unless_better",
    "split_domains",
]
