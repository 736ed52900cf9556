"""scikit-learn's estimator checks on the fine-tuners (tiny tabular backbone)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from sktransfer import FineTunedClassifier, FineTunedRegressor

# The checks fit tiny, unscaled problems and expect a reasonable optimum (e.g.
# check_class_weight_classifiers wants > 87 % of the heavily weighted class), so
# the nets get enough steps to converge; the backbone is the 2-layer "test-mlp".
SETTINGS = dict(max_epochs=50, lr=0.05, batch_size=16, valid_size=None, random_state=0)

SKORCH_INIT = (
    "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_ "
    "(skorch's design, which FineTuned* inherit; initialize() resets them)."
)


HEAD_CLASS_WEIGHT = (
    "strategy='head' keeps test-mlp's random tanh features frozen; on this check's "
    "unscaled blobs (std 20) they saturate to near-binary codes and the linear head "
    "predicts the 1000x-weighted class for 84 % of the test set, where the check "
    "wants 87 %. The same net with strategy='full' passes."
)


FLOAT32_BATCH = (
    "the net computes in float32 and a matrix product's rounding depends on the "
    "batch's size (one ulp, 2.4e-7 here), while the check compares a subset's "
    "predictions at rtol=atol=1e-7. The extractor's tests assert batch-size "
    "invariance at 1e-5."
)


def _expected(estimator):
    expected = {"check_no_attributes_set_in_init": SKORCH_INIT}
    if isinstance(estimator, FineTunedRegressor):
        expected["check_methods_subset_invariance"] = FLOAT32_BATCH
    if getattr(estimator, "strategy", None) == "head":
        expected["check_class_weight_classifiers"] = HEAD_CLASS_WEIGHT
    return expected


@parametrize_with_checks(
    [
        FineTunedClassifier("test-mlp", strategy="full", **SETTINGS),
        FineTunedClassifier("test-mlp", strategy="head", **SETTINGS),
        FineTunedRegressor("test-mlp", strategy="full", **SETTINGS),
    ],
    expected_failed_checks=_expected,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
