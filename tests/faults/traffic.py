"""Client traffic for the fault tests: keep-alive connections sending Iris predictions until told to stop."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

DEPLOYMENT = "iris"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROWS = ((5.1, 3.5, 1.4, 0.2), (6.2, 2.9, 4.3, 1.3), (7.7, 3.0, 6.1, 2.3))


def iris_request(row: tuple[float, ...]) -> bytes:
    """A V2 request for one Iris row, one named input per feature."""
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in zip(FEATURES, row)]
    return json.dumps({"inputs": inputs}).encode()


# How a kept-alive connection the server closed shows when the next request goes out on it.
_CLOSED_BEFORE_ANSWER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Outcome:
    """One request: HTTP status (0: no answer at all), the predictor that answered, when, how long, its id."""

    status: int
    predictor: str | None
    at: float
    seconds: float
    request_id: str | None = None
    error: str = ""


@dataclass
class Traffic:
    """``connections`` clients posting predictions to ``url`` back to back, each on its own kept-alive connection.

    Use as a context manager; the outcomes are in :attr:`outcomes` once it exits.
    """

    url: str
    connections: int = 16
    path: str = f"/v2/models/{DEPLOYMENT}/infer"
    outcomes: list[Outcome] = field(default_factory=list)
    resent: int = 0  # requests sent again because a kept-alive connection closed before any answer

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        self._address = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.connections)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def wait_for(self, answered: int, timeout: float = 60.0) -> None:
        """Returns once ``answered`` requests have an outcome."""
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < answered:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.outcomes)} of {answered} requests answered in {timeout} s")
            time.sleep(0.01)

    def statuses(self, since: float = 0.0) -> Counter[int]:
        return Counter(o.status for o in self.outcomes if o.at >= since)

    def predictors(self, since: float = 0.0) -> Counter[str | None]:
        return Counter(o.predictor for o in self.outcomes if o.at >= since)

    def _client(self, number: int) -> None:
        connection = http.client.HTTPConnection(*self._address, timeout=30)
        sent = reused = 0
        while not self._stop.is_set():
            body = iris_request(ROWS[(number + sent) % len(ROWS)])
            sent += 1
            started = time.monotonic()
            for attempt in (1, 2):
                try:
                    connection.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
                    response = connection.getresponse()
                    response.read()
                    outcome = Outcome(
                        response.status,
                        response.getheader("X-Predictor"),
                        started,
                        time.monotonic() - started,
                        response.getheader("X-Request-Id"),
                    )
                    reused += 1
                    break
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    connection = http.client.HTTPConnection(*self._address, timeout=30)
                    closed_idle = reused and isinstance(exc, _CLOSED_BEFORE_ANSWER)
                    reused = 0
                    if closed_idle and attempt == 1:
                        # The server closed the kept-alive connection as the request went out (nginx's old
                        # workers close idle ones when a reload replaces them): nothing was answered, so
                        # the request is sent again on a new connection, as HTTP clients do (RFC 9112 9.3.1).
                        with self._lock:
                            self.resent += 1
                        continue
                    error = f"{type(exc).__name__}: {exc}"
                    outcome = Outcome(0, None, started, time.monotonic() - started, error=error)
                    break
            with self._lock:
                self.outcomes.append(outcome)
        connection.close()
