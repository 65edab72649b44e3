"""Evaluation: score a candidate on held-out rows and decide whether it may be registered.

The gate passes when the candidate's gate metric reaches the threshold and is not worse than the
current champion's on the same test rows (by more than ``max_regression``). A champion with other
features or classes cannot score these rows: that is reported and left out of the decision. A
champion that exists but cannot be loaded (its storage times out, its file is corrupt or fails its
recorded checksum, a library upgrade broke its pickle) fails the gate, closed, with the reason: the
candidate was not compared, and the threshold alone never replaces a champion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.model_store import ModelStore

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# metric -> +1 when higher is better, -1 when lower is better
GATE_METRICS = {"accuracy": 1, "f1_macro": 1, "roc_auc": 1, "log_loss": -1}


def check_gate_metric(gate_metric: str) -> None:
    """Refuses a gate metric whose direction the gate does not know.

    Raises:
        ConfigError: naming the metric and the choices.
    """
    if gate_metric not in GATE_METRICS:
        raise ConfigError(f"gate_metric {gate_metric!r}: unknown; choose one of {', '.join(GATE_METRICS)}")


@dataclass
class Evaluation:
    """Scores of the candidate (and champion), the decision and why."""

    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    classes: list[str]
    roc: dict[str, list[float]]
    truth: list[str]
    predicted: list[str]
    proba: np.ndarray
    passed: bool = False
    champion_version: str | None = None
    champion_metrics: dict[str, float] | None = None
    reasons: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the model store keeps next to a registered version."""
        return {
            "metrics": self.metrics,
            "passed": self.passed,
            "reasons": self.reasons,
            "champion_version": self.champion_version,
            "champion_metrics": self.champion_metrics,
        }


def score(bundle: ModelBundle, test: pd.DataFrame) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Accuracy, macro F1, ROC AUC (one-vs-rest) and log loss of ``bundle`` on ``test``.

    Returns:
        The metrics, the true labels and the class probabilities.

    Raises:
        MlopsError: ``test`` lacks a feature the model needs.
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    missing = [f for f in bundle.feature_names if f not in test.columns]
    if missing:
        raise MlopsError(f"test data lacks the model's features {', '.join(missing)}")
    truth = test[bundle.metadata["label"]].astype(str).to_numpy()
    proba = bundle.model.predict_proba(test[bundle.feature_names])
    classes = bundle.classes
    predicted = [classes[i] for i in proba.argmax(axis=1)]
    if len(classes) == 2:
        auc = roc_auc_score(truth == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
    metrics = {
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", labels=classes, zero_division=0)),
        "roc_auc": float(auc),
        "log_loss": float(log_loss(truth, proba, labels=classes)),
    }
    return metrics, truth, proba


def micro_roc(truth: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, list[float]]:
    """The micro-averaged one-vs-rest ROC curve (one curve for the KFP UI, any class count)."""
    import numpy as np
    from sklearn.metrics import roc_curve
    from sklearn.preprocessing import label_binarize

    onehot = label_binarize(truth, classes=classes)
    if len(classes) == 2:
        onehot = np.hstack([1 - onehot, onehot])
    fpr, tpr, thresholds = roc_curve(onehot.ravel(), proba.ravel())
    # roc_curve's first threshold is +inf, which JSON (and the KFP UI) cannot hold.
    thresholds = np.minimum(thresholds, 1.0)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()}


def evaluate(
    candidate: ModelBundle,
    test: pd.DataFrame,
    *,
    gate_metric: str = "accuracy",
    threshold: float = 0.9,
    max_regression: float = 0.0,
    champion: ModelBundle | None = None,
    champion_version: str | None = None,
    champion_error: str | None = None,
) -> Evaluation:
    """Scores ``candidate`` (and ``champion``, if given) on ``test`` and applies the gate.

    Args:
        candidate: the model to judge.
        test: held-out rows with the label.
        gate_metric: a key of :data:`GATE_METRICS`.
        threshold: the gate metric's required value (a minimum; a maximum for ``log_loss``).
        max_regression: how much worse than the champion the candidate may be.
        champion: the current champion, compared on the same rows when it has the same features and classes.
        champion_version: the champion's version, recorded even when it is not compared (or could not load).
        champion_error: why the champion ``champion_version`` could not be loaded: the gate fails.

    Raises:
        ConfigError: an unknown gate metric.
        MlopsError: ``test`` lacks a feature the candidate needs.
    """
    from sklearn.metrics import confusion_matrix

    check_gate_metric(gate_metric)
    metrics, truth, proba = score(candidate, test)
    predicted = [candidate.classes[i] for i in proba.argmax(axis=1)]
    result = Evaluation(
        metrics=metrics,
        confusion_matrix=confusion_matrix(truth, predicted, labels=candidate.classes).tolist(),
        classes=candidate.classes,
        roc=micro_roc(truth, proba, candidate.classes),
        truth=truth.tolist(),
        predicted=predicted,
        proba=proba,
    )
    sign = GATE_METRICS[gate_metric]
    value = metrics[gate_metric]
    meets_threshold = sign * (value - threshold) >= 0
    result.reasons.append(
        f"{gate_metric} {value:.4f} {'meets' if meets_threshold else 'misses'} the threshold {threshold}"
    )
    beats_champion = True
    # Named even when not compared: register moves the champion pointer only if it still names it.
    result.champion_version = champion_version
    if champion is not None:
        if champion.feature_names != candidate.feature_names or champion.classes != candidate.classes:
            result.reasons.append(f"champion {champion_version} has other features or classes: not compared")
        else:
            result.champion_metrics, _, _ = score(champion, test)
            best = result.champion_metrics[gate_metric]
            beats_champion = sign * (value - best) >= -max_regression
            result.reasons.append(
                f"{gate_metric} {value:.4f} vs champion {champion_version} {best:.4f}: "
                f"{'not worse' if beats_champion else 'worse'} (tolerance {max_regression})"
            )
    elif champion_version is not None:
        # Fail closed: a champion that exists but does not load is no reason to deploy untested.
        beats_champion = False
        result.reasons.append(
            f"champion {champion_version} could not be loaded ({champion_error or 'no reason given'}): "
            "the candidate was not compared with it, so it does not pass"
        )
    else:
        result.reasons.append("no champion yet")
    result.passed = meets_threshold and beats_champion
    return result


def load_champion(store_root: str, model_name: str) -> tuple[ModelBundle | None, str | None, str | None]:
    """The champion of ``model_name`` and its version, or why it could not be loaded.

    The champion is loaded from its version folder in the store, checked against the sha256 in the
    champion pointer and the one recorded at registration.

    Returns:
        ``(bundle, version, None)``; ``(None, version, reason)`` when the champion cannot be loaded
        here (give both to :func:`evaluate`: the gate fails); ``(None, None, None)`` before the
        first champion.

    Raises:
        StorageError: the champion pointer itself cannot be read (the gate cannot know whether
            there is a champion).
    """
    store = ModelStore(store_root)
    pointer = store.champion_pointer(model_name)
    if pointer is None:
        return None, None, None
    version, sha256 = str(pointer.get("version")), pointer.get("sha256")
    if not isinstance(sha256, str):
        return None, version, f"the champion pointer of {model_name} records no sha256 of its model"
    try:
        return store.load(model_name, version, sha256=sha256), version, None
    except MlopsError as exc:  # storage errors, checksums, scikit-learn versions, broken pickles
        return None, version, str(exc)
