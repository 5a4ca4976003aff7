"""Command line for CI systems and the demo: `eval-pipeline <command>`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("eval_pipeline.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2


def _home() -> Path:
    from eval_pipeline.resources import project_home

    return project_home()


def fetch_jars(jars_dir: Path) -> list[Path]:
    """Download the Delta Lake jars that match the installed delta-spark with Maven."""
    from eval_pipeline.resources import SCALA_BINARY_VERSION, delta_jar_names

    jars_dir.mkdir(parents=True, exist_ok=True)
    import importlib.metadata

    version = importlib.metadata.version("delta-spark")
    artifacts = [
        f"io.delta:delta-spark_{SCALA_BINARY_VERSION}:{version}",
        f"io.delta:delta-storage:{version}",
    ]
    wanted = [jars_dir / name for name in delta_jar_names()]
    if all(path.is_file() for path in wanted):
        return wanted
    maven = shutil.which("mvn")
    if maven is None:
        raise RuntimeError(
            "Maven (`mvn`) is not on PATH; install it (Debian: `apt-get install maven`) and run "
            "`make setup` again, or copy "
            f"{[path.name for path in wanted]} into {jars_dir} yourself."
        )
    for artifact in artifacts:
        command = [
            maven, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
            f"-DoutputDirectory={jars_dir}",
        ]  # fmt: skip
        # Maven needs a folder without a pom.xml, or it would try to build that project.
        with tempfile.TemporaryDirectory() as folder:
            completed = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(
                f"Maven failed to download {artifact} (exit code {completed.returncode}):\n"
                f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
            )
    missing = [path.name for path in wanted if not path.is_file()]
    if missing:
        raise RuntimeError(f"Maven finished but {missing} are not in {jars_dir}.")
    return wanted


def _ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME when set, otherwise a `dagster` folder under the project home."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(_home() / "dagster")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    return home


def _benchmark_items(dataset) -> list[dict]:
    return dataset.ingest().accepted.to_dict("records")


def register_demo(defs) -> list:
    from eval_pipeline.core.registry import register_demo_models

    resources = defs.resources
    refs = register_demo_models(
        resources["mlflow"].settings, _benchmark_items(resources["dataset"])
    )
    return refs


def _logger_config(verbose: bool) -> dict:
    level = "INFO" if verbose else "WARNING"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def evaluate_versions(defs, refs: Sequence, verbose: bool = False) -> list[str]:
    """Refresh Bronze and Silver, then run the evaluation job for each model version."""
    from dagster import DagsterInstance

    from eval_pipeline.partitions import model_versions_partitions

    _ensure_dagster_home()
    instance = DagsterInstance.get()
    keys = [ref.partition_key for ref in refs]
    new_keys = [
        key
        for key in keys
        if not instance.has_dynamic_partition(model_versions_partitions.name, key)
    ]
    if new_keys:
        instance.add_dynamic_partitions(model_versions_partitions.name, new_keys)

    refresh = defs.resolve_job_def("benchmark_refresh_job")
    result = refresh.execute_in_process(instance=instance, run_config=_logger_config(verbose))
    if not result.success:
        raise RuntimeError(f"benchmark_refresh_job failed (Dagster run {result.run_id}).")

    evaluation = defs.resolve_job_def("model_evaluation_job")
    for ref in refs:
        print(f"Evaluating {ref.uri} (partition {ref.partition_key}) ...", file=sys.stderr)
        result = evaluation.execute_in_process(
            instance=instance,
            partition_key=ref.partition_key,
            run_config=_logger_config(verbose),
            raise_on_error=False,
        )
        if not result.success:
            raise RuntimeError(
                f"model_evaluation_job failed for {ref.uri} (Dagster run {result.run_id}); "
                "open the run in the Dagster UI (`make ui`) for the step logs."
            )
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="eval-pipeline",
        description="Evaluate registered model versions on regional Spanish benchmarks.",
    )
    parser.add_argument("--verbose", action="store_true", help="show Dagster step logs")
    commands = parser.add_subparsers(dest="command", required=True)

    jars = commands.add_parser("fetch-jars", help="download the Delta Lake jars with Maven")
    jars.add_argument("--jars-dir", type=Path, help="target folder (default: <home>/jars)")

    commands.add_parser("register-demo-models", help="register the demo models in MLflow")

    evaluate = commands.add_parser("evaluate", help="evaluate registered model versions")
    evaluate.add_argument("--model", action="append", help="registered model name (repeatable)")
    evaluate.add_argument("--version", help="one version of --model (default: every version)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")

    demo = commands.add_parser(
        "demo", help="register the demo models, evaluate every version and print the report"
    )
    demo.add_argument("--json", action="store_true", help="print the report as JSON")

    report = commands.add_parser("report", help="print the stored report of model versions")
    report.add_argument("--model", action="append", help="registered model name (repeatable)")
    report.add_argument("--json", action="store_true", help="print the report as JSON")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except Exception as error:  # the CLI reports any failure as exit code 2 for CI
        logger.debug("command failed", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    if args.command == "fetch-jars":
        for path in fetch_jars(args.jars_dir or _home() / "jars"):
            print(path)
        return EXIT_OK

    from eval_pipeline.core.partition_keys import ModelVersionRef
    from eval_pipeline.core.registry import list_model_versions
    from eval_pipeline.definitions import defs
    from eval_pipeline.report import build_report, format_report, next_steps

    settings = defs.resources["mlflow"].settings
    if args.command == "register-demo-models":
        for ref in register_demo(defs):
            print(f"{ref.uri}  partition {ref.partition_key}")
        return EXIT_OK

    if args.command == "demo":
        from eval_pipeline.core.demo_models import DEMO_MODEL_SPECS

        register_demo(defs)
        names = sorted({spec.registered_name for spec in DEMO_MODEL_SPECS})
        refs = list_model_versions(settings, names)
    elif args.command == "evaluate":
        if args.version and not args.model:
            raise ValueError("--version needs --model NAME.")
        if args.version:
            refs = [ModelVersionRef(args.model[0], args.version)]
        else:
            refs = list_model_versions(settings, args.model)
        if not refs:
            raise ValueError(
                f"No registered model versions found for {args.model or 'any model'} in "
                f"{settings.registry_uri}; register one first (`eval-pipeline "
                "register-demo-models` registers the demo models)."
            )
    else:
        refs = list_model_versions(settings, args.model)

    if args.command in ("demo", "evaluate"):
        evaluate_versions(defs, refs, verbose=args.verbose)

    report = build_report(defs, refs)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_report(report))
        print(next_steps(defs))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
