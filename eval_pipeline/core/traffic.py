"""Synthetic production traffic for the monitoring demo and tests.

Requests are benchmark sentences, some made noisy with the benchmark's own noise functions,
with outputs from the demo glossary model run in-process. The scenario sets the regional mix,
the noise mix, the day a drift starts (both mixes change) and the day a latency regression
starts. The output is deterministic for a given scenario and benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from eval_pipeline.core.demo_models import EXPLAINER_MODEL, GlossaryModel, build_glossary
from eval_pipeline.core.noise import DEFAULT_NOISE_SPECS, apply_noise
from eval_pipeline.core.prompts import get_template


@dataclass(frozen=True)
class TrafficScenario:
    """A week (or any number of days) of requests to one served model version."""

    start_date: date
    days: int = 7
    requests_per_day: int = 400
    model_name: str = EXPLAINER_MODEL
    model_version: str = "2"
    region_mix: Mapping[str, float] = field(
        default_factory=lambda: {"MX": 0.45, "PE": 0.35, "SV": 0.20}
    )
    noise_mix: Mapping[str, float] = field(
        default_factory=lambda: {"clean": 0.85, "ocr": 0.05, "typo": 0.05, "no_accents": 0.05}
    )
    drift_start_day: int | None = 5
    """1-based day from which the drifted mixes apply; None keeps the mixes all along."""
    drifted_region_mix: Mapping[str, float] = field(
        default_factory=lambda: {"MX": 0.20, "PE": 0.25, "SV": 0.55}
    )
    drifted_noise_mix: Mapping[str, float] = field(
        default_factory=lambda: {"clean": 0.30, "ocr": 0.35, "typo": 0.25, "no_accents": 0.10}
    )
    latency_regression_day: int | None = None
    """1-based day from which latency is multiplied by ``latency_regression_factor``."""
    latency_regression_factor: float = 3.0
    latency_median_ms: float = 180.0
    latency_sigma: float = 0.35
    """Standard deviation of the logarithm of latency (lognormal)."""
    error_share: float = 0.005
    region_known_share: float = 0.8
    """Share of requests whose log carries the region; the others leave it empty."""
    labelled_share: float = 0.1
    """Share of requests that carry a reference answer from user feedback or a judge."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.days < 1 or self.requests_per_day < 1:
            raise ValueError(
                f"invalid scenario: days {self.days} and requests_per_day "
                f"{self.requests_per_day} must both be >= 1"
            )
        for name in ("region_mix", "noise_mix", "drifted_region_mix", "drifted_noise_mix"):
            mix = getattr(self, name)
            if not mix or sum(mix.values()) <= 0 or min(mix.values()) < 0:
                raise ValueError(f"invalid {name} {dict(mix)}: expected non-negative shares")

    def day(self, index: int) -> date:
        """Return the date of the 1-based day ``index``."""
        return self.start_date + timedelta(days=index - 1)

    def is_drifted(self, index: int) -> bool:
        return self.drift_start_day is not None and index >= self.drift_start_day


def _draw(rng: np.random.Generator, mix: Mapping[str, float], size: int) -> np.ndarray:
    keys = list(mix)
    shares = np.array([mix[key] for key in keys], dtype=np.float64)
    return rng.choice(keys, size=size, p=shares / shares.sum())


