import dagster as dg

from eval_pipeline.definitions import defs
from eval_pipeline.monitoring.assets import monitoring_days
from eval_pipeline.resources import build_resources

DAILY_ASSETS = {
    dg.AssetKey(["bronze", "inference_requests"]),
    dg.AssetKey(["bronze", "inference_quarantine"]),
    dg.AssetKey(["silver", "request_features"]),
    dg.AssetKey(["gold", "traffic_metrics"]),
    dg.AssetKey(["gold", "input_drift"]),
    dg.AssetKey(["gold", "monitoring_alerts"]),
    dg.AssetKey(["gold", "live_accuracy"]),
}
UNPARTITIONED = {
    dg.AssetKey(["silver", "benchmark_features"]),
    dg.AssetKey(["reports", "governance_dashboard"]),
}


def test_monitoring_assets_defined():
    graph = defs.resolve_asset_graph()
    for key in DAILY_ASSETS:
        assert graph.get(key).partitions_def == monitoring_days, key
        assert graph.get(key).description, key
    for key in UNPARTITIONED:
        assert graph.get(key).partitions_def is None, key
        assert graph.get(key).description, key


def test_daily_job_runs_monitoring_checks():
    job = defs.resolve_job_def("daily_monitoring_job")
    names = {key.name for key in job.asset_layer.asset_graph.asset_check_keys}
    assert names == {
        "latency_within_budget",
        "error_rate_within_budget",
        "region_share_stable",
        "labelled_pass_rate_stable",
        "input_drift_within_threshold",
        "embedding_drift_within_threshold",
    }
    assert job.partitions_def == monitoring_days


def test_monitoring_jobs_resolve():
    for name in ("monitoring_reference_job", "daily_monitoring_job", "dashboard_job"):
        assert defs.resolve_job_def(name).name == name


def test_monitoring_resource_defaults(tmp_path):
    monitoring = build_resources({"EVAL_PIPELINE_HOME": str(tmp_path)})["monitoring"]
    assert monitoring.traffic_dir == str(tmp_path / "traffic")
    assert monitoring.dashboard_dir == str(tmp_path / "dashboard")
    assert monitoring.trace_experiment == ""
    assert monitoring.policy_path == "monitoring_policy.yaml"


def test_monitoring_resource_environment(tmp_path):
    monitoring = build_resources(
        {
            "EVAL_PIPELINE_HOME": str(tmp_path),
            "EVAL_PIPELINE_TRAFFIC_DIR": "/data/landing",
            "EVAL_PIPELINE_TRACE_EXPERIMENT": "serving",
            "EVAL_PIPELINE_MONITORING_POLICY": "/etc/monitoring.yaml",
            "EVAL_PIPELINE_DASHBOARD_DIR": "/srv/dashboard",
        }
    )["monitoring"]
    assert monitoring.traffic_dir == "/data/landing"
    assert monitoring.trace_experiment == "serving"
    assert monitoring.policy_path == "/etc/monitoring.yaml"
    assert monitoring.dashboard_dir == "/srv/dashboard"
