"""scikit-learn's own estimator checks on both estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor

# Small, fast instances that still learn the checks' toy problems (blobs, linear data).
_SMALL = dict(
    hidden_layer_sizes=(16,),
    max_epochs=20,
    finetune_epochs=5,
    lr=1e-2,
    batch_size=32,
    prune_ratio=0.3,
)

ESTIMATORS = [PrunedMLPClassifier(**_SMALL), PrunedMLPRegressor(**_SMALL)]

_WEIGHTS_ARE_NOT_REPETITIONS = (
    "Integer weights equal repeated rows only up to float32 rounding: the check's 15 rows "
    "fit in one batch, so the weighted fit and the fit on repeated rows are the same "
    "arithmetic in another order, and their predictions differ by about 2e-7 relative, "
    "above the check's rtol of 1e-7 (the network trains in float32; scikit-learn's MLPs "
    "pass this check in float64, with one-batch settings). With more rows than one batch "
    "the two differ more: each mini-batch is normalised by its own weight sum, as in "
    "scikit-learn's MLP. tests/estimators/test_estimators.py compares them to 1e-5, and "
    "tests/engine the EC statistics to 1e-10 in float64."
)

#: Checks expected to fail, with the reason, per estimator class.
EXPECTED_FAILED_CHECKS = {
    "PrunedMLPClassifier": {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_ARE_NOT_REPETITIONS,
    },
    "PrunedMLPRegressor": {
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_ARE_NOT_REPETITIONS,
    },
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS[type(estimator).__name__]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
