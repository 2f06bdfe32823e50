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

#: Checks expected to fail, with the reason, per estimator class.
EXPECTED_FAILED_CHECKS = {
    "PrunedMLPClassifier": {},
    "PrunedMLPRegressor": {},
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS[type(estimator).__name__]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
