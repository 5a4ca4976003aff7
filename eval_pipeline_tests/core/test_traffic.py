from datetime import date

import pytest

from eval_pipeline.core.ingest import ingest_files
from eval_pipeline.core.traffic import TrafficScenario, generate_traffic
from eval_pipeline.resources import packaged_benchmark_path


@pytest.fixture(scope="module")
def benchmark():
    return ingest_files("regional_es", [packaged_benchmark_path()]).accepted


def scenario(**overrides):
    return TrafficScenario(
        start_date=date(2025, 3, 1),
        days=6,
        requests_per_day=300,
        drift_start_day=4,
        latency_regression_day=5,
        **overrides,
    )


def test_traffic_is_deterministic(benchmark):
    first = generate_traffic(scenario(), benchmark)
    second = generate_traffic(scenario(), benchmark)
    assert first.equals(second)
    assert not first.equals(generate_traffic(scenario(seed=1), benchmark))


def test_traffic_shape(benchmark):
    traffic = generate_traffic(scenario(), benchmark)
    assert len(traffic) == 6 * 300
    assert traffic["request_id"].is_unique
    days = traffic["timestamp"].str.slice(0, 10)
    assert sorted(days.unique()) == [f"2025-03-0{day}" for day in range(1, 7)]
    assert set(traffic["status"]) <= {"ok", "error"}
    assert traffic.loc[traffic["status"] == "error", "output"].isna().all()


def test_drift_changes_mixes_from_its_day(benchmark):
    traffic = generate_traffic(scenario(), benchmark)
    day = traffic["timestamp"].str.slice(8, 10).astype(int)
    before, after = traffic[day < 4], traffic[day >= 4]
    clean_before = (before["noise_level"] == "clean").mean()
    clean_after = (after["noise_level"] == "clean").mean()
    assert clean_before == pytest.approx(0.85, abs=0.04)
    assert clean_after == pytest.approx(0.30, abs=0.04)
    assert (after["region"] == "SV").sum() > 2 * (before["region"] == "SV").sum()


def test_latency_regression_from_its_day(benchmark):
    traffic = generate_traffic(scenario(), benchmark)
    day = traffic["timestamp"].str.slice(8, 10).astype(int)
    before = traffic.loc[day < 5, "latency_ms"].median()
    after = traffic.loc[day >= 5, "latency_ms"].median()
    assert before == pytest.approx(180, rel=0.1)
    assert after / before == pytest.approx(3.0, rel=0.1)


def test_labels_and_unknown_regions(benchmark):
    traffic = generate_traffic(scenario(), benchmark)
    assert traffic["label"].notna().mean() == pytest.approx(0.1, abs=0.03)
    assert traffic["region"].isna().mean() == pytest.approx(0.2, abs=0.03)


def test_scenario_rejects_bad_mix():
    with pytest.raises(ValueError, match="region_mix"):
        TrafficScenario(start_date=date(2025, 1, 1), region_mix={"MX": -1.0})
