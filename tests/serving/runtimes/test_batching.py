"""Micro-batching of the v2 runtime on the real Iris model: coalescing, per-request answers and errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.serving.model import InvalidRequest, ServedModel
from kfp_mlops.serving.runtimes.mlserver.batching import MicroBatcher
from tests.serving.support import FEATURES, IrisModel

OVERFLOWS_ONCE_SCALED = [1e308] * 4  # finite, but the scaler makes it infinite: the model refuses it (422)


@pytest.fixture(scope="module")
def served(iris_model: IrisModel) -> ServedModel:
    return ServedModel.load(iris_model.uri)


def _matrices(iris_model: IrisModel, sizes: list[int]) -> list[np.ndarray]:
    rows = np.array(iris_model.rows, dtype=float)
    starts = np.cumsum([0, *sizes])
    return [rows[start : start + size] for start, size in zip(starts, sizes)]


async def _score_together(batcher: MicroBatcher, matrices: list[np.ndarray]) -> list[np.ndarray | BaseException]:
    return await asyncio.gather(*(batcher.score(matrix) for matrix in matrices), return_exceptions=True)


def test_concurrent_requests_share_one_model_call_and_each_gets_its_own_rows(
    served: ServedModel, iris_model: IrisModel
) -> None:
    batcher = MicroBatcher(served.score, max_wait_s=1.0, max_rows=64)
    matrices = _matrices(iris_model, [1, 3, 1, 2, 1, 1, 4, 1, 1, 1])
    results = asyncio.run(_score_together(batcher, matrices))
    assert (batcher.calls, batcher.requests) == (1, 10)
    for matrix, result in zip(matrices, results):
        assert isinstance(result, np.ndarray)
        expected = iris_model.model.predict_proba(pd.DataFrame(matrix, columns=FEATURES))
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_a_lone_request_is_scored_without_waiting_out_the_window(served: ServedModel, iris_model: IrisModel) -> None:
    batcher = MicroBatcher(served.score, max_wait_s=600.0)

    async def lone() -> np.ndarray:
        # Far below the window: it is scored once a turn of the loop brings no other request.
        return await asyncio.wait_for(batcher.score(_matrices(iris_model, [1])[0]), timeout=60)

    assert asyncio.run(lone()).shape == (1, 3)
    assert batcher.calls == 1


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_request_the_model_refuses_fails_alone(served: ServedModel, iris_model: IrisModel) -> None:
    batcher = MicroBatcher(served.score, max_wait_s=1.0)
    good = _matrices(iris_model, [1, 2, 1])
    matrices = [good[0], np.array([OVERFLOWS_ONCE_SCALED]), good[1], good[2]]
    results = asyncio.run(_score_together(batcher, matrices))
    refused = results[1]
    assert isinstance(refused, InvalidRequest) and refused.status == 422
    assert "cannot score" in str(refused)
    for matrix, result in zip(good, [results[0], *results[2:]]):
        assert isinstance(result, np.ndarray)
        np.testing.assert_allclose(result, served.score(matrix), rtol=0, atol=1e-12)
    assert batcher.calls == 1 + len(matrices)  # the joint call, then each request on its own


def test_a_full_batch_is_scored_at_once_and_the_rest_start_the_next(served: ServedModel, iris_model: IrisModel) -> None:
    batcher = MicroBatcher(served.score, max_wait_s=1.0, max_rows=4)
    results = asyncio.run(_score_together(batcher, _matrices(iris_model, [2, 2, 2])))
    assert [r.shape for r in results if isinstance(r, np.ndarray)] == [(2, 3)] * 3
    assert (batcher.calls, batcher.requests) == (2, 3)


def test_large_requests_bypass_the_batch_and_zero_wait_turns_it_off(served: ServedModel) -> None:
    batcher = MicroBatcher(served.score, max_wait_s=0.002, max_rows=64)
    assert batcher.takes(1) and batcher.takes(32) and not batcher.takes(33)
    off = MicroBatcher(served.score, max_wait_s=0)
    assert not off.enabled and not off.takes(1)


@pytest.mark.parametrize(("wait", "rows"), [(-1.0, 64), (0.002, 0)])
def test_a_bad_configuration_is_refused(served: ServedModel, wait: float, rows: int) -> None:
    with pytest.raises(ValueError, match="micro-batching"):
        MicroBatcher(served.score, max_wait_s=wait, max_rows=rows)
