"""Drift: does a window of current data still look like the model's reference?

The check compares the current window with the reference *profile* (:mod:`kfp_mlops.modeling.profile`),
never with reference rows, so it needs no training data and takes about a quarter of a second on a
million rows of 22 features (numpy only; ``bench/bench_drift.py``). Per feature it scores the
distribution -- PSI on the reference's quantile bins, the KS statistic on its percentile grid
(numeric), the Jensen-Shannon distance over its categories (categorical) -- and data quality
(missing and out-of-range shares); with a model it also checks the predictions, estimates accuracy
and ROC AUC without labels (NannyML's CBPE, from the calibration stored with the model) and, when
the window has labels, measures them. The verdict is a JSON-able dict whose ``drift`` says whether the
dataset, the predictions or the performance drifted, and ``reasons`` which. Evidently's HTML report
comes alongside, for looking at distributions; its numbers are not the verdict's.

Modules, in the order a check uses them:

* :mod:`~kfp_mlops.drift.config`: :class:`DriftConfig`, the thresholds (per feature:
  :class:`FeatureThresholds`);
* :mod:`~kfp_mlops.drift.inputs`: the reference (a profile, or data to profile), the window, the
  model, and reference rows when there are any;
* :mod:`~kfp_mlops.drift.methods`: one module per statistical method (PSI, KS, Jensen-Shannon);
* :mod:`~kfp_mlops.drift.scores`: one feature's scores and data quality;
* :mod:`~kfp_mlops.drift.performance_estimation`: the label-free performance estimate (CBPE) and
  its interval;
* :mod:`~kfp_mlops.drift.model_checks`: prediction and performance drift of a model, and its
  performance estimate on the window (:func:`estimate_performance`);
* :mod:`~kfp_mlops.drift.check`: :func:`check_drift`, the verdict over features, model and dataset
  (built from per-feature counts, so a streamed window gets the loaded window's verdict);
* :mod:`~kfp_mlops.drift.window`: a Parquet window (local or ``gs://``) read in record batches;
* :mod:`~kfp_mlops.drift.streaming`: :func:`check_window_at`, the check of the window at a
  location, streamed in constant memory when it is Parquet, loaded when it is CSV;
* :mod:`~kfp_mlops.drift.report`: Evidently's report, or a page saying why there is none;
* :mod:`~kfp_mlops.drift.policy`: :class:`RetrainPolicy` and :func:`decide_retrain`, whether a
  verdict warrants a retrain (a performance drop beyond a tolerance, or severe drift; mild drift is
  only logged) and which kind (an incremental update or a full retrain), and
  :func:`same_regime_history`, the history windows a retrain may learn from;
* :mod:`~kfp_mlops.drift.retrain_inputs`: :func:`gather_retraining_data`, what a decided retrain
  trains on (the window and its recent same-regime history, checked against the champion);
* :mod:`~kfp_mlops.drift.run`: :func:`run_drift`, all of it end to end, writing report and verdict
  (with the policy's decision as ``retrain``).

This package returns verdicts; printing them is the application's (``kfp-mlops drift``,
:mod:`kfp_mlops.app.drift_command`). The names below are its public face: import them from here.
"""

from kfp_mlops.drift.check import METHOD, SUPPORTED_PROFILE_VERSIONS, check_drift
from kfp_mlops.drift.config import DriftConfig, FeatureThresholds
from kfp_mlops.drift.inputs import Reference, load_data, load_model, load_reference, sample_rows
from kfp_mlops.drift.methods.jensen_shannon import js_distance
from kfp_mlops.drift.methods.psi import PSI_EPSILON, psi
from kfp_mlops.drift.model_checks import classification_scores, estimate_performance, label_strings, predict
from kfp_mlops.drift.policy import RetrainDecision, RetrainPolicy, decide_retrain, same_regime_history
from kfp_mlops.drift.report import REPORT_FILE, build_report
from kfp_mlops.drift.retrain_inputs import gather_retraining_data, history_before
from kfp_mlops.drift.run import VERDICT_FILE, run_drift
from kfp_mlops.drift.scores import bucket_counts
from kfp_mlops.drift.streaming import check_window_at

__all__ = [
    "METHOD",
    "PSI_EPSILON",
    "REPORT_FILE",
    "SUPPORTED_PROFILE_VERSIONS",
    "VERDICT_FILE",
    "DriftConfig",
    "FeatureThresholds",
    "Reference",
    "RetrainDecision",
    "RetrainPolicy",
    "bucket_counts",
    "build_report",
    "check_drift",
    "check_window_at",
    "classification_scores",
    "decide_retrain",
    "estimate_performance",
    "gather_retraining_data",
    "history_before",
    "js_distance",
    "label_strings",
    "load_data",
    "load_model",
    "load_reference",
    "predict",
    "psi",
    "run_drift",
    "same_regime_history",
    "sample_rows",
]
