"""Partitions shared by the Gold assets, their checks and the jobs that run them."""

import dagster as dg

# One partition per registered model version; keys come from
# eval_pipeline.core.partition_keys.encode_partition_key and decode back to name and version.
model_versions_partitions = dg.DynamicPartitionsDefinition(name="model_versions")
