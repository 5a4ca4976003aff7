"""Deployment gate policy: the YAML file format, its validation and per-model resolution.

A policy file has a ``defaults`` section and a ``models`` section keyed by registered model
name. A model's entry may override any subset of the defaults, and nested mappings are
merged key by key, so ``{region_minimum: {thresholds: {SV: 0.85}}}`` changes only the SV
minimum. Every model's merged policy is validated when the file is loaded, and every error
is raised as ``PolicyError`` with the dotted key path and the allowed values.
"""

from __future__ import annotations

import copy
import hashlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eval_pipeline.core.noise import NOISE_LEVELS

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "gate_policy.yaml"

ALL_LEVELS = "ALL"

# Pydantic accepts a tuple of values in Literal[...] like a written-out list.
NoiseLevelOrAll = Literal[(*NOISE_LEVELS, ALL_LEVELS)]  # type: ignore[valid-type]

_RATE = "a number in [0, 1]"
_MIN_N = "an integer >= 1"

Rate = Annotated[float, Field(ge=0.0, le=1.0, description=_RATE)]
MinN = Annotated[int, Field(ge=1, description=_MIN_N)]


class PolicyError(ValueError):
    """Invalid, missing or unreadable gate policy."""


class _Section(BaseModel):
    # Strict mode keeps YAML strings and booleans from being coerced into numbers.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RegionMinimumPolicy(_Section):
    """Minimum pass rate per region at one noise level."""

    enabled: bool = Field(True, description="true or false")
    noise_level: NoiseLevelOrAll = "clean"
    min_n: MinN = 30
    thresholds: dict[str, Rate] = Field(
        default_factory=lambda: {"default": 0.70, "SV": 0.80, "PE": 0.80},
        description="a mapping from region code or 'default' to a number in [0, 1]",
    )

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, thresholds: dict[str, float]) -> dict[str, float]:
        if "default" not in thresholds:
            raise ValueError(
                "missing 'default' entry: expected a 'default' minimum for regions "
                "that have no entry of their own"
            )
        reserved = [key for key in thresholds if key in ("", ALL_LEVELS)]
        if reserved:
            raise ValueError(
                f"invalid region code {reserved[0]!r}: 'ALL' names pooled rows and a code "
                "cannot be empty, expected a region code such as 'SV'"
            )
        return thresholds


class NonRegressionPolicy(_Section):
    """Paired test of the candidate against the current champion version."""

    enabled: bool = Field(True, description="true or false")
    champion_alias: str = Field("champion", min_length=1, description="a non-empty string")
    margin: float = Field(0.05, gt=0.0, lt=1.0, description="a number in (0, 1)")
    alpha: float = Field(0.05, gt=0.0, le=0.5, description="a number in (0, 0.5]")
    power: float = Field(0.80, gt=0.0, lt=1.0, description="a number in (0, 1)")
    method: Literal["bootstrap", "mcnemar"] = "bootstrap"
    correction: Literal["holm", "bh", "none"] = "holm"
    n_resamples: int = Field(2000, ge=1, description="an integer >= 1")
    seed: int = Field(0, ge=0, description="an integer >= 0")
    # 250 items detect a drop of margin with power 0.80 in the simulation of
    # eval_pipeline_tests/core/test_gate_simulation.py, and 150 items do not.
    min_n: MinN = 250
    slices: list[Literal["overall", "region"]] = Field(
        default_factory=lambda: ["overall", "region"],
        min_length=1,
        description="a non-empty list of distinct values from 'overall', 'region'",
    )
    no_baseline: Literal["pass", "fail"] = "pass"

    @field_validator("slices")
    @classmethod
    def _check_slices(cls, slices: list[str]) -> list[str]:
        if len(set(slices)) != len(slices):
            raise ValueError(
                f"duplicate entries in {slices!r}: expected distinct values from "
                "'overall', 'region'"
            )
        return slices

    @model_validator(mode="after")
    def _check_resamples(self) -> NonRegressionPolicy:
        # The bootstrap p-value is at least 1 / (n_resamples + 1), so fewer resamples than
        # this can never reach alpha and the test could never detect a regression.
        needed = int(1.0 / self.alpha)
        if self.method == "bootstrap" and self.n_resamples < needed:
            raise ValueError(
                f"n_resamples {self.n_resamples} is too small for alpha {self.alpha}: the "
                f"bootstrap p-value cannot fall below alpha, expected n_resamples >= {needed}"
            )
        return self


