"""MLflow registry and tracking helpers shared by the assets and the command line."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from eval_pipeline.core.demo_models import (
    DEMO_MODEL_SPECS,
    DemoModelSpec,
    EchoModel,
    GlossaryModel,
    build_glossary,
)
from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.core.watch import RegisteredVersion

logger = logging.getLogger(__name__)

TAG_PREFIX = "eval_pipeline"
DEMO_FINGERPRINT_TAG = f"{TAG_PREFIX}.demo_fingerprint"
PARTITION_KEY_TAG = f"{TAG_PREFIX}.partition_key"
EVAL_KEY_TAG = f"{TAG_PREFIX}.eval_key"
MODEL_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "region")]),
    outputs=Schema([ColSpec("string")]),
)


class ModelVersionNotFoundError(LookupError):
    """Raised when a model version is not (or no longer) in the registry."""


@dataclass(frozen=True)
class MlflowSettings:
    """Locations of the MLflow tracking store, model registry and artifacts."""

    tracking_uri: str
    registry_uri: str
    experiment_name: str
    artifact_location: str

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def activate(self) -> None:
        """Point MLflow's fluent API (used by `log_model`) at these stores."""
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)


def ensure_experiment(settings: MlflowSettings, name: str | None = None) -> str:
    """Return the id of the experiment, creating it with the configured artifact location."""
    client = settings.client()
    experiment_name = name or settings.experiment_name
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = f"{settings.artifact_location.rstrip('/')}/{experiment_name}"
    return client.create_experiment(experiment_name, artifact_location=location)


def get_model_version(settings: MlflowSettings, ref: ModelVersionRef):
    """Return the registry entry of `ref`, or raise ModelVersionNotFoundError naming it."""
    try:
        return settings.client().get_model_version(ref.name, ref.version)
    except MlflowException as error:
        raise ModelVersionNotFoundError(
            f"Model {ref.name!r} version {ref.version} is not in the registry at "
            f"{settings.registry_uri}; check the name and version (the MLflow UI lists them). "
            "If it was deleted after its Dagster partition was added, remove that partition."
        ) from error


def _name_filter(name: str) -> str:
    # MLflow's filter grammar has no escape character, so a name with a single quote goes in
    # double quotes instead.
    if "'" in name and '"' in name:
        raise ValueError(
            f"Model name {name!r} contains both quote characters, which MLflow search filters "
            "cannot express; rename the registered model."
        )
    return f'name = "{name}"' if "'" in name else f"name = '{name}'"


def _all_pages(search, **kwargs) -> list:
    results, token = [], None
    while True:
        page = search(max_results=200, page_token=token, **kwargs)
        results.extend(page)
        token = page.token
        if not token:
            return results


def list_model_versions(
    settings: MlflowSettings, names: Iterable[str] | None = None
) -> list[ModelVersionRef]:
    """Return every registered version of `names` (all registered models when None).

    Raises ModelVersionNotFoundError naming any requested model that is not registered.
    """
    client = settings.client()
    if names is None:
        names = [model.name for model in _all_pages(client.search_registered_models)]
    refs = []
    for name in names:
        try:
            client.get_registered_model(name)
        except MlflowException as error:
            raise ModelVersionNotFoundError(
                f"Registered model {name!r} not found in the registry at {settings.registry_uri}; "
                "check the name (the MLflow UI lists registered models) or register it first."
            ) from error
        for version in _all_pages(client.search_model_versions, filter_string=_name_filter(name)):
            refs.append(ModelVersionRef(version.name, str(version.version)))
    return sorted(refs, key=lambda ref: (ref.name, int(ref.version)))


def _tag_filter(key: str, value: str) -> str:
    if "`" in key or "'" in value:
        raise ValueError(
            f"Watch tag {key}={value} cannot be expressed as an MLflow search filter: the key "
            "must not contain a backtick and the value must not contain a single quote."
        )
    return f"tags.`{key}` = '{value}'"


def watched_model_names(
    settings: MlflowSettings, names: Sequence[str] = (), tag: tuple[str, str] | None = None
) -> list[str]:
    """Return the registered models to watch: `names` that exist plus those carrying `tag`.

    With no names and no tag every registered model is watched. A listed name that is not
    registered yet is left out, so a sensor can watch a model before its first version exists.
    """
    client = settings.client()
    if not names and tag is None:
        return sorted(model.name for model in _all_pages(client.search_registered_models))
    watched = set()
    if tag is not None:
        models = _all_pages(client.search_registered_models, filter_string=_tag_filter(*tag))
        watched.update(model.name for model in models)
    for name in names:
        if _all_pages(client.search_registered_models, filter_string=_name_filter(name)):
            watched.add(name)
    return sorted(watched)


