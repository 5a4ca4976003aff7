"""The monitoring policy: thresholds of the post-deployment checks, validated with pydantic.

Each rule has a WARN and an ERROR threshold. A slice with fewer requests than the rule's
``min_n`` is recorded but not judged, because small samples swing too much to alert on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from eval_pipeline.core.features import NUMERIC_FEATURES
from eval_pipeline.core.noise import NOISE_LEVELS
from eval_pipeline.core.policy import PolicyError

DEFAULT_MONITORING_POLICY_PATH = Path(__file__).resolve().parents[2] / "monitoring_policy.yaml"

FeatureName = Literal[NUMERIC_FEATURES]  # type: ignore[valid-type]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _WarnErrorSection(_Section):
    """A maximum with two levels: above ``warn`` the check warns, above ``error`` it errs."""

    enabled: bool = True
    min_n: int = Field(30, ge=1)
    warn: float = Field(gt=0.0)
    error: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _check_order(self):
        if self.error < self.warn:
            raise ValueError(f"error threshold {self.error} is below warn threshold {self.warn}")
        return self


class LatencyRule(_WarnErrorSection):
    """Maximum latency percentile, in milliseconds, over requests without an error."""

    percentile: Literal[50, 95, 99] = 95
    warn: float = Field(600.0, gt=0.0)
    error: float = Field(1200.0, gt=0.0)


class ErrorRateRule(_WarnErrorSection):
    """Maximum share of requests that ended in an error."""

    min_n: int = Field(50, ge=1)
    warn: float = Field(0.03, gt=0.0, le=1.0)
    error: float = Field(0.08, gt=0.0, le=1.0)


class RegionShareRule(_WarnErrorSection):
    """Maximum absolute change of a region's traffic share against the reference window."""

    min_n: int = Field(100, ge=1)
    warn: float = Field(0.15, gt=0.0, le=1.0)
    error: float = Field(0.25, gt=0.0, le=1.0)


class InputDriftRule(_WarnErrorSection):
    """Maximum population stability index of any input feature, per reference."""

    min_n: int = Field(200, ge=1)
    warn: float = Field(0.20, gt=0.0)
    error: float = Field(0.40, gt=0.0)
    bins: int = Field(10, ge=2)
    judge_each_region: bool = False
    """Judge each region's rows too; by default only the pooled ``ALL`` rows are judged."""
    features: list[FeatureName] = Field(default_factory=lambda: list(NUMERIC_FEATURES))
    benchmark_noise_mix: dict[str, float] = Field(
        default_factory=lambda: {"clean": 0.85, "ocr": 0.05, "typo": 0.05, "no_accents": 0.05}
    )
    """Share of each noise level that production is expected to send; weights the benchmark."""

    @model_validator(mode="after")
    def _check_mix(self):
        unknown = sorted(set(self.benchmark_noise_mix) - set(NOISE_LEVELS))
        if unknown:
            raise ValueError(f"unknown noise levels {unknown}: expected some of {NOISE_LEVELS}")
        if any(share < 0 for share in self.benchmark_noise_mix.values()):
            raise ValueError("benchmark_noise_mix has a negative share; expected shares >= 0")
        if sum(self.benchmark_noise_mix.values()) <= 0:
            raise ValueError("benchmark_noise_mix sums to 0; expected a positive total")
        return self


class EmbeddingDriftRule(_WarnErrorSection):
    """Maximum cosine distance between mean sentence embeddings, per reference."""

    min_n: int = Field(200, ge=1)
    warn: float = Field(0.025, gt=0.0)
    error: float = Field(0.040, gt=0.0)
    max_texts: int = Field(500, ge=10)
    """Texts embedded per sample; larger samples are subsampled with a fixed seed."""


class DegradationRule(_WarnErrorSection):
    """Maximum drop of the pass rate of labelled requests against the reference window."""

    min_n: int = Field(30, ge=1)
    warn: float = Field(0.05, gt=0.0, le=1.0)
    error: float = Field(0.10, gt=0.0, le=1.0)


class MonitoringPolicy(_Section):
    """Every monitoring rule and the length of the reference window."""

    reference_window_days: int = Field(7, ge=1)
    """Days before the monitored day whose traffic forms the reference window."""
    latency: LatencyRule = Field(default_factory=LatencyRule)
    error_rate: ErrorRateRule = Field(default_factory=ErrorRateRule)
    region_share: RegionShareRule = Field(default_factory=RegionShareRule)
    input_drift: InputDriftRule = Field(default_factory=InputDriftRule)
    embedding_drift: EmbeddingDriftRule = Field(default_factory=EmbeddingDriftRule)
    degradation: DegradationRule = Field(default_factory=DegradationRule)


@dataclass(frozen=True)
class LoadedMonitoringPolicy:
    """Validated monitoring policy with the SHA-256 prefix of its bytes and its source."""

    policy: MonitoringPolicy
    content_hash: str
    source: str


def parse_monitoring_policy(text: str, source: str = "<string>") -> LoadedMonitoringPolicy:
    """Parse and validate monitoring policy YAML; raise PolicyError naming each invalid key."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"invalid YAML in {source}: {error}") from None
    try:
        policy = MonitoringPolicy.model_validate(raw or {})
    except ValidationError as error:
        messages = [
            f"{'.'.join(str(part) for part in detail['loc']) or 'the top level'}: {detail['msg']}"
            for detail in error.errors()
        ]
        raise PolicyError(
            f"invalid monitoring policy in {source}: " + "; ".join(messages)
        ) from None
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return LoadedMonitoringPolicy(policy, content_hash, source)


def load_monitoring_policy(path: str | Path) -> LoadedMonitoringPolicy:
    """Read and validate the monitoring policy file at ``path``."""
    policy_path = Path(path)
    try:
        text = policy_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(
            f"monitoring policy file not found: {policy_path}. The repository's file is "
            f"{DEFAULT_MONITORING_POLICY_PATH}; set EVAL_PIPELINE_MONITORING_POLICY to its path."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(f"cannot read monitoring policy file {policy_path}: {error}") from None
    return parse_monitoring_policy(text, str(policy_path))
