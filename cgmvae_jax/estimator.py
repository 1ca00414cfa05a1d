"""`CGMVAEClassifier`: C-GMVAE as a scikit-learn-style multi-label estimator.

    from sklearn.model_selection import cross_validate
    clf = cgmvae_jax.CGMVAEClassifier(num_epochs=50, learning_rate=2e-3)
    scores = cross_validate(clf, X, Y, cv=3, scoring="f1_macro")

It follows scikit-learn's estimator conventions (constructor arguments stored unchanged,
`get_params` / `set_params`, `fit` returning self, fitted attributes ending in `_`), so
`sklearn.base.clone`, `cross_validate` and `GridSearchCV` accept it, but it never imports
scikit-learn: the tags scikit-learn asks for are built from scikit-learn's own classes only
when scikit-learn calls `__sklearn_tags__`.
"""

from __future__ import annotations

import numpy as np

from cgmvae_jax import api


class CGMVAEClassifier:
    """Multi-label classifier: every keyword is a config field (`config_lib.base_config()`).

    Fitted attributes: `model_` (a `cgmvae_jax.Model`), `n_features_in_`, `n_labels_`,
    `classes_` (the label column indices 0 ... L-1).
    Unknown fields are reported by `fit`, as scikit-learn estimators do.
    """

    def __init__(self, **config_fields):
        self._param_names = sorted(config_fields)
        for name, value in config_fields.items():
            setattr(self, name, value)

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's keywords and their current values."""
        del deep  # no nested estimators
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params) -> CGMVAEClassifier:
        """Sets config fields (new ones are added); returns self."""
        for name, value in params.items():
            if name not in self._param_names:
                self._param_names = sorted([*self._param_names, name])
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"CGMVAEClassifier({args})"

    def fit(self, X, Y) -> CGMVAEClassifier:
        """Trains on X [n, F] and 0/1 Y [n, L]; validation rows are carved from X."""
        self.model_ = api.fit(X, Y, **self.get_params())
        self.n_features_in_ = self.model_.num_features
        self.n_labels_ = self.model_.num_labels
        self.classes_ = np.arange(self.n_labels_)  # label columns, as OneVsRestClassifier's
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities [n, L]."""
        self._check_fitted()
        return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """0/1 labels [n, L] at the validation-tuned threshold."""
        self._check_fitted()
        return self.model_.predict(X)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise AttributeError("This CGMVAEClassifier is not fitted yet: call fit(X, Y) first.")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here imports nothing new.
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        tags = Tags(estimator_type="classifier", target_tags=TargetTags(required=True))
        tags.classifier_tags = ClassifierTags(multi_label=True)
        return tags
