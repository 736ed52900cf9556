"""Few labels: SetFit's recipe (contrastive pairs, then a head) as a
scikit-learn classifier, for texts and images."""

from sktransfer.fewshot._classifier import FewShotClassifier

__all__ = ["FewShotClassifier"]
