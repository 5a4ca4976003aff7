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

from eval_pipeline.automation.webserver import DEFAULT_WEBSERVER_URL
from eval_pipeline.monitoring.cli import (
    MONITORING_COMMANDS,
    add_monitoring_commands,
    run_monitoring_command,
)

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
    expected_jars = [jars_dir / name for name in delta_jar_names()]
    if all(path.is_file() for path in expected_jars):
        return expected_jars
    maven = shutil.which("mvn")
    if maven is None:
        raise RuntimeError(
            "Maven (`mvn`) is not on PATH; install it (Debian: `apt-get install maven`) and run "
            "`make setup` again, or copy "
            f"{[path.name for path in expected_jars]} into {jars_dir} yourself."
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
    missing = [path.name for path in expected_jars if not path.is_file()]
    if missing:
        raise RuntimeError(f"Maven finished but {missing} are not in {jars_dir}.")
    return expected_jars


def _ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME when set, otherwise a `dagster` folder under the project home."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(_home() / "dagster")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        # `make setup` copies the repository's dagster.yaml; outside a checkout this keeps the
        # embedded defaults and turns telemetry off.
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
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
    # A version blocked by its gates fails its run by design; the report states why, so the
    # step's traceback is only shown in verbose mode.
    level = "INFO" if verbose else "CRITICAL"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def evaluate_versions(defs, refs: Sequence, verbose: bool = False) -> list[str]:
    """Refresh Bronze and Silver, then run the evaluation job for each model version."""
    from dagster import DagsterInstance

    from eval_pipeline.core.registry import get_model_version
    from eval_pipeline.jobs import COMMAND_LINE_TRIGGER, TRIGGER_TAG
    from eval_pipeline.partitions import model_versions_partitions

    # Check every version first, so a deleted one fails before minutes of Bronze and Silver work
    # and leaves no partition behind.
    for ref in refs:
        get_model_version(defs.resources["mlflow"].settings, ref)
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
    result = refresh.execute_in_process(
        instance=instance,
        run_config=_logger_config(verbose),
        raise_on_error=False,
        tags={TRIGGER_TAG: COMMAND_LINE_TRIGGER},
    )
    if not result.success:
        raise RuntimeError(
            f"benchmark_refresh_job failed (Dagster run {result.run_id}): "
            f"{_failure_message(result)}"
        )

    evaluation = defs.resolve_job_def("model_evaluation_job")
    for ref in refs:
        print(f"Evaluating {ref.uri} (partition {ref.partition_key}) ...", file=sys.stderr)
        result = evaluation.execute_in_process(
            instance=instance,
            partition_key=ref.partition_key,
            run_config=_logger_config(verbose),
            raise_on_error=False,
            tags={TRIGGER_TAG: COMMAND_LINE_TRIGGER},
        )
        if not result.success and not _only_gate_checks_failed(result):
            raise RuntimeError(
                f"model_evaluation_job failed for {ref.uri} (Dagster run {result.run_id}): "
                f"{_failure_message(result)} The Dagster UI (`make ui`) has the step logs."
            )
    return keys


def _failure_message(result) -> str:
    """Return the message of the first step failure, without Dagster's wrapper text."""
    failures = result.get_step_failure_events()
    if not failures:
        return "the run failed before any step started."
    error = failures[0].step_failure_data.error
    # Dagster wraps user errors; the innermost cause carries the message the code raised, and
    # its text starts with the qualified class name.
    while error.cause is not None:
        error = error.cause
    message = error.message.strip()
    prefix, separator, rest = message.partition(": ")
    if separator and prefix.endswith(error.cls_name):
        message = rest
    return f"{error.cls_name}: {message}"


def _only_gate_checks_failed(result) -> bool:
    """Return True when the run stopped only because blocking gate checks failed."""
    failures = result.get_step_failure_events()
    return bool(failures) and all(
        event.step_failure_data.error.cls_name == "DagsterAssetCheckFailedError"
        for event in failures
    )


def promote_versions(defs, refs: Sequence, verbose: bool = False) -> list[dict]:
    """Run the promotion job for each version; return what each run did."""
    from dagster import DagsterInstance

    from eval_pipeline.partitions import model_versions_partitions

    _ensure_dagster_home()
    instance = DagsterInstance.get()
    job = defs.resolve_job_def("promotion_job")
    actions = []
    for ref in refs:
        if not instance.has_dynamic_partition(model_versions_partitions.name, ref.partition_key):
            raise ValueError(
                f"No gate decision exists for {ref.uri}: it has never been evaluated here. Run "
                f"`eval-pipeline gate --model {ref.name} --version {ref.version}` first."
            )
        result = job.execute_in_process(
            instance=instance,
            partition_key=ref.partition_key,
            run_config=_logger_config(verbose),
            raise_on_error=False,
        )
        if not result.success:
            raise RuntimeError(f"Promotion of {ref.uri} failed: {_failure_message(result)}")
        output = result.output_for_node("promote_model_version")
        actions.append({"model_uri": ref.uri, "action": output})
    return actions


def _decision_state(defs, ref) -> tuple[dict | None, bool]:
    """Return the stored decision of `ref` and whether it is still current."""
    from eval_pipeline.core.promotion import (
        PromotionError,
        alias_version,
        check_decision_is_current,
    )
    from eval_pipeline.gates.decisions import read_decision

    resources = defs.resources
    dataset = resources["dataset"]
    session = resources["spark"].get_session()
    decision = read_decision(session, resources["lakehouse"], dataset.name, ref.partition_key)
    champion = alias_version(
        resources["mlflow"].settings, ref.name, resources["promotion"].champion_alias
    )
    try:
        check_decision_is_current(
            decision,
            ref,
            dataset.current_version(),
            resources["policy"].load().content_hash,
            champion,
        )
    except PromotionError:
        return decision, False
    return decision, True


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
    commands.add_parser(
        "init", help="create the MLflow store and the Dagster instance storage if missing"
    )

    evaluate = commands.add_parser("evaluate", help="evaluate registered model versions")
    evaluate.add_argument("--model", action="append", help="registered model name (repeatable)")
    evaluate.add_argument("--version", help="one version of --model (default: every version)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")

    demo = commands.add_parser(
        "demo", help="register the demo models, evaluate every version and print the report"
    )
    demo.add_argument("--json", action="store_true", help="print the report as JSON")

    gate = commands.add_parser(
        "gate",
        help="evaluate one version (or reuse a current decision) and exit 0 on pass, 1 on fail",
    )
    gate.add_argument("--model", required=True, help="registered model name")
    gate.add_argument("--version", required=True, help="registered model version")
    gate.add_argument(
        "--no-reuse", action="store_true", help="evaluate again even when a current decision exists"
    )
    gate.add_argument("--promote", action="store_true", help="run the promotion job afterwards")
    gate.add_argument("--json", action="store_true", help="print the decision as JSON")

    promote = commands.add_parser("promote", help="act on a version's stored gate decision")
    promote.add_argument("--model", required=True, help="registered model name")
    promote.add_argument("--version", required=True, help="registered model version")

    approve = commands.add_parser(
        "approve", help="record approval of a version's current passing decision"
    )
    approve.add_argument("--model", required=True, help="registered model name")
    approve.add_argument("--version", required=True, help="registered model version")
    approve.add_argument("--by", required=True, help="name of the approver")

    evidence = commands.add_parser(
        "evidence", help="print the item-level rows behind a version's stored gate decision"
    )
    evidence.add_argument("--model", required=True, help="registered model name")
    evidence.add_argument("--version", required=True, help="registered model version")
    evidence.add_argument("--failed-only", action="store_true", help="only rows that failed")
    evidence.add_argument("--limit", type=int, default=20, help="maximum rows to print")

    rollback = commands.add_parser(
        "rollback", help="point the champion alias back at the version it replaced"
    )
    rollback.add_argument("--model", required=True, help="registered model name")

    backfill = commands.add_parser(
        "backfill",
        help="evaluate a list or range of versions of one model as a Dagster backfill",
    )
    backfill.add_argument("--model", required=True, help="registered model name")
    backfill.add_argument(
        "--versions", default="all", help="versions such as '1,3-5', or 'all' (default)"
    )
    backfill.add_argument(
        "--webserver",
        default=os.environ.get("EVAL_PIPELINE_WEBSERVER_URL", DEFAULT_WEBSERVER_URL),
        help="Dagster webserver that queues the backfill (default: %(default)s)",
    )
    backfill.add_argument(
        "--in-process",
        action="store_true",
        help="evaluate here, one version after another, without a webserver or daemon",
    )
    backfill.add_argument(
        "--wait", action="store_true", help="wait for the backfill's runs and print their status"
    )
    backfill.add_argument(
        "--timeout", type=float, default=3600, help="seconds --wait waits (default: 3600)"
    )

    add_monitoring_commands(commands)

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
        default_dir = Path(os.environ.get("EVAL_PIPELINE_JARS_DIR") or _home() / "jars")
        for path in fetch_jars(args.jars_dir or default_dir):
            print(path)
        return EXIT_OK

    from eval_pipeline.core.partition_keys import ModelVersionRef
    from eval_pipeline.core.registry import list_model_versions
    from eval_pipeline.definitions import defs

    settings = defs.resources["mlflow"].settings
    if args.command == "init":
        return _init_stores(settings)
    if args.command == "register-demo-models":
        for ref in register_demo(defs):
            print(f"{ref.uri}  partition {ref.partition_key}")
        return EXIT_OK

    if args.command in ("gate", "promote", "approve", "rollback", "evidence"):
        return _run_gate_command(args, defs)

    if args.command in MONITORING_COMMANDS:
        return run_monitoring_command(args, defs)

    if args.command == "backfill":
        return _run_backfill(args, defs)

    if args.command == "demo":
        from eval_pipeline.core.demo_models import DEMO_MODEL_SPECS

        register_demo(defs)
        names = sorted({spec.registered_name for spec in DEMO_MODEL_SPECS})
        refs = list_model_versions(settings, names)
        # One version at a time, so each later version is gated against the champion that the
        # earlier ones produced.
        for ref in refs:
            evaluate_versions(defs, [ref], verbose=args.verbose)
            promote_versions(defs, [ref], verbose=args.verbose)
        return _print_report(defs, refs, args.json)
    elif args.command == "evaluate":
        if args.version and not args.model:
            raise ValueError("--version needs --model NAME.")
        if args.version and len(args.model) > 1:
            raise ValueError(
                f"--version {args.version} is ambiguous with several --model options "
                f"{args.model}; give one --model with --version."
            )
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

    if args.command == "evaluate":
        evaluate_versions(defs, refs, verbose=args.verbose)

    return _print_report(defs, refs, args.json)


def _init_stores(settings) -> int:
    """Create the embedded stores once, before several processes could race to create them."""
    from dagster import DagsterInstance

    settings.client().search_experiments(max_results=1)
    _ensure_dagster_home()
    with DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
    print(f"MLflow store {settings.tracking_uri} and Dagster instance {instance.root_directory}")
    return EXIT_OK


def _run_backfill(args: argparse.Namespace, defs) -> int:
    """Evaluate the selected versions through the webserver's queue, or here in order."""
    from eval_pipeline.automation.webserver import DagsterWebserverClient
    from eval_pipeline.core.registry import list_model_versions
    from eval_pipeline.core.watch import parse_version_spec
    from eval_pipeline.jobs import TRIGGER_TAG
    from eval_pipeline.partitions import model_versions_partitions

    settings = defs.resources["mlflow"].settings
    registered = list_model_versions(settings, [args.model])
    numbers = parse_version_spec(args.versions, [int(ref.version) for ref in registered])
    refs = [ref for ref in registered if int(ref.version) in numbers]
    if not refs:
        raise ValueError(f"{args.model} has no registered versions to backfill.")
    if args.in_process:
        evaluate_versions(defs, refs, verbose=args.verbose)
        return _print_report(defs, refs, as_json=False)

    client = DagsterWebserverClient(args.webserver)
    job_name = "model_evaluation_job"
    selector = client.find_job(job_name)
    keys = [ref.partition_key for ref in refs]
    for key in keys:
        client.add_dynamic_partition(selector, model_versions_partitions.name, key)
    backfill_id = client.launch_backfill(
        selector,
        job_name,
        keys,
        tags={TRIGGER_TAG: "backfill"},
        title=f"{args.model} versions {args.versions}",
    )
    print(
        f"Backfill {backfill_id} queued {len(keys)} evaluation run(s) of {args.model} "
        f"(versions {', '.join(ref.version for ref in refs)}): "
        f"{client.url}/runs/b/{backfill_id}"
    )
    if not args.wait:
        return EXIT_OK
    runs = wait_for_backfill(client, backfill_id, len(keys), args.timeout)
    for run in runs:
        print(f"  {run['status']:<8} {client.url}/runs/{run['runId']}")
    if any(run["status"] != "SUCCESS" for run in runs):
        print(
            "A failed evaluation run is either blocked by its gate checks (the run's Checks tab "
            "and `eval-pipeline report --model NAME` show which) or failed with an error (its "
            "logs say which)."
        )
    return EXIT_OK if all(run["status"] == "SUCCESS" for run in runs) else EXIT_FAILED


def wait_for_backfill(client, backfill_id: str, expected_runs: int, timeout: float) -> list:
    """Poll a backfill until each of its runs has ended; return the runs."""
    import time

    terminal = {"SUCCESS", "FAILURE", "CANCELED"}
    deadline = time.monotonic() + timeout
    while True:
        runs = client.backfill(backfill_id)["runs"]
        if len(runs) >= expected_runs and all(run["status"] in terminal for run in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Backfill {backfill_id} did not finish within {timeout:.0f} s "
                f"({len(runs)} of {expected_runs} runs launched); is dagster-daemon running?"
            )
        time.sleep(2)


def _print_report(defs, refs, as_json: bool) -> int:
    from eval_pipeline.report import build_report, format_report, next_steps

    report = build_report(defs, refs)
    if as_json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_report(report))
        print(next_steps(defs))
    return EXIT_OK


