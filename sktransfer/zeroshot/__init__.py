"""Zero-shot classification: class names instead of labelled examples.

:class:`ZeroShotClassifier` embeds class names (or descriptions) through
templates with a sentence encoder and classifies texts by cosine similarity,
or with the text tower of an image-text dual encoder (CLIP, SigLIP) and
classifies images, as a scikit-learn classifier (Pipelines, ``GridSearchCV``
over ``templates`` and ``temperature``).
"""

from sktransfer.zeroshot._classifier import (
    DEFAULT_TEMPLATES,
    IMAGE_TEMPLATES,
    ZeroShotClassifier,
)

__all__ = ["DEFAULT_TEMPLATES", "IMAGE_TEMPLATES", "ZeroShotClassifier"]
