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
    env = dict(os.environ)
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
    assert "No registered model versions found for ['no-such-model']" in completed.stderr


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
