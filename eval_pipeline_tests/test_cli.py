import json
import os
import subprocess
import sys

import pytest

from eval_pipeline_tests.conftest import jars_dir


def run_cli(args, env, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "eval_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(tmp_path, small_benchmark):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, so earlier tests in this process
    # leave theirs behind; the command under test must use only the home set here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        {
            "EVAL_PIPELINE_HOME": str(tmp_path / "home"),
            "DAGSTER_HOME": str(tmp_path / "dagster"),
            "EVAL_PIPELINE_JARS_DIR": jars_dir(),
            "EVAL_PIPELINE_DATASET_FILES": str(small_benchmark),
        }
    )
    return env


def test_help_lists_commands():
    completed = run_cli(["--help"], dict(os.environ))
    assert completed.returncode == 0
    for command in ("demo", "evaluate", "report", "fetch-jars", "register-demo-models"):
        assert command in completed.stdout


def test_unknown_model_exits_2(cli_env):
    completed = run_cli(["evaluate", "--model", "no-such-model"], cli_env)
    assert completed.returncode == 2
    assert "Registered model 'no-such-model' not found" in completed.stderr


def test_version_without_model_exits_2(cli_env):
    completed = run_cli(["evaluate", "--version", "1"], cli_env)
    assert completed.returncode == 2
    assert "--version needs --model" in completed.stderr


def test_missing_benchmark_file_exits_2(cli_env, tmp_path):
    cli_env["EVAL_PIPELINE_DATASET_FILES"] = str(tmp_path / "missing.jsonl")
    completed = run_cli(["register-demo-models"], cli_env)
    assert completed.returncode == 2
    assert "missing.jsonl" in completed.stderr


@pytest.mark.slow
def test_register_and_evaluate_prints_report(cli_env):
    registered = run_cli(["register-demo-models"], cli_env)
    assert registered.returncode == 0, registered.stderr
    assert "models:/echo-baseline/1" in registered.stdout

    evaluated = run_cli(["evaluate", "--model", "echo-baseline", "--json"], cli_env)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(evaluated.stdout)
    assert [entry["partition_key"] for entry in report] == ["echo-baseline--v1"]
    overall = next(row for row in report[0]["summary"] if row["slice"] == "overall")
    assert overall["n"] == 32
    assert overall["pass_rate"] == 0.0

    text = run_cli(["report", "--model", "echo-baseline"], cli_env)
    assert text.returncode == 0, text.stderr[-3000:]
    assert "echo-baseline version 1" in text.stdout
    assert "Pass rate by region x noise level" in text.stdout
    assert "make ui" in text.stdout


GATE_POLICY = """
defaults:
  bound: point
  region_minimum: {min_n: 2, thresholds: {default: 0.5}}
  non_regression: {min_n: 2, margin: 0.9, n_resamples: 200}
  robustness: {tolerance: 0.6, min_n: 2}
  region_gap: {max_gap: 1.0, min_n: 2}
  latency: {p95_ms_max: 60000, min_n: 2}
  error_rate: {max: 0.5, min_n: 2}
"""


@pytest.mark.slow
def test_gate_exit_codes_and_promotion(cli_env, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(GATE_POLICY, encoding="utf-8")
    cli_env["EVAL_PIPELINE_POLICY"] = str(policy)
    assert run_cli(["register-demo-models"], cli_env).returncode == 0

    # Version 2 has the glossary of every term in this benchmark, so its gates pass.
    passed = run_cli(
        ["gate", "--model", "regional-explainer", "--version", "2", "--json", "--promote"],
        cli_env,
    )
    assert passed.returncode == 0, passed.stderr[-3000:]
    decision = json.loads(passed.stdout)
    assert decision["outcome"] == "pass"
    assert decision["promotion"][0]["action"] == "promoted"
    assert decision["evidence"]["delta_version"] is not None

    failed = run_cli(["gate", "--model", "echo-baseline", "--version", "1"], cli_env)
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "FAIL" in failed.stdout
    assert "region_minimum" in failed.stdout

    reused = run_cli(["gate", "--model", "echo-baseline", "--version", "1", "--json"], cli_env)
    assert reused.returncode == 1
    assert json.loads(reused.stdout)["reused"] is True

    evidence = run_cli(
        ["evidence", "--model", "echo-baseline", "--version", "1", "--failed-only"], cli_env
    )
    assert evidence.returncode == 0, evidence.stderr[-3000:]
    assert "32 rows that failed" in evidence.stdout

    rollback = run_cli(["rollback", "--model", "regional-explainer"], cli_env)
    assert rollback.returncode == 2
    assert "no previous champion" in rollback.stderr


def test_init_creates_stores(cli_env, tmp_path):
    completed = run_cli(["init"], cli_env)
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "home" / "mlflow" / "mlflow.db").is_file()
    assert (tmp_path / "dagster" / "dagster.yaml").is_file()
    assert (tmp_path / "dagster" / "history").is_dir()


def test_backfill_without_webserver_exits_2(cli_env):
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{cli_env['EVAL_PIPELINE_HOME']}/mlflow/mlflow.db"
    assert run_cli(["init"], cli_env).returncode == 0
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model("backfilled")
    client.create_model_version("backfilled", source="file:///models/stand-in")

    completed = run_cli(
        ["backfill", "--model", "backfilled", "--webserver", "http://127.0.0.1:9"], cli_env
    )

    assert completed.returncode == 2
    assert "No Dagster webserver responds at http://127.0.0.1:9" in completed.stderr
    assert "--in-process" in completed.stderr


def test_backfill_rejects_malformed_versions(cli_env):
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{cli_env['EVAL_PIPELINE_HOME']}/mlflow/mlflow.db"
    assert run_cli(["init"], cli_env).returncode == 0
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model("backfilled")
    client.create_model_version("backfilled", source="file:///models/stand-in")

    completed = run_cli(["backfill", "--model", "backfilled", "--versions", "1-x"], cli_env)

    assert completed.returncode == 2
    assert "Invalid version selection '1-x'" in completed.stderr
