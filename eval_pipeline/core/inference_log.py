"""Read production request logs for one day and split them into accepted and quarantined rows.

Logs come from files in a landing folder (one ``<YYYY-MM-DD>`` sub-folder per request date,
holding JSONL, CSV or Parquet files) and from MLflow traces that a served model logged. As in
the benchmark ingestion, nothing is dropped: every row read ends up accepted or quarantined
with its reason codes, so ``rows read = accepted + quarantined``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from eval_pipeline.core.ingest import (
    SPANISH_SPEAKING_REGIONS,
    SUPPORTED_SUFFIXES,
    RawRecord,
    _has_invalid_utf8,
    _printable,
    read_records,
)

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("request_id", "timestamp", "model_name", "model_version", "status")
STATUSES = ("ok", "error")

REQUEST_COLUMNS = [
    "request_id", "timestamp", "request_date", "model_name", "model_version", "region",
    "input_text", "output", "latency_ms", "status", "error_code", "label", "source",
    "source_file", "row_number",
]  # fmt: skip
QUARANTINE_COLUMNS = [
    "request_date", "source", "source_file", "row_number", "request_id", "reason", "detail",
    "raw_record",
]  # fmt: skip

# Tags that a served model sets on its MLflow traces, so they can be attributed.
TRACE_TAG_PREFIX = "eval_pipeline."
# source_file of a record read from MLflow traces: this prefix and the experiment name.
TRACE_SOURCE_PREFIX = "mlflow-trace:"
_TRACE_INPUT_KEYS = ("input_text", "text", "prompt", "input", "question")
_TRACE_OUTPUT_KEYS = ("output", "answer", "text", "content")


def day_files(traffic_dir: str | Path, day: date) -> list[Path]:
    """Return the supported files under ``<traffic_dir>/<YYYY-MM-DD>/``, sorted by path."""
    folder = Path(traffic_dir).expanduser() / day.isoformat()
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES
    )


def day_bounds_ms(day: date) -> tuple[int, int]:
    """Return the first millisecond of ``day`` and of the next day, UTC, since the epoch."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def search_day_traces(client, experiment_name: str, day: date, page_size: int = 500) -> list:
    """Return the MLflow traces of ``experiment_name`` that started on ``day`` (UTC).

    Returns an empty list when the experiment does not exist, because a model that never
    logged a trace has no experiment yet.
    """
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        logger.info("MLflow experiment %r does not exist; no traces to read", experiment_name)
        return []
    start, end = day_bounds_ms(day)
    traces: list = []
    token = None
    while True:
        page = client.search_traces(
            locations=[experiment.experiment_id],
            filter_string=f"timestamp_ms >= {start} AND timestamp_ms < {end}",
            max_results=page_size,
            page_token=token,
            order_by=["timestamp_ms ASC"],
        )
        traces.extend(page)
        token = page.token
        if not token:
            return traces


def _json_or_text(value: str | None) -> object:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def _first_text(value: object, keys: Sequence[str]) -> object:
    if isinstance(value, Mapping):
        for key in keys:
            if isinstance(value.get(key), str):
                return value[key]
        return None
    return value


