"""Command line of monitoring: `eval-pipeline monitoring-demo` and `eval-pipeline dashboard`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

MONITORING_COMMANDS = ("monitoring-demo", "dashboard")

DEFAULT_DASHBOARD_PORT = 8050


def add_monitoring_commands(commands) -> None:
    """Add the monitoring subcommands to the `eval-pipeline` subparsers."""
    demo = commands.add_parser(
        "monitoring-demo",
        help="feed synthetic traffic with a drift, run the daily monitoring, print flagged days",
    )
    demo.add_argument("--days", type=int, default=7, help="days of traffic (default: 7)")
    demo.add_argument(
        "--drift-day", type=int, default=5, help="1-based day the input drift starts (default: 5)"
    )
    demo.add_argument(
        "--latency-day",
        type=int,
        default=6,
        help="1-based day latency triples; 0 keeps latency steady (default: 6)",
    )
    demo.add_argument(
        "--requests-per-day", type=int, default=400, help="requests per day (default: 400)"
    )
    demo.add_argument(
        "--start-date",
        type=date.fromisoformat,
        help="first day, YYYY-MM-DD (default: the given number of days before today, UTC)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the traffic (default: 0)")
    demo.add_argument(
        "--skip-evaluation",
        action="store_true",
        help="do not evaluate the demo models when they have no offline summary yet",
    )

    dashboard = commands.add_parser(
        "dashboard",
        help="serve the governance dashboard on 127.0.0.1",
        description="Regenerate the governance dashboard from the Gold tables and serve it on "
        "127.0.0.1 only, until Ctrl-C.",
    )
    dashboard.add_argument(
        "--port",
        type=int,
        default=DEFAULT_DASHBOARD_PORT,
        help=f"TCP port (default: {DEFAULT_DASHBOARD_PORT})",
    )
    dashboard.add_argument(
        "--no-refresh",
        action="store_true",
        help="serve the page as it is instead of regenerating it from the Gold tables first",
    )


def run_monitoring_command(args: argparse.Namespace, defs) -> int:
    """Run a command of MONITORING_COMMANDS; return its exit code."""
    if args.command == "dashboard":
        return _serve(args, defs)
    return _monitoring_demo(args, defs)


def _execute(defs, job_name: str, verbose: bool, partition_key: str | None = None):
    from dagster import DagsterInstance

    from eval_pipeline.cli import _ensure_dagster_home, _failure_message, _logger_config

    _ensure_dagster_home()
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        instance=DagsterInstance.get(),
        partition_key=partition_key,
        run_config=_logger_config(verbose),
        raise_on_error=False,
    )
    if not result.success:
        where = f" for {partition_key}" if partition_key else ""
        raise RuntimeError(
            f"{job_name} failed{where} (Dagster run {result.run_id}): {_failure_message(result)} "
            "Run again with --verbose for the step logs."
        )
    return result


def _has_summary(defs, ref) -> bool:
    from eval_pipeline.lakehouse import read_rows

    resources = defs.resources
    session = resources["spark"].get_session()
    rows = read_rows(
        session,
        resources["lakehouse"].table_path("gold", "eval_summary"),
        {"dataset_name": resources["dataset"].name, "partition_key": ref.partition_key},
    )
    return rows is not None and rows.limit(1).count() > 0


def _prepare_models(defs, args):
    """Register the demo models, evaluate the explainer versions when needed; return the served."""
    from eval_pipeline.cli import evaluate_versions, promote_versions, register_demo
    from eval_pipeline.core.demo_models import EXPLAINER_MODEL

    refs = [ref for ref in register_demo(defs) if ref.name == EXPLAINER_MODEL]
    # The second demo version is the one that passes every gate, so it is the one served.
    served = refs[1]
    if args.skip_evaluation:
        _execute(defs, "benchmark_refresh_job", args.verbose)
        return served
    pending = [ref for ref in refs if not _has_summary(defs, ref)]
    if pending:
        print(
            f"Evaluating {len(refs)} versions of {EXPLAINER_MODEL} first, so the dashboard "
            "has offline accuracy and gate outcomes (about three minutes) ...",
            file=sys.stderr,
        )
        # In version order, so each version is gated against the champion before it.
        for ref in refs:
            evaluate_versions(defs, [ref], verbose=args.verbose)
            promote_versions(defs, [ref], verbose=args.verbose)
    else:
        _execute(defs, "benchmark_refresh_job", args.verbose)
    return served


def _day_summary(defs, day: str) -> tuple[int, int, list[dict]]:
    from eval_pipeline.lakehouse import read_rows

    resources = defs.resources
    session = resources["spark"].get_session()
    lakehouse = resources["lakehouse"]
    counts = []
    for table in (("bronze", "inference_requests"), ("bronze", "inference_quarantine")):
        rows = read_rows(session, lakehouse.table_path(*table), {"request_date": day})
        counts.append(rows.count() if rows is not None else 0)
    alerts = read_rows(
        session, lakehouse.table_path("gold", "monitoring_alerts"), {"request_date": day}
    )
    alert_rows = [row.asDict() for row in alerts.collect()] if alerts is not None else []
    return counts[0], counts[1], alert_rows


def _monitoring_demo(args: argparse.Namespace, defs) -> int:
    from eval_pipeline.core.traffic import TrafficScenario, generate_traffic, write_traffic_files

    if args.days < 1 or args.requests_per_day < 1:
        raise ValueError("--days and --requests-per-day must be at least 1.")
    if not 1 <= args.drift_day <= args.days:
        raise ValueError(f"--drift-day {args.drift_day} must lie in 1..{args.days}.")
    start = args.start_date or datetime.now(UTC).date() - timedelta(days=args.days)
    served = _prepare_models(defs, args)
    _execute(defs, "monitoring_reference_job", args.verbose)

    scenario = TrafficScenario(
        start_date=start,
        days=args.days,
        requests_per_day=args.requests_per_day,
        model_name=served.name,
        model_version=served.version,
        drift_start_day=args.drift_day,
        latency_regression_day=args.latency_day or None,
        seed=args.seed,
    )
    benchmark = defs.resources["dataset"].ingest().accepted
    traffic = generate_traffic(scenario, benchmark)
    folder = Path(defs.resources["monitoring"].traffic_dir)
    paths = write_traffic_files(traffic, folder, add_invalid_rows=True)
    print(
        f"Wrote {len(traffic)} synthetic requests to {served.uri} over {args.days} days from "
        f"{start} into {len(paths)} files under {folder} (input drift from day {args.drift_day}"
        + (f", latency x3 from day {args.latency_day}" if args.latency_day else "")
        + ")."
    )

    flagged = []
    for index in range(1, args.days + 1):
        day = scenario.day(index).isoformat()
        print(f"Monitoring day {index} ({day}) ...", file=sys.stderr)
        _execute(defs, "daily_monitoring_job", args.verbose, partition_key=day)
        accepted, quarantined, alerts = _day_summary(defs, day)
        status = "ok"
        if alerts:
            flagged.append(index)
            severity = "ERROR" if any(a["severity"] == "ERROR" for a in alerts) else "WARN"
            checks = ", ".join(sorted({a["check_name"] for a in alerts}))
            status = f"FLAGGED {severity}: {checks}"
        print(
            f"day {index} {day}: {accepted} requests, {quarantined} quarantined, "
            f"{len(alerts)} alerts; {status}"
        )

    _execute(defs, "dashboard_job", args.verbose)
    path = Path(defs.resources["monitoring"].dashboard_dir) / "index.html"
    print(f"Flagged days: {', '.join(map(str, flagged)) or 'none'} of 1..{args.days}.")
    print(f"Dashboard: {path}. Serve it with `make dashboard` (http://127.0.0.1:8050/).")
    return 0


def _serve(args: argparse.Namespace, defs) -> int:
    from eval_pipeline.monitoring.dashboard import serve_dashboard

    if not args.no_refresh:
        _execute(defs, "dashboard_job", args.verbose)
    server = serve_dashboard(defs.resources["monitoring"].dashboard_dir, port=args.port)
    host, port = server.server_address[:2]
    print(f"Serving the governance dashboard on http://{host}:{port}/ (Ctrl-C stops it).")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
