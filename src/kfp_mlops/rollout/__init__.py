"""The safe rollout: shadow, then canary stages, decided on live traffic with delayed labels.

A challenger model replaces the legacy one only after it proved itself on live traffic. One
module per part, from the numbers up:

* :mod:`~kfp_mlops.rollout.metrics` and :mod:`~kfp_mlops.rollout.intervals` -- weighted metrics
  of scored rows (with their influence values), and their confidence intervals (Wilson, order
  statistics, bootstrap);
* :mod:`~kfp_mlops.rollout.sequential` -- anytime-valid confidence sequences, the intervals every
  decision that moves traffic reads (valid however often the controller looks);
* :mod:`~kfp_mlops.rollout.offline` -- :func:`compare_offline`: models side by side on a holdout;
* :mod:`~kfp_mlops.rollout.live` -- :func:`compare_live`: two predictors on the prediction log,
  with intervals, paired in the shadow stage;
* :mod:`~kfp_mlops.rollout.plan` -- :class:`StagePlan`, :func:`decide` (promote, hold or roll
  back, with reasons) and :func:`spec_for` (the deployment of a stage);
* :mod:`~kfp_mlops.rollout.simulation` -- rollouts on simulated traffic with a known truth: how
  often a plan's decisions err, and its power;
* :mod:`~kfp_mlops.rollout.state` -- :class:`RolloutState`, stored as JSON and moved by
  compare-and-swap (this and the next three do I/O);
* :mod:`~kfp_mlops.rollout.targets`, :mod:`~kfp_mlops.rollout.records` and
  :mod:`~kfp_mlops.rollout.controller` -- where specs are applied, how decisions are recorded
  (a promotion moves the model store's champion pointer, a rollback rejects the candidate), and
  one controller step wiring everything up; :mod:`~kfp_mlops.rollout.task` -- that step from
  plain parameters (the CLI's and the rollout component's).

Everything up to :mod:`~kfp_mlops.rollout.simulation` is pure: a controller (the local stack, a KFP
component, a test) wires the pieces up without any of them knowing where traffic comes from.
The names below are the package's public face.
"""

from kfp_mlops.rollout.intervals import Interval, quantile_interval, wilson_interval
from kfp_mlops.rollout.live import CHALLENGER, LEGACY, LiveComparison, LiveConfig, compare_live
from kfp_mlops.rollout.offline import compare_offline, positive_scores
from kfp_mlops.rollout.plan import PROMOTED, ROLLED_BACK, Decision, InvalidPlan, Stage, StagePlan, decide, spec_for
from kfp_mlops.rollout.sequential import StandardError
from kfp_mlops.rollout.state import STATUSES, RolloutState, load_rollout, save_rollout, start_rollout

__all__ = [
    "CHALLENGER",
    "LEGACY",
    "PROMOTED",
    "ROLLED_BACK",
    "STATUSES",
    "Decision",
    "Interval",
    "InvalidPlan",
    "LiveComparison",
    "LiveConfig",
    "RolloutState",
    "Stage",
    "StagePlan",
    "StandardError",
    "compare_live",
    "compare_offline",
    "decide",
    "load_rollout",
    "positive_scores",
    "quantile_interval",
    "save_rollout",
    "spec_for",
    "start_rollout",
    "wilson_interval",
]
