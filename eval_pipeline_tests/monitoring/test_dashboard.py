import threading

import pandas as pd
import pytest

from eval_pipeline.core.monitoring import traffic_metrics
from eval_pipeline.core.monitoring_policy import MonitoringPolicy
from eval_pipeline.core.noise import NOISE_LEVELS
from eval_pipeline.core.stats import wilson_interval
from eval_pipeline.monitoring.dashboard import (
    SECTIONS,
    DashboardData,
    flagged_days,
    render_dashboard,
    serve_dashboard,
)

DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]


def summary_rows(version: str, base: float) -> list[dict]:
    rows = []
    for region in ("MX", "PE", "SV"):
        for offset, level in enumerate(NOISE_LEVELS):
            passes = int((base - 0.05 * offset) * 80)
            low, high = wilson_interval(passes, 80)
            rows.append(
                {"slice": "cell", "region": region, "noise_level": level, "n": 80,
                 "passes": passes, "pass_rate": passes / 80, "ci_low": low, "ci_high": high}
            )  # fmt: skip
    low, high = wilson_interval(int(base * 960), 960)
    rows.append(
        {"slice": "overall", "region": "ALL", "noise_level": "ALL", "n": 960,
         "passes": int(base * 960), "pass_rate": base, "ci_low": low, "ci_high": high}
    )  # fmt: skip
    key = f"regional-explainer--v{version}"
    return [
        {**row, "model_name": "regional-explainer", "model_version": version, "partition_key": key}
        for row in rows
    ]


def dashboard_data() -> DashboardData:
    requests = []
    for index, day in enumerate(DAYS):
        for number in range(120):
            requests.append(
                {
                    "request_date": day,
                    "model_name": "regional-explainer",
                    "model_version": "2",
                    "region": ["MX", "PE", "SV"][number % 3],
                    "status": "ok",
                    "latency_ms": 150.0 + number + 400 * index,
                    "label_passed": number % 10 != 0 if number % 4 == 0 else None,
                    "estimated_noise_level": "clean" if number % 5 else "ocr",
                }
            )
    metrics = traffic_metrics(pd.DataFrame(requests))
    drift = pd.DataFrame(
        [
            {"request_date": day, "model_name": "regional-explainer", "model_version": "2",
             "region": "ALL", "reference": reference, "feature": feature,
             "psi": 0.05 + 0.3 * index, "js_distance": 0.1,
             "embedding_distance": 0.01 * (index + 1) if feature == "embedding" else None}
            for index, day in enumerate(DAYS)
            for reference in ("benchmark", "window")
            for feature in ("oov_share", "embedding")
        ]
    )  # fmt: skip
    alerts = pd.DataFrame(
        [
            {"request_date": DAYS[2], "check_name": "input_drift_within_threshold",
             "severity": "ERROR", "message": "PSI of oov_share against the benchmark 0.65"},
            {"request_date": DAYS[2], "check_name": "latency_within_budget",
             "severity": "WARN", "message": "latency p95 (ms) 1000"},
        ]
    )  # fmt: skip
    live = pd.DataFrame(
        [
            {"request_date": day, "model_name": "regional-explainer", "model_version": "2",
             "offline_pass_rate": 0.95, "live_weighted_pass_rate": 0.97 - 0.02 * index,
             "ci_low": 0.94 - 0.02 * index, "ci_high": 0.99, "labelled": 30,
             "labelled_pass_rate": 0.9}
            for index, day in enumerate(DAYS)
        ]
    )  # fmt: skip
    gates = pd.DataFrame(
        [
            {"model_name": "regional-explainer", "model_version": "1", "outcome": "fail",
             "failed_gates": '["region_minimum"]', "decided_at": "2025-02-27"},
            {"model_name": "regional-explainer", "model_version": "2", "outcome": "pass",
             "failed_gates": "[]", "decided_at": "2025-02-28"},
        ]
    )  # fmt: skip
    return DashboardData(
        eval_summary=pd.DataFrame(summary_rows("1", 0.7) + summary_rows("2", 0.95)),
        gate_decisions=gates,
        traffic_metrics=metrics,
        input_drift=drift,
        alerts=alerts,
        live_accuracy=live,
    )


def test_render_writes_page_and_plots(tmp_path):
    rendered = render_dashboard(dashboard_data(), tmp_path, MonitoringPolicy(), source="test")
    html = rendered.index_path.read_text(encoding="utf-8")
    for section_id, title in SECTIONS.items():
        assert f'id="{section_id}"' in html
        assert title in html
    assert set(rendered.plots) == {"accuracy", "versions", "traffic", "latency", "drift",
                                   "live-accuracy"}  # fmt: skip
    for path in rendered.plots.values():
        assert path.read_bytes().startswith(b"\x89PNG")
    assert "input_drift_within_threshold" in html
    assert rendered.plot_markdown("accuracy").startswith("![accuracy](data:image/png;base64,")


def test_render_empty_tables(tmp_path):
    rendered = render_dashboard(DashboardData(), tmp_path, MonitoringPolicy())
    html = rendered.index_path.read_text(encoding="utf-8")
    assert "No gate decision yet." in html
    assert all(path.is_file() for path in rendered.plots.values())


def test_flagged_days():
    days = flagged_days(dashboard_data().alerts)
    assert days.to_dict("records") == [
        {"request_date": DAYS[2], "severity": "ERROR",
         "checks": "input_drift_within_threshold, latency_within_budget", "alerts": 2}
    ]  # fmt: skip


def test_serve_requires_page(tmp_path):
    with pytest.raises(FileNotFoundError, match="monitoring-demo"):
        serve_dashboard(tmp_path)


@pytest.mark.slow
def test_page_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    folder = tmp_path / "dashboard"
    render_dashboard(dashboard_data(), folder, MonitoringPolicy(), source="test")
    server = serve_dashboard(folder, port=0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with playwright.sync_playwright() as runner:
            browser = runner.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            response = page.goto(url)
            assert response.status == 200
            headings = page.locator("h2").all_inner_texts()
            assert headings == list(SECTIONS.values())
            widths = page.eval_on_selector_all(
                "img", "images => images.map(image => image.naturalWidth)"
            )
            assert len(widths) == 6
            assert all(width > 0 for width in widths)
            assert page.locator("#gates table").count() == 1
            assert "ERROR" in page.locator("#alerts").inner_text()
            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            browser.close()
        assert screenshot.stat().st_size > 10_000
    finally:
        server.shutdown()
        server.server_close()
