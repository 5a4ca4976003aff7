"""Measure the throughput of one Gold partition, stage by stage, against an in-process baseline.

The Gold asset `item_results` runs inference and scoring in Spark `mapInPandas` and writes the
rows to Delta in one lazy job. To time each stage, this script materializes the stages one by
one with `cache()` and `count()`: inference, then scoring, then the Delta write. Spark session
start-up and the first call in each Python worker (model loads) are timed once, separately.
The same model and scorer also run in this process with pandas only (`predict_frame`, then
`score_frame`), and Spark throughput is reported as a ratio to that baseline from the same run.

The MLflow store with the demo models, the artifacts and the Delta tables all live in a
temporary folder that is removed at the end. Spark runs in local mode with the Delta jars
from EVAL_PIPELINE_JARS_DIR, or <repo>/var/jars when it is unset.

    python benchmarks/partition_throughput.py [--repeats 3] [--model echo-baseline] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

# `import mlflow` (3.17.2, as pinned) starts a telemetry client that fetches its config and
# posts usage events over HTTPS unless this is set before the import. The benchmark stays
# offline, and Spark's Python workers inherit the variable from this process.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from tabulate import tabulate

from eval_pipeline.core.demo_models import BASELINE_MODEL, DEMO_MODEL_SPECS
from eval_pipeline.core.inference import load_pyfunc, make_partition_predictor, predict_frame
from eval_pipeline.core.ingest import ingest_files
from eval_pipeline.core.items import build_evaluation_items
from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.core.registry import MlflowSettings, register_demo_models
from eval_pipeline.core.scoring import score_frame
from eval_pipeline.items.assets import ITEM_SCHEMA
from eval_pipeline.lakehouse import read_rows, replace_rows
from eval_pipeline.resources import BenchmarkDatasetResource, SparkResource, packaged_benchmark_path
from eval_pipeline.results.assets import PREDICTION_SCHEMA, SCORED_SCHEMA

logger = logging.getLogger("partition_throughput")

REPO_ROOT = Path(__file__).resolve().parent.parent
GOLD_PARTITION_COLUMNS = ["dataset_name", "partition_key"]

# Stages of one Spark repeat that get their own table row. "other" is the rest of the repeat.
SPARK_STAGES = ("inference", "scoring", "write")
SPARK_STAGE_LABELS = {
    "inference": "inference (predict mapInPandas)",
    "scoring": "scoring (score mapInPandas)",
    "write": "Delta write (replace_rows)",
    "other": "other (createDataFrame, gaps)",
}

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """Run `action` and return its result and its wall time in seconds."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}: expected an integer >= 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one Gold partition (inference, scoring, Delta write) in Spark local "
        "mode and compare its throughput with in-process pandas.",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="times to run the timed stages; medians are reported (default: 3)",
    )
    parser.add_argument(
        "--model",
        default=BASELINE_MODEL,
        choices=sorted({spec.registered_name for spec in DEMO_MODEL_SPECS}),
        help="demo model to register and evaluate; its highest version is used "
        f"(default: {BASELINE_MODEL})",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    return parser.parse_args(argv)


def jars_dir() -> str:
    return os.environ.get("EVAL_PIPELINE_JARS_DIR", str(REPO_ROOT / "var" / "jars"))


def select_version(refs: Sequence[ModelVersionRef], name: str) -> ModelVersionRef:
    """Return the highest registered version of `name`."""
    matching = [ref for ref in refs if ref.name == name]
    if not matching:
        raise ValueError(f"No registered version of model {name!r} found among {refs}.")
    return max(matching, key=lambda ref: int(ref.version))


def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Score each Arrow batch, as the Gold asset's scoring `mapInPandas` does."""
    for batch in batches:
        yield score_frame(batch)


def materialize(frame: DataFrame) -> DataFrame:
    """Cache `frame` and compute all its rows, so that the next stage reads stored rows."""
    cached = frame.cache()
    cached.count()
    return cached


def write_partition(frame: DataFrame, path: str, ref: ModelVersionRef, dataset_name: str) -> int:
    """Add the Gold asset's identity columns and replace this partition's rows in `path`."""
    results = (
        frame.withColumn("partition_key", F.lit(ref.partition_key))
        .withColumn("model_name", F.lit(ref.name))
        .withColumn("model_version", F.lit(ref.version))
        .withColumn("mlflow_run_id", F.lit(None).cast("string"))
        .withColumn("evaluated_at", F.current_timestamp())
    )
    match = {"dataset_name": dataset_name, "partition_key": ref.partition_key}
    return replace_rows(results, path, match, partition_by=GOLD_PARTITION_COLUMNS)


def score_totals(passed: int, chrf: float, semantic: float) -> dict[str, float]:
    """Return the column totals that show whether two paths scored the items alike."""
    return {"passed": int(passed), "chrf": float(chrf), "semantic_similarity": float(semantic)}


def totals_agree(first: dict[str, float], second: dict[str, float]) -> bool:
    # The encoder embeds each Spark batch apart from the others, so float rounding differs from
    # the one in-process call. The echo-baseline semantic totals differed by 2e-10 relative.
    return all(math.isclose(first[key], second[key], rel_tol=1e-6, abs_tol=1e-6) for key in first)


def run_in_process(model, items: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
    """Time `predict_frame` and `score_frame` on the whole frame, return times and totals."""
    predicted, inference_s = timed(lambda: predict_frame(model, items))
    scored, scoring_s = timed(lambda: score_frame(predicted))
    times = {"inference": inference_s, "scoring": scoring_s, "total": inference_s + scoring_s}
    totals = score_totals(
        scored["passed"].sum(), scored["chrf"].sum(), scored["semantic_similarity"].sum()
    )
    return times, totals


def run_spark_stages(
    session: SparkSession,
    items: pd.DataFrame,
    predictor: Callable,
    ref: ModelVersionRef,
    table_path: str,
    dataset_name: str,
) -> tuple[dict[str, float], dict[str, float]]:
    """Time each Spark stage of one partition on its own, return times and score totals."""
    started = time.perf_counter()
    frame, create_s = timed(lambda: session.createDataFrame(items, schema=ITEM_SCHEMA))
    predicted, inference_s = timed(
        lambda: materialize(frame.mapInPandas(predictor, PREDICTION_SCHEMA))
    )
    scored, scoring_s = timed(
        lambda: materialize(predicted.mapInPandas(score_batches, SCORED_SCHEMA))
    )
    _, write_s = timed(lambda: write_partition(scored, table_path, ref, dataset_name))
    total_s = time.perf_counter() - started

    row = scored.agg(
        F.sum(F.col("passed").cast("int")), F.sum("chrf"), F.sum("semantic_similarity")
    ).first()
    totals = score_totals(*row)
    scored.unpersist()
    predicted.unpersist()
    times = {
        "create_dataframe": create_s,
        "inference": inference_s,
        "scoring": scoring_s,
        "write": write_s,
        "other": total_s - inference_s - scoring_s - write_s,
        "total": total_s,
    }
    return times, totals


def run_spark_single_job(
    session: SparkSession,
    items: pd.DataFrame,
    predictor: Callable,
    ref: ModelVersionRef,
    table_path: str,
    dataset_name: str,
) -> float:
    """Time the partition in the Gold asset's shape, with predict, score and write in one job."""
    started = time.perf_counter()
    frame = session.createDataFrame(items, schema=ITEM_SCHEMA)
    results = frame.mapInPandas(predictor, PREDICTION_SCHEMA).mapInPandas(
        score_batches, SCORED_SCHEMA
    )
    write_partition(results, table_path, ref, dataset_name)
    return time.perf_counter() - started


def make_model_loader(predictor: Callable) -> Callable:
    """Return a `mapInPandas` function that predicts and scores each batch, then yields it.

    Each Python worker that runs it loads both the MLflow model and the USE encoder.
    """

    def load_models(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for predictions in predictor(iter([batch])):
                score_frame(predictions)
            yield batch

    return load_models


def warm_up_spark_workers(
    session: SparkSession, items: pd.DataFrame, predictor: Callable, partitions: int
) -> dict[str, float]:
    """Time the first predict and score calls in Spark's Python workers, one row per task.

    The first predict call starts the workers, imports the package and loads the MLflow
    model. The first score call, in the same reused workers, loads the USE encoder. The
    single-job shape of the asset chains two `mapInPandas` and so uses two workers per
    task, twice as many. The last step loads both models in all of them, so that no timed
    repeat pays for a model load.
    """
    tiny = session.createDataFrame(items.head(partitions), schema=ITEM_SCHEMA)
    predicted, predict_s = timed(
        lambda: materialize(tiny.mapInPandas(predictor, PREDICTION_SCHEMA))
    )
    scored, scoring_s = timed(
        lambda: materialize(predicted.mapInPandas(score_batches, SCORED_SCHEMA))
    )
    scored.unpersist()
    predicted.unpersist()

    load_models = make_model_loader(predictor)
    chained = tiny.mapInPandas(load_models, ITEM_SCHEMA).mapInPandas(load_models, ITEM_SCHEMA)
    _, single_job_s = timed(chained.collect)
    return {"predict": predict_s, "scoring": scoring_s, "single_job_workers": single_job_s}


def load_average() -> float | None:
    """Return the 1-minute load average, or None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_count() -> int:
    """Return the CPUs this process may run on, as `nproc` counts them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info(session: SparkSession) -> dict[str, object]:
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    # The JVM that Spark started, which may differ from the `java` on PATH.
    java = session.sparkContext._jvm.java.lang.System.getProperty("java.version")
    return {
        "cpus": cpu_count(),
        "memory_gb": round(memory_gb, 1) if memory_gb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": java,
        "spark": session.version,
        "spark_master": session.sparkContext.master,
    }


def medians(repeats: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(times[key] for times in repeats) for key in repeats[0]}


def summarize(
    item_count: int, once: dict[str, float], repeats: dict[str, list]
) -> dict[str, dict[str, float]]:
    """Return median stage times, shares of Spark wall time and throughput ratios.

    The Spark wall time is session start-up plus worker warm-up plus the median of each
    stage, so the shares add up to 100 %. Throughput without start-up uses the median total.
    """
    in_process = medians(repeats["in_process"])
    spark = medians(repeats["spark_stages"])
    single_job = statistics.median(repeats["spark_single_job"])

    one_time = {
        "session_startup": once["spark_session_startup"],
        "predict_warmup": once["spark_predict_warmup"],
        "scoring_warmup": once["spark_scoring_warmup"],
    }
    parts = {**one_time, **{stage: spark[stage] for stage in (*SPARK_STAGES, "other")}}
    wall = sum(parts.values())
    shares = {name: seconds / wall for name, seconds in parts.items()}

    warmup = one_time["predict_warmup"] + one_time["scoring_warmup"]
    in_process_warmup = once["in_process_model_load"] + once["in_process_scorer_warmup"]
    seconds = {
        "in_process": in_process["total"],
        "in_process_with_warmup": in_process_warmup + in_process["total"],
        "spark_without_startup": spark["total"],
        "spark_with_session_startup": one_time["session_startup"] + spark["total"],
        "spark_with_startup_and_warmup": one_time["session_startup"] + warmup + spark["total"],
        "spark_single_job_without_startup": single_job,
    }
    baseline = item_count / seconds["in_process"]
    throughput = {
        name: {
            "seconds": value,
            "items_per_s": item_count / value,
            "ratio_to_in_process": item_count / value / baseline,
        }
        for name, value in seconds.items()
    }
    return {
        "in_process_median_s": in_process,
        "spark_median_s": {**spark, "single_job": single_job},
        "spark_wall_s": {**parts, "total": wall},
        "spark_wall_share": shares,
        "throughput": throughput,
    }


THROUGHPUT_LABELS = {
    "in_process": "in-process pandas, warm (baseline)",
    "in_process_with_warmup": "in-process pandas, with model and USE load",
    "spark_without_startup": "Spark staged, start-up excluded (warm workers)",
    "spark_with_session_startup": "Spark staged, session start-up included",
    "spark_with_startup_and_warmup": "Spark staged, session start-up and worker warm-up included",
    "spark_single_job_without_startup": "Spark single job as in the asset, start-up excluded",
}


def format_tables(results: dict) -> str:
    """Return the stage and throughput tables as GitHub Markdown."""
    summary = results["summary"]
    once = results["once_s"]
    first_spark = results["repeats"]["spark_stages"][0]
    first_in_process = results["repeats"]["in_process"][0]
    in_process = summary["in_process_median_s"]
    spark = summary["spark_median_s"]
    shares = summary["spark_wall_share"]

    def share(name: str) -> str:
        return f"{100 * shares[name]:.1f} %"

    stage_rows = [
        [
            "Spark session start-up (once)",
            "",
            f"{once['spark_session_startup']:.2f}",
            share("session_startup"),
            "",
        ],
        [
            "first predict call per worker (once) / in-process model load",
            "",
            f"{once['spark_predict_warmup']:.2f}",
            share("predict_warmup"),
            f"{once['in_process_model_load']:.2f}",
        ],
        [
            "first score call per worker (once) / in-process USE load",
            "",
            f"{once['spark_scoring_warmup']:.2f}",
            share("scoring_warmup"),
            f"{once['in_process_scorer_warmup']:.2f}",
        ],
        [
            "both models in the single-job shape's extra workers (once, not in wall)",
            "",
            f"{once['spark_single_job_workers_warmup']:.2f}",
            "",
            "",
        ],
    ]
    for stage in (*SPARK_STAGES, "other"):
        stage_rows.append(
            [
                SPARK_STAGE_LABELS[stage],
                f"{first_spark[stage]:.2f}",
                f"{spark[stage]:.2f}",
                share(stage),
                f"{in_process[stage]:.2f}" if stage in in_process else "",
            ]
        )
    stage_rows.append(
        [
            "partition total, start-up excluded",
            f"{first_spark['total']:.2f}",
            f"{spark['total']:.2f}",
            "",
            f"{in_process['total']:.2f} (first {first_in_process['total']:.2f})",
        ]
    )
    stage_table = tabulate(
        stage_rows,
        headers=[
            "stage",
            "Spark first repeat (s)",
            "Spark median (s)",
            "share of Spark wall",
            "in-process median (s)",
        ],
        tablefmt="github",
        disable_numparse=True,
    )

    throughput_rows = [
        [
            THROUGHPUT_LABELS[name],
            f"{values['seconds']:.2f}",
            f"{values['items_per_s']:.1f}",
            f"{values['ratio_to_in_process']:.2f}",
        ]
        for name, values in summary["throughput"].items()
    ]
    throughput_table = tabulate(
        throughput_rows,
        headers=["measure", "seconds", "items/s", "ratio to in-process"],
        tablefmt="github",
        disable_numparse=True,
    )
    config = results["config"]
    machine = results["machine"]
    heading = (
        f"{config['items']} items, model {config['model_uri']}, {config['repeats']} repeats "
        f"(medians), {config['spark_partitions']} Spark partitions, {machine['cpus']} CPUs, "
        f"Python {machine['python']}, Java {machine['java']}, Spark {machine['spark']}, "
        f"1-minute load average {machine['load_average_1min_at_start']} at start and "
        f"{machine['load_average_1min_at_end']} at end (this run included)"
    )
    return f"{heading}\n\n{stage_table}\n\n{throughput_table}"


@dataclass(frozen=True)
class BenchmarkInputs:
    """The registered model version and the Silver items of one benchmark run."""

    settings: MlflowSettings
    ref: ModelVersionRef
    dataset_name: str
    dataset_version: str
    items: pd.DataFrame


def prepare_inputs(model_name: str, folder: Path, once: dict[str, float]) -> BenchmarkInputs:
    """Register the demo models in an MLflow store under `folder` and build the Silver items.

    The items are built in pandas with the dataset resource's default template, noise
    levels and seed, which are what the Silver asset uses without configuration.
    """
    database_uri = f"sqlite:///{folder / 'mlflow.db'}"
    settings = MlflowSettings(
        tracking_uri=database_uri,
        registry_uri=database_uri,
        experiment_name="partition_throughput",
        artifact_location=(folder / "artifacts").as_uri(),
    )
    dataset = BenchmarkDatasetResource(files=[packaged_benchmark_path()])
    ingestion = ingest_files(
        dataset.name,
        dataset.files,
        allowed_regions=dataset.allowed_regions,
        field_defaults=dataset.field_defaults,
    )
    logger.info(
        "Read %d benchmark items (%d quarantined) of %s version %s",
        len(ingestion.accepted),
        len(ingestion.quarantined),
        dataset.name,
        ingestion.dataset_version,
    )
    refs = register_demo_models(settings, ingestion.accepted.to_dict("records"))
    ref = select_version(refs, model_name)
    logger.info("Evaluating %s", ref.uri)

    items, once["silver_items_build"] = timed(
        lambda: build_evaluation_items(
            ingestion.accepted, dataset.template, dataset.noise_specs, dataset.noise_seed
        )
    )
    logger.info("Built %d evaluation items in %.2f s", len(items), once["silver_items_build"])
    return BenchmarkInputs(settings, ref, dataset.name, ingestion.dataset_version, items)


def warm_up_in_process(inputs: BenchmarkInputs, once: dict[str, float]):
    """Load the model in this process and return it, timing the load and a first score call."""
    settings = inputs.settings
    model, once["in_process_model_load"] = timed(
        lambda: load_pyfunc(inputs.ref.uri, settings.tracking_uri, settings.registry_uri)
    )
    tiny_predictions = predict_frame(model, inputs.items.head(1))
    _, once["in_process_scorer_warmup"] = timed(lambda: score_frame(tiny_predictions))
    logger.info(
        "In-process model load %.2f s, first score call (USE load) %.2f s",
        once["in_process_model_load"],
        once["in_process_scorer_warmup"],
    )
    return model


def measure_repeats(
    session: SparkSession,
    inputs: BenchmarkInputs,
    model,
    repeats: int,
    folder: Path,
    once: dict[str, float],
) -> dict:
    """Warm up Spark's workers, then run the in-process and both Spark shapes `repeats` times.

    Each repeat runs the three shapes back to back, so that all of them meet the same
    machine load. The Delta tables are written under `folder`.
    """
    items = inputs.items
    settings = inputs.settings
    partitions = session.createDataFrame(items, schema=ITEM_SCHEMA).rdd.getNumPartitions()
    predictor = make_partition_predictor(
        inputs.ref.uri, settings.tracking_uri, settings.registry_uri
    )
    warmup = warm_up_spark_workers(session, items, predictor, partitions)
    once["spark_predict_warmup"] = warmup["predict"]
    once["spark_scoring_warmup"] = warmup["scoring"]
    once["spark_single_job_workers_warmup"] = warmup["single_job_workers"]
    logger.info("Spark worker warm-up: %s", {k: round(v, 2) for k, v in warmup.items()})

    staged_path = str(folder / "delta" / "staged" / "item_results")
    single_job_path = str(folder / "delta" / "single_job" / "item_results")
    times: dict[str, list] = {"in_process": [], "spark_stages": [], "spark_single_job": []}
    totals: dict[str, list[dict[str, float]]] = {"in_process": [], "spark_stages": []}
    for repeat in range(1, repeats + 1):
        in_process_times, in_process_totals = run_in_process(model, items)
        spark_times, spark_totals = run_spark_stages(
            session, items, predictor, inputs.ref, staged_path, inputs.dataset_name
        )
        single_job_s = run_spark_single_job(
            session, items, predictor, inputs.ref, single_job_path, inputs.dataset_name
        )
        times["in_process"].append(in_process_times)
        times["spark_stages"].append(spark_times)
        times["spark_single_job"].append(single_job_s)
        totals["in_process"].append(in_process_totals)
        totals["spark_stages"].append(spark_totals)
        logger.info(
            "Repeat %d/%d: in-process %.2f s, Spark staged %.2f s, Spark single job %.2f s",
            repeat,
            repeats,
            in_process_times["total"],
            spark_times["total"],
            single_job_s,
        )

    match = {"dataset_name": inputs.dataset_name, "partition_key": inputs.ref.partition_key}
    rows_written = {
        "spark_stages": read_rows(session, staged_path, match).count(),
        "spark_single_job": read_rows(session, single_job_path, match).count(),
    }
    all_totals = totals["in_process"] + totals["spark_stages"]
    if not all(totals_agree(all_totals[0], other) for other in all_totals):
        logger.warning("Score totals differ between repeats or paths: %s", totals)
    if set(rows_written.values()) != {len(items)}:
        logger.warning("Expected %d rows in each Delta table, found %s", len(items), rows_written)
    return {
        "partitions": partitions,
        "times": times,
        "checks": {"score_totals": totals, "rows_written": rows_written},
    }


def run(args: argparse.Namespace, folder: Path) -> dict:
    """Run every measurement with its state under `folder` and return the results."""
    load_at_start = load_average()
    cpus = cpu_count()
    if load_at_start is not None and load_at_start >= cpus / 2:
        logger.warning(
            "Load average is %.2f on %d CPUs before the run. Other processes are using the "
            "CPUs, so the figures will be slower and noisier than on an idle machine.",
            load_at_start,
            cpus,
        )

    once: dict[str, float] = {}
    inputs = prepare_inputs(args.model, folder, once)
    model = warm_up_in_process(inputs, once)

    spark = SparkResource(jars_dir=jars_dir())
    session, once["spark_session_startup"] = timed(spark.get_session)
    logger.info("Spark session started in %.2f s", once["spark_session_startup"])
    try:
        measured = measure_repeats(session, inputs, model, args.repeats, folder, once)
        machine = {
            **machine_info(session),
            "load_average_1min_at_start": load_at_start,
            "load_average_1min_at_end": load_average(),
        }
    finally:
        session.stop()

    return {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {
            "model_uri": inputs.ref.uri,
            "dataset_name": inputs.dataset_name,
            "dataset_version": inputs.dataset_version,
            "items": len(inputs.items),
            "repeats": args.repeats,
            "spark_partitions": measured["partitions"],
            "inference_batch_size": 1,
        },
        "once_s": once,
        "repeats": measured["times"],
        "summary": summarize(len(inputs.items), once, measured["times"]),
        "checks": measured["checks"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="partition_throughput-") as folder:
        results = run(args, Path(folder))

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        logger.info("Wrote results to %s", args.json)
    print(format_tables(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
