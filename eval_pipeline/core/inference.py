"""Batch inference with MLflow pyfunc models that turns every failure into a row, not a crash.

`predict_frame` is plain pandas code; `make_partition_predictor` wraps it for Spark's
`mapInPandas`, so the same function runs in-process and on a cluster's executors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from enum import StrEnum

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

MODEL_INPUT_COLUMNS = ("prompt", "region")
PREDICTION_COLUMNS = ("output", "latency_ms", "error_code", "error_message")
_MAX_ERROR_MESSAGE = 500


class ErrorCode(StrEnum):
    """Reason an item has no usable output."""

    MODEL_ERROR = "model_error"
    NULL_OUTPUT = "null_output"
    EMPTY_OUTPUT = "empty_output"
    NON_STRING_OUTPUT = "non_string_output"
    OUTPUT_COUNT_MISMATCH = "output_count_mismatch"


def classify_output(value: object) -> tuple[str | None, str | None, str | None]:
    """Return (output, error_code, error_message) for one raw model output."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None, ErrorCode.NULL_OUTPUT.value, "model returned None"
    if not isinstance(value, str):
        message = f"model returned {type(value).__name__}, expected str: {value!r}"
        return None, ErrorCode.NON_STRING_OUTPUT.value, message[:_MAX_ERROR_MESSAGE]
    if not value.strip():
        return None, ErrorCode.EMPTY_OUTPUT.value, f"model returned an empty string {value!r}"
    return str(value), None, None


def _as_list(predictions: object) -> list[object]:
    if isinstance(predictions, pd.DataFrame):
        # A one-column frame is the usual pyfunc output, and wider frames put the output first.
        return predictions.iloc[:, 0].tolist()
    if isinstance(predictions, pd.Series | np.ndarray):
        return list(predictions.tolist())
    if isinstance(predictions, list | tuple):
        return list(predictions)
    # A scalar for a whole batch cannot be matched to items.
    return [predictions]


def _error_rows(count: int, code: ErrorCode, message: str, latency_ms: float) -> list[tuple]:
    return [(None, latency_ms, code.value, message[:_MAX_ERROR_MESSAGE])] * count


def _predict_batch(model, batch: pd.DataFrame) -> list[tuple]:
    started = time.perf_counter()
    try:
        raw = model.predict(batch)
    except Exception as error:  # any model failure becomes an item row, never a crashed run
        latency_ms = (time.perf_counter() - started) * 1000 / len(batch)
        message = f"{type(error).__name__}: {error}"
        return _error_rows(len(batch), ErrorCode.MODEL_ERROR, message, latency_ms)
    latency_ms = (time.perf_counter() - started) * 1000 / len(batch)

    outputs = _as_list(raw)
    if len(outputs) != len(batch):
        message = f"model returned {len(outputs)} outputs for {len(batch)} inputs"
        return _error_rows(len(batch), ErrorCode.OUTPUT_COUNT_MISMATCH, message, latency_ms)
    rows = []
    for value in outputs:
        output, error_code, error_message = classify_output(value)
        rows.append((output, latency_ms, error_code, error_message))
    return rows


def predict_frame(model, frame: pd.DataFrame, batch_size: int = 1) -> pd.DataFrame:
    """Return `frame` with output, latency_ms, error_code and error_message per row.

    The model receives micro-batches of `batch_size` rows of MODEL_INPUT_COLUMNS. With batch size 1
    latency is measured per item; with larger batches each item gets the batch time divided by
    the batch size. When a batch of several rows raises, its rows are retried one by one so that
    a single bad item does not mark its neighbours as failed.
    """
    if batch_size < 1:
        raise ValueError(f"Invalid inference batch_size {batch_size}: expected 1 or more.")
    rows: list[tuple] = []
    inputs = frame.loc[:, list(MODEL_INPUT_COLUMNS)].reset_index(drop=True)
    for start in range(0, len(inputs), batch_size):
        batch = inputs.iloc[start : start + batch_size].reset_index(drop=True)
        batch_rows = _predict_batch(model, batch)
        failed_whole_batch = len(batch) > 1 and all(
            row[2] == ErrorCode.MODEL_ERROR.value for row in batch_rows
        )
        if failed_whole_batch:
            batch_rows = [
                _predict_batch(model, batch.iloc[[i]].reset_index(drop=True))[0]
                for i in range(len(batch))
            ]
        rows.extend(batch_rows)

    result = frame.reset_index(drop=True).copy()
    predictions = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    for column in PREDICTION_COLUMNS:
        result[column] = predictions[column] if len(rows) else pd.Series(dtype=object)
    result["latency_ms"] = result["latency_ms"].astype("float64")
    return result


_MODEL_CACHE: dict[tuple[str, str, str], object] = {}


def load_pyfunc(model_uri: str, tracking_uri: str, registry_uri: str):
    """Load an MLflow pyfunc model once per process (Spark reuses its Python workers)."""
    key = (model_uri, tracking_uri, registry_uri)
    if key not in _MODEL_CACHE:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)
        logger.info("Loading model %s from registry %s", model_uri, registry_uri)
        _MODEL_CACHE[key] = mlflow.pyfunc.load_model(model_uri)
    return _MODEL_CACHE[key]


def make_partition_predictor(
    model_uri: str, tracking_uri: str, registry_uri: str, batch_size: int = 1
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Return a `mapInPandas` function that runs the model over each Arrow batch."""

    def predict_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = load_pyfunc(model_uri, tracking_uri, registry_uri)
        for batch in batches:
            yield predict_frame(model, batch, batch_size=batch_size)

    return predict_partition