class RobustnessPolicy(_Section):
    """Maximum clean-minus-noisy pass-rate gap per region."""

    enabled: bool = Field(True, description="true or false")
    tolerance: Rate = 0.15
    min_n: MinN = 30


class RegionGapPolicy(_Section):
    """Maximum pass-rate difference between the best and the worst region."""

    enabled: bool = Field(True, description="true or false")
    max_gap: Rate = 0.15
    noise_level: NoiseLevelOrAll = "clean"
    min_n: MinN = 30


class LatencyPolicy(_Section):
    """Maximum 95th percentile of latency over rows without an error."""

    enabled: bool = Field(True, description="true or false")
    p95_ms_max: float = Field(2000.0, gt=0.0, description="a number of milliseconds > 0")
    min_n: MinN = 30
    n_resamples: int = Field(2000, ge=1, description="an integer >= 1")
    seed: int = Field(0, ge=0, description="an integer >= 0")


class ErrorRatePolicy(_Section):
    """Maximum share of rows that ended in an inference error."""

    enabled: bool = Field(True, description="true or false")
    max: Rate = 0.02
    min_n: MinN = 30


class GatePolicy(_Section):
    """Gate settings for one registered model: the defaults merged with its overrides."""

    bound: Literal["conservative", "point", "optimistic"] = "conservative"
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="a number in (0, 1)")
    insufficient_evidence: Literal["fail", "report_only"] = "fail"
    region_minimum: RegionMinimumPolicy = Field(default_factory=RegionMinimumPolicy)
    non_regression: NonRegressionPolicy = Field(default_factory=NonRegressionPolicy)
    robustness: RobustnessPolicy = Field(default_factory=RobustnessPolicy)
    region_gap: RegionGapPolicy = Field(default_factory=RegionGapPolicy)
    latency: LatencyPolicy = Field(default_factory=LatencyPolicy)
    error_rate: ErrorRatePolicy = Field(default_factory=ErrorRatePolicy)


class PolicyFile(_Section):
    """Contents of a policy file: the defaults and the raw overrides per model name.

    ``parse_policy`` validates each override merged over the defaults, so a ``PolicyFile``
    built by it has only valid overrides.
    """

    defaults: GatePolicy = Field(default_factory=GatePolicy)
    models: dict[str, Any] = Field(
        default_factory=dict,
        description="a mapping from registered model name to a mapping of overrides",
    )


