"""Turn accepted benchmark rows into evaluation items: one row per item and noise level."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pandas as pd

from eval_pipeline.core.noise import NoiseSpec, apply_noise, noise_spec_json
from eval_pipeline.core.prompts import PromptTemplate

ITEM_COLUMNS = [
    "dataset_name", "dataset_version", "item_id", "region", "task_type", "term", "reference",
    "clean_text", "noise_level", "noise_spec", "noise_seed", "text", "term_shown", "prompt",
    "template_id", "template_hash",
]  # fmt: skip


def build_evaluation_items(
    samples: pd.DataFrame,
    template: PromptTemplate,
    noise_specs: Sequence[NoiseSpec],
    seed: int,
) -> pd.DataFrame:
    """Return one row per sample and noise level, with its rendered prompt.

    Noise goes into what a user types, the sentence and the quoted term, and never into the
    instruction around them. Each variant is seeded by item id, noise level and `seed`, so it is
    the same on every machine and in every Spark executor.
    """
    rows = []
    for sample in samples.itertuples(index=False):
        for spec in noise_specs:
            text = apply_noise(sample.text, spec, sample.item_id, seed)
            term = apply_noise(sample.term, spec, f"{sample.item_id}:term", seed)
            rows.append(
                {
                    "dataset_name": sample.dataset_name,
                    "dataset_version": sample.dataset_version,
                    "item_id": sample.item_id,
                    "region": sample.region,
                    "task_type": sample.task_type,
                    "term": sample.term,
                    "reference": sample.reference,
                    "clean_text": sample.text,
                    "noise_level": spec.level,
                    "noise_spec": noise_spec_json([spec]),
                    "noise_seed": seed,
                    "text": text,
                    "term_shown": term,
                    "prompt": template.render(text=text, term=term),
                    "template_id": template.template_id,
                    "template_hash": template.template_hash,
                }
            )
    return pd.DataFrame(rows, columns=ITEM_COLUMNS)


def make_item_builder(
    template: PromptTemplate, noise_specs: Sequence[NoiseSpec], seed: int
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Return a `mapInPandas` function that builds evaluation items from Bronze batches."""

    def build_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield build_evaluation_items(batch, template, noise_specs, seed)

    return build_batches
