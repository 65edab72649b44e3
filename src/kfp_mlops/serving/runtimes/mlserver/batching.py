"""Adaptive micro-batching: concurrent small requests to one model scored in one model call.

A scikit-learn pipeline costs about as much for one row as for a few dozen (its per-call overhead:
input checks, one step after the other), so at 16 concurrent single-row requests most of the
server's time went to that overhead. :class:`MicroBatcher` collects the checked float matrices of
concurrent requests (:func:`~.decoding.request_matrix`) on the event loop and scores them with one
call, then hands each request its own rows' probabilities.

How long it waits adapts to the traffic, bounded by ``max_wait_s``: the batch is scored at the
first turn of the event loop in which no new request joined it (the server has read every request
that had arrived), or once it holds ``max_rows`` rows, or when ``max_wait_s`` has passed since its
first request, whichever comes first. A lone request is therefore scored within a couple of loop
turns, not after ``max_wait_s``; under load, requests read in the same turns share a call.

Errors stay per request: every request's values are checked before it joins a batch, and if the
model refuses the joint call (scikit-learn's ValueError, e.g. a value that overflows once scaled),
each request is scored on its own, so only the request at fault gets the error.

Scoring runs on the event loop, as a single small request's does: a batch holds at most
``max_rows`` rows (requests larger than ``max_request_rows`` bypass it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MAX_WAIT_S = 0.002
DEFAULT_MAX_ROWS = 64


class MicroBatcher:
    """Coalesces the float matrices of concurrent requests into one model call.

    Args:
        score: The model call: a ``[rows, features]`` float matrix to its ``[rows, classes]``
            probabilities; may raise for the whole batch.
        max_wait_s: The longest a request waits for others to join its batch; 0 turns batching off.
        max_rows: A batch is scored as soon as it holds this many rows.
    """

    def __init__(
        self,
        score: Callable[[np.ndarray], np.ndarray],
        *,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        if max_wait_s < 0 or max_rows < 1:
            raise ValueError(f"micro-batching: max_wait_s {max_wait_s} must be >= 0 and max_rows {max_rows} >= 1")
        self._score = score
        self.max_wait_s = max_wait_s
        self.max_rows = max_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._opened = 0.0  # when the pending batch's first request joined
        self._seen = 0  # pending requests at the last turn of the loop
        self._check_scheduled = False
        self.calls = 0  # model calls made (a batch, or a request scored on its own)
        self.requests = 0  # requests scored through the batcher

    @property
    def enabled(self) -> bool:
        """Whether requests are batched at all (``max_wait_s`` > 0)."""
        return self.max_wait_s > 0

    def takes(self, rows: int) -> bool:
        """Whether a request of ``rows`` rows goes through a batch (else it is scored on its own)."""
        return self.enabled and rows <= self.max_rows // 2

    async def score(self, matrix: np.ndarray) -> np.ndarray:
        """The probabilities of ``matrix``'s rows, scored together with concurrent requests.

        Raises:
            Exception: whatever scoring this request on its own raises.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        if not self._pending:
            self._opened = time.monotonic()
        self._pending.append((matrix, future))
        self._rows += len(matrix)
        if self._rows >= self.max_rows:
            self._flush()
        elif not self._check_scheduled:
            self._check_scheduled = True
            loop.call_soon(self._check)
        return await future

    def _check(self) -> None:
        """At each turn of the loop: wait while requests keep joining (within the window), else score."""
        self._check_scheduled = False
        if not self._pending:
            return
        joined = len(self._pending) > self._seen
        if joined and time.monotonic() - self._opened < self.max_wait_s:
            self._seen = len(self._pending)
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._check)
            return
        self._flush()

    def _flush(self) -> None:
        import numpy as np

        batch, self._pending, self._rows, self._seen = self._pending, [], 0, 0
        self.requests += len(batch)
        if len(batch) > 1:
            self.calls += 1
            try:
                probabilities = self._score(np.concatenate([matrix for matrix, _ in batch]))
            except Exception:  # the model refused the joint call: find the request at fault
                pass
            else:
                start = 0
                for matrix, future in batch:
                    if not future.cancelled():
                        future.set_result(probabilities[start : start + len(matrix)])
                    start += len(matrix)
                return
        for matrix, future in batch:
            self.calls += 1
            try:
                result = self._score(matrix)
            except Exception as exc:
                if not future.cancelled():
                    future.set_exception(exc)
            else:
                if not future.cancelled():
                    future.set_result(result)
