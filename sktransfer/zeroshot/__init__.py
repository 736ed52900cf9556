"""Zero-shot classification: class names instead of labelled examples.

:class:`ZeroShotClassifier` embeds class names (or descriptions) through
templates with a sentence encoder and classifies texts by cosine similarity, as
a scikit-learn classifier (Pipelines, ``GridSearchCV`` over ``templates`` and
``temperature``). Image-text (CLIP-style) backbones are not supported yet.
"""

from sktransfer.zeroshot._classifier import DEFAULT_TEMPLATES, ZeroShotClassifier

__all__ = ["DEFAULT_TEMPLATES", "ZeroShotClassifier"]