def generate_traffic(scenario: TrafficScenario, benchmark: pd.DataFrame) -> pd.DataFrame:
    """Return one row per request of the scenario, in the request log format.

    ``benchmark`` contains accepted benchmark rows (``item_id``, ``region``, ``text``, ``term``,
    ``reference``). Columns: ``request_id``, ``timestamp`` (ISO 8601, UTC), ``model_name``,
    ``model_version``, ``region`` (None when unknown), ``input_text``, ``output`` (None on
    error), ``latency_ms``, ``status`` (``ok`` or ``error``), ``error_code``, ``label``
    (the reference for labelled requests) and ``noise_level`` (the truth, for tests).
    """
    model = GlossaryModel(fuzzy=True)
    model.glossary = build_glossary(benchmark.to_dict("records"))
    template = get_template("define_term@1")
    specs = {spec.level: spec for spec in DEFAULT_NOISE_SPECS}
    by_region = {region: rows for region, rows in benchmark.groupby("region")}
    frames = []
    for index in range(1, scenario.days + 1):
        rng = np.random.default_rng([scenario.seed, index])
        drifted = scenario.is_drifted(index)
        size = scenario.requests_per_day
        regions = _draw(rng, scenario.drifted_region_mix if drifted else scenario.region_mix, size)
        levels = _draw(rng, scenario.drifted_noise_mix if drifted else scenario.noise_mix, size)
        rows = []
        for number, (region, level) in enumerate(zip(regions, levels, strict=True)):
            candidates = by_region.get(region)
            if candidates is None:
                raise ValueError(
                    f"region {region!r} of the scenario has no benchmark items; expected one "
                    f"of {sorted(by_region)}"
                )
            item = candidates.iloc[int(rng.integers(len(candidates)))]
            request_id = f"{scenario.day(index).isoformat()}-{number:05d}"
            text = apply_noise(item["text"], specs[level], request_id, scenario.seed)
            term = apply_noise(item["term"], specs[level], f"{request_id}:term", scenario.seed)
            rows.append(
                {
                    "request_id": request_id,
                    "region": region,
                    "input_text": text,
                    "prompt": template.render(text=text, term=term),
                    "reference": item["reference"],
                    "noise_level": level,
                }
            )
        day = pd.DataFrame(rows)
        day["output"] = model.predict(None, day[["prompt", "region"]])
        seconds = np.sort(rng.uniform(0, 86_400, size))
        start = datetime.combine(scenario.day(index), datetime.min.time(), tzinfo=UTC)
        day["timestamp"] = [
            (start + timedelta(seconds=float(s))).isoformat().replace("+00:00", "Z")
            for s in seconds
        ]
        latency = rng.lognormal(np.log(scenario.latency_median_ms), scenario.latency_sigma, size)
        regression = scenario.latency_regression_day
        if regression is not None and index >= regression:
            latency = latency * scenario.latency_regression_factor
        day["latency_ms"] = np.round(latency, 3)
        failed = rng.random(size) < scenario.error_share
        day["status"] = np.where(failed, "error", "ok")
        day["error_code"] = np.where(failed, "model_error", None)
        day.loc[failed, "output"] = None
        known = rng.random(size) < scenario.region_known_share
        day["region"] = day["region"].where(known, None)
        labelled = (rng.random(size) < scenario.labelled_share) & ~failed
        day["label"] = day["reference"].where(labelled, None)
        day["model_name"] = scenario.model_name
        day["model_version"] = scenario.model_version
        frames.append(day)
    traffic = pd.concat(frames, ignore_index=True)
    columns = [
        "request_id", "timestamp", "model_name", "model_version", "region", "input_text",
        "output", "latency_ms", "status", "error_code", "label", "noise_level",
    ]  # fmt: skip
    return traffic[columns]


# Rows that break one validation rule each, appended by write_traffic_files to exercise the
# quarantine. The reason codes are those of eval_pipeline.core.inference_log.
INVALID_ROW_KINDS = (
    "missing_field",
    "invalid_latency",
    "invalid_status",
    "invalid_timestamp",
    "outside_partition",
    "duplicate_request_id",
)


def _invalid_rows(day: pd.DataFrame, day_date: date) -> list[dict]:
    template = {
        key: (None if pd.isna(value) else value)
        for key, value in day.iloc[0].to_dict().items()
        if key != "noise_level"
    }
    stamp = day_date.isoformat()
    other_day = (day_date - timedelta(days=1)).isoformat()
    return [
        {**template, "request_id": f"{stamp}-bad-1", "model_version": None},
        {**template, "request_id": f"{stamp}-bad-2", "latency_ms": -5.0},
        {**template, "request_id": f"{stamp}-bad-3", "status": "timeout?"},
        {**template, "request_id": f"{stamp}-bad-4", "timestamp": "yesterday noon"},
        {**template, "request_id": f"{stamp}-bad-5", "timestamp": f"{other_day}T12:00:00Z"},
        dict(template),
    ]


def write_traffic_files(
    traffic: pd.DataFrame,
    folder: str | Path,
    file_format: str = "jsonl",
    add_invalid_rows: bool = False,
) -> list[Path]:
    """Write one ``<folder>/<YYYY-MM-DD>/requests.<format>`` file per day; return the paths.

    The truth column ``noise_level`` is left out, as a real request log would not have it.
    With ``add_invalid_rows`` each JSONL file also gets one row per kind in
    ``INVALID_ROW_KINDS`` and one line that is not JSON.
    """
    if file_format not in ("jsonl", "parquet"):
        raise ValueError(f"invalid file_format {file_format!r}: expected 'jsonl' or 'parquet'")
    if add_invalid_rows and file_format != "jsonl":
        raise ValueError("invalid rows can only be written to JSONL files")
    paths = []
    dates = traffic["timestamp"].str.slice(0, 10)
    for day_text, day in traffic.groupby(dates, sort=True):
        target = Path(folder) / day_text / f"requests.{file_format}"
        target.parent.mkdir(parents=True, exist_ok=True)
        logged = day.drop(columns=["noise_level"], errors="ignore")
        if file_format == "parquet":
            logged.to_parquet(target, index=False)
        else:
            records = logged.astype(object).where(logged.notna(), None).to_dict("records")
            if add_invalid_rows:
                records += _invalid_rows(day, date.fromisoformat(day_text))
            lines = [json.dumps(record, ensure_ascii=False) for record in records]
            if add_invalid_rows:
                lines.append('{"request_id": "truncated", "timestamp": ')
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(target)
    return paths
