import json
from datetime import date

import mlflow
import pandas as pd
import pytest

from eval_pipeline.core.inference_log import (
    day_files,
    parse_timestamp,
    read_day_files,
    search_day_traces,
    trace_records,
    validate_requests,
)
from eval_pipeline.core.ingest import ingest_files
from eval_pipeline.core.traffic import (
    INVALID_ROW_KINDS,
    TrafficScenario,
    generate_traffic,
    write_traffic_files,
)
from eval_pipeline.resources import packaged_benchmark_path

DAY = date(2025, 3, 2)


@pytest.fixture(scope="module")
def traffic():
    benchmark = ingest_files("regional_es", [packaged_benchmark_path()]).accepted
    scenario = TrafficScenario(start_date=date(2025, 3, 1), days=2, requests_per_day=50)
    return generate_traffic(scenario, benchmark)


def test_files_found_by_day_folder(tmp_path, traffic):
    write_traffic_files(traffic, tmp_path)
    (tmp_path / DAY.isoformat() / "notes.txt").write_text("ignored", encoding="utf-8")
    assert [path.name for path in day_files(tmp_path, DAY)] == ["requests.jsonl"]
    assert day_files(tmp_path, date(2025, 3, 9)) == []


def test_quarantine_counts(tmp_path, traffic):
    write_traffic_files(traffic, tmp_path, add_invalid_rows=True)
    records = read_day_files(tmp_path, DAY)
    accepted, quarantined = validate_requests(records, DAY)
    # 50 requests, one row per invalid kind and one line that is not JSON.
    assert len(records) == 50 + len(INVALID_ROW_KINDS) + 1
    assert len(accepted) == 50
    assert len(quarantined) == len(INVALID_ROW_KINDS) + 1
    assert len(accepted) + len(quarantined) == len(records)
    reasons = quarantined["reason"].str.split(",").explode().value_counts().to_dict()
    assert reasons == {
        "missing_field": 1,
        "invalid_latency": 1,
        "invalid_status": 1,
        "invalid_timestamp": 1,
        "outside_partition": 1,
        "duplicate_request_id": 1,
        "malformed_record": 1,
    }
    assert accepted["request_date"].eq(DAY.isoformat()).all()
    assert quarantined["raw_record"].str.len().gt(0).all()


def test_parquet_round_trip(tmp_path, traffic):
    write_traffic_files(traffic, tmp_path, file_format="parquet")
    accepted, quarantined = validate_requests(read_day_files(tmp_path, DAY), DAY)
    assert len(accepted) == 50
    assert quarantined.empty
    expected = traffic[traffic["timestamp"].str.startswith(DAY.isoformat())]
    assert sorted(accepted["request_id"]) == sorted(expected["request_id"])
    assert accepted["latency_ms"].dtype == "float64"


def test_unknown_region_and_missing_optional_fields(tmp_path):
    rows = [
        {"request_id": "a", "timestamp": "2025-03-02T10:00:00Z", "model_name": "m",
         "model_version": "1", "input_text": "hola", "status": "OK"},
        {"request_id": "b", "timestamp": "2025-03-02T10:00:01+02:00", "model_name": "m",
         "model_version": 2, "input_text": "hola", "status": "ok", "region": "zz"},
        {"request_id": "c", "timestamp": 1740913200000, "model_name": "m",
         "model_version": "1", "input_text": " ", "status": "error", "latency_ms": "fast"},
    ]  # fmt: skip
    folder = tmp_path / DAY.isoformat()
    folder.mkdir()
    lines = "\n".join(json.dumps(row) for row in rows)
    (folder / "log.jsonl").write_text(lines, encoding="utf-8")
    accepted, quarantined = validate_requests(read_day_files(tmp_path, DAY), DAY)
    assert accepted["request_id"].tolist() == ["a"]
    assert accepted["status"].tolist() == ["ok"]
    assert pd.isna(accepted["latency_ms"].iloc[0])
    assert accepted["region"].tolist() == [None]
    reasons = dict(zip(quarantined["request_id"], quarantined["reason"], strict=True))
    assert reasons == {"b": "unknown_region", "c": "empty_text,invalid_latency"}


def test_parse_timestamp_forms():
    assert parse_timestamp("2025-03-02T23:30:00-03:00").isoformat() == "2025-03-03T02:30:00+00:00"
    assert parse_timestamp(0).isoformat() == "1970-01-01T00:00:00+00:00"
    assert parse_timestamp("yesterday") is None
    assert parse_timestamp(True) is None


@pytest.mark.slow
def test_mlflow_traces_ingested(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.set_experiment("serving-traces")

    @mlflow.trace
    def predict(prompt: str, region: str) -> str:
        mlflow.update_current_trace(
            tags={
                "eval_pipeline.model_name": "regional-explainer",
                "eval_pipeline.model_version": "2",
            }
        )
        return "niño"

    predict("¿Qué significa «cipote»?", "SV")
    predict("¿Qué significa «jato»?", "PE")
    with pytest.raises(ValueError), mlflow.start_span("unattributed") as span:
        span.set_inputs({"prompt": "hola"})
        raise ValueError("model failed")
    mlflow.flush_trace_async_logging()

    client = mlflow.MlflowClient(tracking_uri)
    today = pd.Timestamp.now(tz="UTC").date()
    traces = search_day_traces(client, "serving-traces", today)
    assert len(traces) == 3
    assert search_day_traces(client, "serving-traces", date(2020, 1, 1)) == []
    assert search_day_traces(client, "no-such-experiment", today) == []

    records = trace_records(traces, experiment.name)
    accepted, quarantined = validate_requests(records, today)
    assert sorted(accepted["input_text"]) == ["¿Qué significa «cipote»?", "¿Qué significa «jato»?"]
    assert set(accepted["region"]) == {"SV", "PE"}
    assert set(accepted["output"]) == {"niño"}
    assert set(accepted["source"]) == {"mlflow_trace"}
    assert accepted["latency_ms"].ge(0).all()
    # The failing span has no model tags, so it is quarantined rather than dropped.
    assert len(quarantined) == 1
    assert quarantined["reason"].iloc[0] == "missing_field"
