"""Retries for the tasks that do I/O: one transient 5xx from GCS, W&B or the Kubernetes API must not fail a run.

KFP compiles :func:`retry_io` into each task's ``retryPolicy`` (KFP backend and Vertex AI alike):
up to :data:`MAX_RETRIES` more attempts, the first after :data:`BACKOFF`, each wait
:data:`BACKOFF_FACTOR` times the one before, all within :data:`BACKOFF_MAX`. A retry runs the whole
task again; the tasks given one are safe to repeat: ingest and drift_check only read and write their
own outputs, register stores a new immutable version, deploy re-checks everything before it applies
(a running rollout or a moved champion is refused again, not duplicated), a rollout step decides
from the recorded state by compare-and-swap, and a labels import that already landed is refused
whole (its request ids are labelled), never appended twice. Tasks that only compute (validate,
train, evaluate) get none: they fail the same way twice.

Local runs (kfp.local honours the policy, waits included) build their pipelines without it: a bad
window or an unreachable store would otherwise take 30 + 60 + 120 s to fail, and nothing there is a
transient cluster error to wait out.
"""

from kfp import dsl

MAX_RETRIES = 3
BACKOFF = "30s"
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = "600s"


def retry_io(task: dsl.PipelineTask, enabled: bool = True) -> dsl.PipelineTask:
    """Gives ``task`` the retry policy of the tasks that do I/O (module docstring); none unless ``enabled``."""
    if not enabled:
        return task
    return task.set_retry(
        num_retries=MAX_RETRIES,
        backoff_duration=BACKOFF,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max_duration=BACKOFF_MAX,
    )