def _run_gate_command(args: argparse.Namespace, defs) -> int:
    from eval_pipeline.core.partition_keys import ModelVersionRef
    from eval_pipeline.core.promotion import record_approval, rollback
    from eval_pipeline.core.registry import get_model_version
    from eval_pipeline.report import format_decision

    settings = defs.resources["mlflow"].settings
    promotion = defs.resources["promotion"]
    if args.command == "rollback":
        current, previous = rollback(settings, args.model, promotion.champion_alias)
        print(
            f"{args.model}: {promotion.champion_alias} moved from version {current} back to "
            f"version {previous}."
        )
        return EXIT_OK

    ref = ModelVersionRef(args.model, args.version)
    get_model_version(settings, ref)
    # Loading the policy first reports a broken policy file before any other work.
    defs.resources["policy"].load()
    if args.command == "approve":
        if not args.by.strip():
            raise ValueError("--by is empty; give the name of the person approving.")
        decision, current = _decision_state(defs, ref)
        if decision is not None and current and decision["outcome"] != "pass":
            failed = ", ".join(json.loads(decision["failed_gates"]))
            raise ValueError(
                f"{ref.uri} cannot be approved: its current gate decision "
                f"{decision['decision_id']} failed ({failed}). Only a passing version can be "
                "approved for production."
            )
        if decision is None or not current:
            raise ValueError(
                f"{ref.uri} has no current gate decision to approve; run "
                f"`eval-pipeline gate --model {ref.name} --version {ref.version}` first."
            )
        record_approval(settings, ref, decision["decision_id"], args.by)
        print(
            f"Recorded approval of decision {decision['decision_id']} for {ref.uri} by {args.by}."
        )
        return EXIT_OK
    if args.command == "evidence":
        return _print_evidence(args, defs, ref)
    if args.command == "promote":
        for action in promote_versions(defs, [ref], verbose=args.verbose):
            print(f"{action['model_uri']}: {action['action']}")
        return EXIT_OK

    decision, current = _decision_state(defs, ref)
    reused = current and not args.no_reuse
    if not reused:
        evaluate_versions(defs, [ref], verbose=args.verbose)
        decision, current = _decision_state(defs, ref)
    if decision is None:
        raise RuntimeError(f"Evaluation of {ref.uri} finished without a gate decision.")
    actions = promote_versions(defs, [ref], verbose=args.verbose) if args.promote else []
    if args.json:
        payload = {**decision, "reused": reused, "promotion": actions}
        payload["evidence"] = {
            "table": defs.resources["lakehouse"].table_path("gold", "item_results"),
            "delta_version": decision["item_results_delta_version"],
            "where": {"dataset_name": decision["dataset_name"], "partition_key": ref.partition_key},
        }
        for field in ("failed_gates", "reasons", "gate_results"):
            payload[field] = json.loads(payload[field])
        print(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    else:
        print(format_decision(decision, reused=reused))
        for action in actions:
            print(f"Promotion: {action['action']}")
    return EXIT_OK if decision["outcome"] == "pass" else EXIT_FAILED


def _print_evidence(args: argparse.Namespace, defs, ref) -> int:
    from tabulate import tabulate

    from eval_pipeline.gates.decisions import decision_evidence

    decision, current = _decision_state(defs, ref)
    if decision is None:
        raise ValueError(
            f"{ref.uri} has no gate decision; run `eval-pipeline gate --model {ref.name} "
            f"--version {ref.version}` first."
        )
    resources = defs.resources
    session = resources["spark"].get_session()
    rows = decision_evidence(session, resources["lakehouse"], decision, args.failed_only)
    columns = ["item_id", "region", "noise_level", "output", "reference", "passed", "error_code"]
    frame = rows.select(*columns).orderBy("item_id", "noise_level").limit(args.limit).toPandas()
    print(
        f"Decision {decision['decision_id']} ({decision['outcome']}, "
        f"{'current' if current else 'stale'}): gold/item_results at Delta version "
        f"{decision['item_results_delta_version']}, partition {decision['partition_key']}, "
        f"{rows.count()} rows{' that failed' if args.failed_only else ''}"
    )
    print(tabulate(frame, headers="keys", tablefmt="simple", showindex=False))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