def trace_records(traces: Iterable, experiment_name: str) -> list[RawRecord]:
    """Convert MLflow traces into raw request records.

    The model name, version and region come from the trace tags ``eval_pipeline.model_name``,
    ``eval_pipeline.model_version`` and ``eval_pipeline.region`` (or an input named
    ``region``). The input text is the first string among the root span inputs
    ``input_text``, ``text``, ``prompt``, ``input`` and ``question``.
    """
    records = []
    for number, trace in enumerate(traces, start=1):
        info = trace.info
        tags = dict(info.tags or {})
        inputs = _json_or_text(trace.data.request)
        outputs = _json_or_text(trace.data.response)
        state = str(getattr(info, "state", None) or info.status).rsplit(".", 1)[-1].upper()
        region = tags.get(f"{TRACE_TAG_PREFIX}region")
        if region is None and isinstance(inputs, Mapping):
            region = inputs.get("region")
        fields = {
            "request_id": info.request_id,
            "timestamp": info.timestamp_ms,
            "model_name": tags.get(f"{TRACE_TAG_PREFIX}model_name"),
            "model_version": tags.get(f"{TRACE_TAG_PREFIX}model_version"),
            "region": region,
            "input_text": _first_text(inputs, _TRACE_INPUT_KEYS),
            "output": _first_text(outputs, _TRACE_OUTPUT_KEYS),
            "latency_ms": info.execution_time_ms,
            "status": {"OK": "ok", "ERROR": "error"}.get(state, state.lower()),
            "error_code": "trace_error" if state == "ERROR" else None,
            "label": tags.get(f"{TRACE_TAG_PREFIX}label"),
        }
        raw = json.dumps({"trace_id": info.request_id, "tags": tags}, ensure_ascii=False)
        source_file = f"{TRACE_SOURCE_PREFIX}{experiment_name}"
        records.append(RawRecord(source_file, number, fields, raw_text=raw))
    return records


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def parse_timestamp(value: object) -> pd.Timestamp | None:
    """Return a UTC timestamp from ISO 8601 text or epoch milliseconds, or None if invalid."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            stamp = pd.Timestamp(int(value), unit="ms", tz="UTC")
        elif isinstance(value, str | datetime | pd.Timestamp):
            stamp = pd.Timestamp(value)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        else:
            return None
    except (ValueError, OverflowError, TypeError):
        return None
    return None if pd.isna(stamp) else stamp


def _parse_latency(value: object) -> tuple[float | None, bool]:
    """Return (latency, valid). A missing latency is valid and becomes NaN."""
    if not _present(value):
        return math.nan, True
    if isinstance(value, bool):
        return None, False
    try:
        latency = float(value)
    except (TypeError, ValueError):
        return None, False
    return latency, math.isfinite(latency) and latency >= 0


def validate_requests(
    records: Sequence[RawRecord],
    day: date,
    allowed_regions: Iterable[str] = SPANISH_SPEAKING_REGIONS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split request records of partition ``day`` into accepted and quarantined rows.

    Reasons are comma-separated when several apply. ``malformed_record``, ``invalid_utf8``,
    ``invalid_type``, ``missing_field``, ``empty_text`` and ``invalid_timestamp`` mean what
    they say. ``outside_partition`` marks a timestamp on another UTC day than the folder or
    trace window. ``invalid_latency`` marks a latency that is not a number, negative or
    infinite, and ``invalid_status`` a status other than ``ok`` and ``error``. Then come
    ``unknown_region`` and ``duplicate_request_id``, for which the first valid row with an id
    is kept. A missing region or latency is allowed.
    """
    regions = {region.upper() for region in allowed_regions}
    day_text = day.isoformat()
    seen: dict[str, str] = {}
    accepted, quarantined = [], []
    for record in records:
        values = record.fields
        source = "mlflow_trace" if record.source_file.startswith(TRACE_SOURCE_PREFIX) else "file"
        reasons, details = [], []
        if record.parse_error:
            reasons.append("malformed_record")
            details.append(record.parse_error)
        invalid = sorted(k for k, v in values.items() if _has_invalid_utf8(v))
        if invalid or _has_invalid_utf8(record.raw_text):
            reasons.append("invalid_utf8")
            details.append(f"bytes that are not valid UTF-8 in {invalid or ['the record']}")

        text_fields = ("model_name", "model_version", "region", "input_text", "output", "label")
        wrong_type = sorted(
            name
            for name in text_fields
            if _present(values.get(name)) and not isinstance(values.get(name), str | int)
        )
        if wrong_type:
            reasons.append("invalid_type")
            details.append(f"fields {wrong_type} are not text")

        stamp = None
        latency = math.nan
        if not record.parse_error:
            missing = [name for name in REQUIRED_FIELDS if not _present(values.get(name))]
            if missing:
                reasons.append("missing_field")
                details.append(f"missing or empty required fields {missing}")
            if not _present(values.get("input_text")):
                reasons.append("empty_text")
                details.append("field 'input_text' is missing or empty")
            if _present(values.get("timestamp")):
                stamp = parse_timestamp(values["timestamp"])
                if stamp is None:
                    reasons.append("invalid_timestamp")
                    details.append(f"timestamp {values['timestamp']!r} is not ISO 8601 or epoch ms")
                elif stamp.date().isoformat() != day_text:
                    reasons.append("outside_partition")
                    details.append(f"timestamp {stamp.isoformat()} is not on {day_text} (UTC)")
            parsed_latency, latency_ok = _parse_latency(values.get("latency_ms"))
            if latency_ok:
                latency = parsed_latency
            else:
                reasons.append("invalid_latency")
                details.append(f"latency_ms {values.get('latency_ms')!r} is not a number >= 0")
            status = str(values.get("status") or "").strip().lower()
            if _present(values.get("status")) and status not in STATUSES:
                reasons.append("invalid_status")
                details.append(f"status {values.get('status')!r} is not one of {list(STATUSES)}")
            region = str(values.get("region") or "").strip().upper()
            if region and region not in regions:
                reasons.append("unknown_region")
                details.append(f"region {region!r} is not one of {sorted(regions)}")

        request_id = None
        if _present(values.get("request_id")):
            request_id = str(values["request_id"]).strip()
        location = f"{Path(record.source_file).name}:{record.row_number}"
        if not reasons and request_id in seen:
            reasons.append("duplicate_request_id")
            details.append(f"request_id {request_id!r} already used at {seen[request_id]}")
        elif not reasons:
            seen[request_id] = location

        if reasons:
            raw = record.raw_text if record.raw_text is not None else record.fields
            quarantined.append(
                {
                    "request_date": day_text,
                    "source": source,
                    "source_file": record.source_file,
                    "row_number": record.row_number,
                    "request_id": _printable(request_id) if request_id else None,
                    "reason": ",".join(reasons),
                    "detail": "; ".join(details),
                    "raw_record": _printable(raw),
                }
            )
            continue

        accepted.append(
            {
                "request_id": request_id,
                "timestamp": stamp,
                "request_date": day_text,
                "model_name": str(values["model_name"]).strip(),
                "model_version": str(values["model_version"]).strip(),
                "region": str(values["region"]).strip().upper()
                if _present(values.get("region"))
                else None,
                "input_text": str(values["input_text"]),
                "output": str(values["output"]) if _present(values.get("output")) else None,
                "latency_ms": latency,
                "status": str(values["status"]).strip().lower(),
                "error_code": str(values["error_code"])
                if _present(values.get("error_code"))
                else None,
                "label": str(values["label"]) if _present(values.get("label")) else None,
                "source": source,
                "source_file": record.source_file,
                "row_number": record.row_number,
            }
        )

    accepted_frame = pd.DataFrame(accepted, columns=REQUEST_COLUMNS)
    accepted_frame["latency_ms"] = accepted_frame["latency_ms"].astype("float64")
    return accepted_frame, pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)


def read_day_files(traffic_dir: str | Path, day: date) -> list[RawRecord]:
    """Return every record of the day's landing files, keeping unparseable rows as records."""
    return [record for path in day_files(traffic_dir, day) for record in read_records(path)]
