"""Feedback that refers to logged requests: true labels for requests this server answered, by their id.

Both runtimes answer every prediction with the request id the server (or its front) issued --
``X-Request-Id``, and ``meta.puid`` in the Seldon protocol -- and take feedback by that id only:

* v2: ``POST /v2/models/<m>/feedback`` ``{"request_id": "<id>", "truth": [labels]}``;
* seldon: ``POST /api/v1.0/feedback`` ``{"response": {"meta": {"puid": "<id>"}}, "truth": {"data":
  {"ndarray": [labels]}}}`` (the answer as received, with the truth beside it).

``truth`` has one true label per row of the request. :class:`FeedbackDesk` checks it against what
the server remembers of its recent requests (:class:`IssuedRequests`, the last
:data:`REMEMBERED_REQUESTS`): an id it did not issue, or no longer remembers, is refused with
404; a request it refused (4xx) or that is already labelled with 409; a count of labels that is
not the request's rows, or a label that is not one of the model's classes, with 400. The live
accuracy compares the truth with the labels the server predicted, never labels a client supplies,
so a client cannot score predictions it did not get.

With a prediction log (:mod:`.prediction_logger`), the labels are appended to it through
:func:`~kfp_mlops.serving.prediction_log.record_labels` under the ids the rows were logged under
(1 for the positive class, else 0, labelled now), after the buffered records are written: the log
checks again that every id was logged and is not labelled yet, and refuses the batch whole
otherwise (409). Feedback is serialised within a server process, so two concurrent labels for
one request cannot both pass; labels for one request sent to two processes (a predictor and its
shadow) could still race, which :func:`~kfp_mlops.serving.prediction_log.join` reports. Labels
that arrive days later, or after a restart, go through the batch import (``kfp-mlops labels
import``) instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kfp_mlops.core.errors import DataError, StorageError
from kfp_mlops.serving.metrics import ServingMetrics
from kfp_mlops.serving.model import InvalidRequest, Prediction, ServedModel
from kfp_mlops.serving.prediction_log import record_labels
from kfp_mlops.serving.runtimes.prediction_logger import PredictionLogger, row_ids

REMEMBERED_REQUESTS = 100_000
"""Requests a server remembers for feedback (about 20 MB of single-row requests)."""
_LATE = "labels that arrive later go through `kfp-mlops labels import`"


@dataclass
class _Issued:
    """What a server answered to one request: the predicted labels, or why it refused it."""

    labels: tuple[str, ...] | None
    refusal: str | None = None
    labelled: bool = False


class IssuedRequests:
    """The most recent requests a server answered or refused, by the id it issued (thread-safe).

    Args:
        capacity: How many requests are remembered; the oldest are forgotten first.
    """

    def __init__(self, capacity: int = REMEMBERED_REQUESTS) -> None:
        self.capacity = capacity
        self._requests: OrderedDict[str, _Issued] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, request_id: str, outcome: Prediction | InvalidRequest | str) -> None:
        """Remembers the outcome of a request: its predicted labels, a refusal or a failure."""
        if isinstance(outcome, Prediction):
            issued = _Issued(tuple(outcome.labels))  # already strings: no per-label work
        elif isinstance(outcome, InvalidRequest):
            issued = _Issued(None, f"it was refused ({outcome.status})")
        else:
            issued = _Issued(None, "it failed on the server")
        with self._lock:
            self._requests[request_id] = issued
            self._requests.move_to_end(request_id)
            while len(self._requests) > self.capacity:
                self._requests.popitem(last=False)

    def get(self, request_id: str) -> _Issued | None:
        """What was answered to ``request_id``, or None when it was not issued here or is forgotten."""
        with self._lock:
            return self._requests.get(request_id)


class FeedbackDesk:
    """Takes true labels for requests the server answered; updates the live accuracy and the log.

    Args:
        served: The served model (its classes).
        metrics: Its metrics (feedback rows, correct rows, live accuracy).
        issued: The requests the server answered.
        log: The prediction logger, or None when predictions are not logged.
    """

    def __init__(
        self, served: ServedModel, metrics: ServingMetrics, issued: IssuedRequests, log: PredictionLogger | None
    ) -> None:
        self.served = served
        self.metrics = metrics
        self.issued = issued
        self.log = log
        self._lock = threading.Lock()  # one feedback at a time: the label checks read, then append

    def record(self, request_id: Any, truth: Any) -> dict[str, Any]:
        """Records the true labels of one request.

        Args:
            request_id: The id the server issued for the request.
            truth: One true label per row of the request.

        Returns:
            ``request_id``, ``rows``, ``correct`` (rows predicted right) and ``live_accuracy``.

        Raises:
            InvalidRequest: 400 for a malformed id or truth, 404 for an id this server did not
                issue (or forgot), 409 for a refused, failed or already labelled request, 503
                when the prediction log cannot be read or written.
        """
        if not isinstance(request_id, str) or not request_id:
            raise InvalidRequest(f"request_id must be the non-empty id of an answer, got {_short(request_id)}")
        if not isinstance(truth, list) or not truth:
            raise InvalidRequest(f"truth must be a non-empty list of labels, one per row, got {_short(truth)}")
        with self._lock:
            issued = self.issued.get(request_id)
            if issued is None:
                raise InvalidRequest(
                    f"request id {request_id[:80]!r} was not answered by this server (or too long ago); {_LATE}",
                    status=404,
                )
            if issued.labels is None:
                raise InvalidRequest(f"request {request_id!r} cannot be labelled: {issued.refusal}", status=409)
            if issued.labelled:
                raise InvalidRequest(f"request {request_id!r} is already labelled", status=409)
            if len(truth) != len(issued.labels):
                raise InvalidRequest(
                    f"request {request_id!r} had {len(issued.labels)} row(s); got {len(truth)} true label(s)"
                )
            correct = self.served.correct_answers(issued.labels, truth)
            if self.log is not None:
                self._append(request_id, truth)
            issued.labelled = True
        accuracy = self.metrics.observe_feedback(len(truth), correct)
        return {"request_id": request_id, "rows": len(truth), "correct": correct, "live_accuracy": accuracy}

    def _append(self, request_id: str, truth: Sequence[Any]) -> None:
        assert self.log is not None
        if not self.log.flush():  # the predictions must be in the log before their labels
            raise InvalidRequest(f"prediction log {self.log.root} cannot be written now; retry later", status=503)
        now = datetime.now(timezone.utc)
        labels = [(row, self.log.label(t), now) for row, t in zip(row_ids(request_id, len(truth)), truth)]
        try:
            record_labels(self.log.root, labels)
        except DataError as exc:
            raise InvalidRequest(str(exc), status=409) from None
        except StorageError as exc:
            raise InvalidRequest(f"prediction log {self.log.root}: {exc}; retry later", status=503) from None


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