@dataclass(frozen=True)
class LoadedPolicy:
    """Validated policy file with the SHA-256 prefix of its bytes and where it came from."""

    file: PolicyFile
    content_hash: str
    source: str

    def for_model(self, model_name: str) -> GatePolicy:
        """Return the defaults merged with the overrides for ``model_name``, if it has any."""
        overrides = self.file.models.get(model_name)
        if not overrides:
            return self.file.defaults
        merged = _deep_merge(self.file.defaults.model_dump(), overrides)
        return GatePolicy.model_validate(merged)


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read, parse and validate the policy file at ``path``.

    ``content_hash`` is the first 16 hex digits of the SHA-256 of the file bytes. Raises
    PolicyError when the file is missing or unreadable, is not UTF-8, or is invalid.
    """
    policy_path = Path(path)
    try:
        data = policy_path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            f"policy file not found: {policy_path}. The repository's policy file is "
            f"gate_policy.yaml at the repository root ({DEFAULT_POLICY_PATH})."
        ) from None
    except OSError as error:
        raise PolicyError(f"cannot read policy file {policy_path}: {error}") from error

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"invalid policy file {policy_path}: expected UTF-8 text, byte {error.start} "
            "is not valid UTF-8"
        ) from None
    return _parse(text, str(policy_path), _content_hash(data))


def parse_policy(text: str, source: str = "<string>") -> LoadedPolicy:
    """Parse and validate policy YAML from a string, hashing its UTF-8 bytes.

    ``source`` names the text in error messages. Raises PolicyError when it is invalid.
    """
    return _parse(text, source, _content_hash(text.encode("utf-8")))


def _content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _parse(text: str, source: str, content_hash: str) -> LoadedPolicy:
    raw = _load_yaml(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyError(
            f"invalid policy in {source}: expected a mapping with the keys defaults, "
            f"models at the top level, got {type(raw).__name__}"
        )

    try:
        policy_file = PolicyFile.model_validate(raw)
    except ValidationError as error:
        raise PolicyError(_format_errors(error, PolicyFile, (), source)) from None

    models = {}
    for model_name, overrides in policy_file.models.items():
        models[model_name] = _validate_overrides(
            policy_file.defaults, model_name, overrides, source
        )
    policy_file = policy_file.model_copy(update={"models": models})
    return LoadedPolicy(file=policy_file, content_hash=content_hash, source=source)


def _validate_overrides(
    defaults: GatePolicy, model_name: str, overrides: Any, source: str
) -> dict[str, Any]:
    prefix = ("models", model_name)
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise PolicyError(
            f"invalid value {overrides!r} for models.{model_name} in {source}: expected a "
            "mapping of keys from defaults to override"
        )
    merged = _deep_merge(defaults.model_dump(), overrides)
    try:
        GatePolicy.model_validate(merged)
    except ValidationError as error:
        raise PolicyError(_format_errors(error, GatePolicy, prefix, source)) from None
    return overrides


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` applied, merging nested mappings key by key."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that rejects a key repeated in one mapping.

    PyYAML keeps the last of repeated keys without a warning, which would let a second
    ``min_n`` line silently replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(f"invalid YAML in {source}{where}: {error.problem}") from None
    except yaml.YAMLError as error:
        raise PolicyError(f"invalid YAML in {source}: {error}") from None


# ---------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------


def _format_errors(
    error: ValidationError, root: type[BaseModel], prefix: tuple[str, ...], source: str
) -> str:
    messages = [_format_error(detail, root, prefix, source) for detail in error.errors()]
    if len(messages) == 1:
        return messages[0]
    return f"{len(messages)} errors in policy:\n" + "\n".join(f"- {m}" for m in messages)


def _format_error(detail: Any, root: type[BaseModel], prefix: tuple[str, ...], source: str) -> str:
    loc = tuple(str(part) for part in detail["loc"])
    path = ".".join((*prefix, *loc)) or "the top level"
    kind = detail["type"]

    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "none"
        parent_path = ".".join((*prefix, *loc[:-1]))
        where = f"in {parent_path}" if parent_path else "at the top level"
        return f"unknown key {path} in {source}: allowed keys {where} are {allowed}"

    value = repr(detail["input"])
    if kind == "literal_error":
        # Pydantic writes the choices as "'a', 'b' or 'c'".
        choices = detail["ctx"]["expected"].replace(" or ", ", ")
        return f"invalid value {value} for {path} in {source}: expected one of {choices}"
    if kind == "value_error":
        # The message comes from one of the validators above and names the allowed values.
        message = str(detail["ctx"]["error"])
        return f"invalid value for {path} in {source}: {message}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(root, loc)
        if model is not None:
            keys = ", ".join(model.model_fields)
            return (
                f"invalid value {value} for {path} in {source}: expected a mapping with keys {keys}"
            )

    allowed = _allowed_values(root, loc)
    if allowed:
        return f"invalid value {value} for {path} in {source}: expected {allowed}"
    return f"invalid value {value} for {path} in {source}: {detail['msg']}"


def _model_at(root: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    """Return the model class found by following ``loc`` field names from ``root``."""
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(part)
        if field is None or not _is_model(field.annotation):
            return None
        model = field.annotation  # type: ignore[assignment]
    return model


def _allowed_values(root: type[BaseModel], loc: tuple[str, ...]) -> str | None:
    """Return the allowed-values text of the field at ``loc``, or None when unknown."""
    model: type[BaseModel] = root
    for index, part in enumerate(loc):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if _is_model(field.annotation) and index < len(loc) - 1:
            model = field.annotation  # type: ignore[assignment]
            continue
        if index < len(loc) - 1 and typing.get_origin(field.annotation) is dict:
            # The next part of loc is a mapping key, so the error is about one value.
            value_description = _annotated_description(typing.get_args(field.annotation)[1])
            if value_description:
                return value_description
        if field.description:
            return field.description
        for meta in field.metadata:
            description = getattr(meta, "description", None)
            if description:
                return description
        return _literal_text(field.annotation)
    return None


def _annotated_description(annotation: Any) -> str | None:
    for meta in getattr(annotation, "__metadata__", ()):
        description = getattr(meta, "description", None)
        if description:
            return description
    return None


def _literal_text(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(value) for value in typing.get_args(annotation))
    return None


def _is_model(annotation: Any) -> bool:
    return (
        isinstance(annotation, type)
        and not isinstance(annotation, types.GenericAlias)
        and issubclass(annotation, BaseModel)
    )
