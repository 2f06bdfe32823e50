"""The public estimators: validation of the targets, predict, and the docstrings.

Both share the ``fit`` of :class:`._base._BasePrunedMLP` and hold no pruning mathematics.
"""

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ._base import _BasePrunedMLP
from ._data import check_finite_float32, check_sample_weight, to_tensor
from ._docs import _ATTRIBUTES_DOC, _PARAMS_DOC

__all__ = ["PrunedMLPClassifier", "PrunedMLPRegressor"]


class PrunedMLPRegressor(RegressorMixin, _BasePrunedMLP):
    __doc__ = (
        """Multilayer perceptron regressor trained, pruned and fine-tuned in one ``fit``.

    ``fit`` trains the network with skorch for ``max_epochs`` (mean squared error),
    scores every weight with ``method`` on the training inputs, removes the fraction
    ``prune_ratio`` of the weights (compensating: ``"ec_obs"`` moves the biases and the
    kept weights, ``"ec"`` the biases), then
    fine-tunes for ``finetune_epochs`` with a fresh optimizer while the removed weights
    stay at exactly zero. Multi-output ``y`` is supported.

    The targets are used as given (the reported losses are in their units); standardise
    them, e.g. with :class:`~sklearn.compose.TransformedTargetRegressor`, when their
    scale is far from 1, as for the inputs with a ``StandardScaler``.
"""
        + _PARAMS_DOC
        + """
    Attributes
    ----------
    n_outputs_ : int
        Number of targets.

    out_activation_ : str
        ``"identity"``: the outputs are the last layer's values."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    PrunedMLPClassifier : The classifier counterpart.
    sk_ecprune.prune_model : The pruning engine called by ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sk_ecprune.estimators import PrunedMLPRegressor
    >>> X, y = make_friedman1(n_samples=200, random_state=0)
    >>> reg = PrunedMLPRegressor(prune_ratio=0.5, random_state=0).fit(X, y)
    >>> round(reg.sparsity_, 2)
    0.5
    """
    )

    _is_classifier_net = False
    _criterion = torch.nn.MSELoss
    _stratify = False
    _divergence_advice_extra = ", targets scaled likewise (TransformedTargetRegressor)"

    def _engine_output_metric(self):
        # The Fisher metric of a Gaussian likelihood with fixed variance (squared error)
        # is the identity: every choice of output_metric is the Euclidean one.
        return "euclidean"

    def _validate_fit_data(self, X, y, sample_weight=None):
        X, y = validate_data(
            self, X, y, dtype=np.float32, multi_output=True, y_numeric=True
        )
        with np.errstate(over="ignore"):
            y = np.asarray(y, dtype=np.float32)
        check_finite_float32(y, "y")
        weights = check_sample_weight(sample_weight, len(X))
        self._y_ndim_ = y.ndim
        y2d = y.reshape(len(y), -1)
        self.n_outputs_ = y2d.shape[1]
        return X, to_tensor(y2d), weights

    @property
    def _n_net_outputs(self):
        return self.n_outputs_

    def predict(self, X):
        """Predict targets for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions (float64), with the dimensionality of the ``y`` seen in fit.
        """
        out = self._forward(X)
        return out.ravel() if self._y_ndim_ == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class PrunedMLPClassifier(ClassifierMixin, _BasePrunedMLP):
    __doc__ = (
        """Multilayer perceptron classifier trained, pruned and fine-tuned in one ``fit``.

    The network outputs one logit per class (two for a binary problem) and is trained
    with cross-entropy on the encoded labels; pruning scores the logits. Otherwise as
    :class:`PrunedMLPRegressor`.
"""
        + _PARAMS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in fit.

    n_outputs_ : int
        Number of output units: one logit per class, ``len(classes_)``, which is 2 for a
        binary problem (scikit-learn's MLPClassifier has 1 there).

    out_activation_ : str
        ``"softmax"``, binary problems included: the network has one logit per class and
        ``predict_proba`` is their softmax (scikit-learn's MLPClassifier says
        ``"logistic"`` for its single binary unit; the probabilities are the same
        model)."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    PrunedMLPRegressor : The regressor counterpart.
    sk_ecprune.prune_model : The pruning engine called by ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sk_ecprune.estimators import PrunedMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = PrunedMLPClassifier(prune_ratio=0.7, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).shape
    (2,)
    """
    )

    _is_classifier_net = True
    _criterion = torch.nn.CrossEntropyLoss
    _stratify = True
    _out_activation = "softmax"
    _validation_score = "accuracy"

    def _engine_output_metric(self):
        return "euclidean" if self.output_metric == "euclidean" else "fisher"

    @property
    def _n_net_outputs(self):
        return len(self.classes_)

    def _validate_fit_data(self, X, y, sample_weight=None):
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; got only "
                f"one class: {encoder.classes_.tolist()[0]!r}."
            )
        weights = check_sample_weight(sample_weight, len(X))
        if weights is not None:
            weighted = np.unique(np.asarray(y)[weights > 0])
            if len(weighted) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes with a "
                    f"positive sample_weight; only class {weighted.tolist()[0]!r} has one."
                )
        self.classes_ = encoder.classes_
        self.n_outputs_ = len(self.classes_)
        return X, torch.from_numpy(encoder.transform(y).astype(np.int64)), weights

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits) for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities (float64) in the order of ``classes_``.
        """
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities (log-softmax of the logits) for X.

        Computed from the logits directly, so it stays finite where ``predict_proba``
        rounds a probability to 0.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities (float64) in the order of ``classes_``.
        """
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X):
        """Predict class labels for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits = self._forward(X)  # checks fitted first
        return self.classes_[np.argmax(logits, axis=1)]
