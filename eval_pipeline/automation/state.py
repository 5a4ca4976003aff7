"""Dagster instance records of Silver and gate decisions, read through public APIs."""

import dagster as dg

from eval_pipeline.gates.decisions import GATE_DECISIONS
from eval_pipeline.items.assets import EVALUATION_ITEMS


def _metadata_text(record, key: str) -> str | None:
    entry = record.asset_materialization.metadata.get(key)
    return None if entry is None else str(entry.value)


def silver_dataset(instance: dg.DagsterInstance) -> tuple[str, str] | None:
    """Return (dataset name, version) of the latest Silver materialization, or None."""
    record = instance.get_latest_materialization_event(EVALUATION_ITEMS)
    if record is None or record.asset_materialization is None:
        return None
    name = _metadata_text(record, "dataset_name")
    version = _metadata_text(record, "dataset_version")
    if name is None or version is None:
        return None
    return name, version


def latest_gate_decision(instance: dg.DagsterInstance, partition_key: str):
    """Return the latest gold/gate_decisions materialization record of a partition, or None."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=GATE_DECISIONS, asset_partitions=[partition_key]),
        limit=1,
    )
    return result.records[0] if result.records else None


def decided_dataset_version(instance: dg.DagsterInstance, partition_key: str, dataset_name: str):
    """Return the dataset version of a partition's latest gate decision on `dataset_name`."""
    record = latest_gate_decision(instance, partition_key)
    if record is None or _metadata_text(record, "dataset_name") != dataset_name:
        return None
    return _metadata_text(record, "dataset_version")