def list_registered_versions(
    settings: MlflowSettings, names: Iterable[str]
) -> list[RegisteredVersion]:
    """Return every version of `names` with its registration status, oldest first."""
    client = settings.client()
    listed = []
    for name in names:
        for version in _all_pages(client.search_model_versions, filter_string=_name_filter(name)):
            listed.append(
                RegisteredVersion(version.name, int(version.version), str(version.status))
            )
    return sorted(listed, key=lambda item: (item.name, item.version))


def register_pyfunc_model(
    settings: MlflowSettings,
    name: str,
    python_model,
    artifacts: Mapping[str, str] | None = None,
    description: str = "",
) -> ModelVersionRef:
    """Log `python_model` as a pyfunc with the evaluation signature and register it as `name`."""
    settings.activate()
    experiment_id = ensure_experiment(settings, f"{settings.experiment_name}-models")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{name}"):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts=dict(artifacts) if artifacts else None,
            signature=MODEL_SIGNATURE,
            input_example=pd.DataFrame(
                {"prompt": ["¿Qué significa «cipote» en español neutro?"], "region": ["SV"]}
            ),
            # Requirements are listed so that MLflow does not load the model to infer them.
            pip_requirements=["mlflow", "pandas", "rapidfuzz"],
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    if description:
        settings.client().update_model_version(name, version, description=description)
    return ModelVersionRef(name, version)


def _register_demo_model(
    settings: MlflowSettings, spec: DemoModelSpec, items: Sequence[dict]
) -> ModelVersionRef:
    if spec.kind != "glossary":
        return register_pyfunc_model(
            settings, spec.registered_name, EchoModel(), description=spec.description
        )
    with tempfile.TemporaryDirectory() as folder:
        glossary_path = Path(folder) / "glossary.json"
        glossary = build_glossary(items, share=spec.glossary_share)
        glossary_path.write_text(json.dumps(glossary, ensure_ascii=False), encoding="utf-8")
        return register_pyfunc_model(
            settings,
            spec.registered_name,
            GlossaryModel(spec.fuzzy, spec.empty_answer_share),
            artifacts={"glossary": str(glossary_path)},
            description=spec.description,
        )


def register_demo_models(
    settings: MlflowSettings,
    items: Sequence[dict],
    specs: Sequence[DemoModelSpec] = DEMO_MODEL_SPECS,
) -> list[ModelVersionRef]:
    """Register each demo spec once; return all their versions, new and already registered.

    A spec whose fingerprint tag is already on a version of its model is not registered again,
    so running the demo twice keeps the same versions.
    """
    client = settings.client()
    refs = []
    for spec in specs:
        existing = [
            version
            for version in client.search_model_versions(_name_filter(spec.registered_name))
            if version.tags.get(DEMO_FINGERPRINT_TAG) == spec.fingerprint
        ]
        if existing:
            refs.append(ModelVersionRef(spec.registered_name, str(existing[0].version)))
            continue
        ref = _register_demo_model(settings, spec, items)
        client.set_model_version_tag(ref.name, ref.version, DEMO_FINGERPRINT_TAG, spec.fingerprint)
        logger.info("Registered %s: %s", ref.uri, spec.description)
        refs.append(ref)
    return refs


def metric_name(*parts: str) -> str:
    """Join slice parts into an MLflow metric name (letters, digits, `_-. /:` only)."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. :")
    cleaned = ["".join(ch if ch in allowed else "_" for ch in part) for part in parts]
    return "/".join(cleaned)


def start_or_resume_evaluation_run(
    settings: MlflowSettings,
    eval_key: str,
    run_name: str,
    params: Mapping[str, str],
    tags: Mapping[str, str],
) -> str:
    """Return the run id for one evaluation, creating the run the first time.

    The evaluation key hashes the model version, dataset version, template, noise specification,
    scorer versions and code version, so a re-materialization with the same inputs logs into the
    same run, and any change to those inputs starts a new one.
    """
    client = settings.client()
    experiment_id = ensure_experiment(settings)
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{EVAL_KEY_TAG}` = '{eval_key}'", max_results=1
    )
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=run_name, tags={**tags, EVAL_KEY_TAG: eval_key})
    client.log_batch(
        run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()]
    )
    return run.info.run_id


def log_metrics(settings: MlflowSettings, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log finite metrics in batches (MLflow accepts at most 1000 per call)."""
    timestamp = int(time.time() * 1000)
    entries = [
        Metric(key, float(value), timestamp, 0)
        for key, value in metrics.items()
        if value is not None and math.isfinite(float(value))
    ]
    client = settings.client()
    for start in range(0, len(entries), 1000):
        client.log_batch(run_id, metrics=entries[start : start + 1000])


def set_run_tags(settings: MlflowSettings, run_id: str, tags: Mapping[str, str]) -> None:
    settings.client().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
