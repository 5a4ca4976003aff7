"""Read benchmark files (CSV, JSONL, Parquet) and split their rows into accepted and quarantined.

Nothing is dropped: every row read ends up either in the accepted frame or in the quarantine
frame with its reason codes, a message and the raw record, so `rows read = accepted +
quarantined` holds for every ingestion.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REQUIRED_FIELDS = ("item_id", "region", "text", "term", "reference", "task_type")

# ISO 3166-1 alpha-2 codes of the countries and territories where Spanish is an official or
# majority language. A benchmark may narrow or extend this list through its configuration.
SPANISH_SPEAKING_REGIONS = (
    "AR", "BO", "CL", "CO", "CR", "CU", "DO", "EC", "ES", "GQ", "GT", "HN", "MX", "NI", "PA",
    "PE", "PR", "PY", "SV", "US", "UY", "VE",
)  # fmt: skip

SUPPORTED_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

BRONZE_COLUMNS = [
    "dataset_name", "dataset_version", "item_id", "region", "text", "term", "reference",
    "task_type", "extra", "source_file", "row_number",
]  # fmt: skip
QUARANTINE_COLUMNS = [
    "dataset_name", "dataset_version", "source_file", "row_number", "item_id", "reason",
    "detail", "raw_record",
]  # fmt: skip


class BenchmarkSourceError(ValueError):
    """Raised when a configured benchmark file is missing, empty or of an unsupported format."""


@dataclass
class RawRecord:
    """One row as read from a source file, before validation."""

    source_file: str
    row_number: int
    fields: dict[str, object]
    parse_error: str | None = None
    raw_text: str | None = None


@dataclass
class IngestionResult:
    """Accepted and quarantined rows of one dataset version."""

    dataset_name: str
    dataset_version: str
    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    source_files: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.accepted) + len(self.quarantined)


def _has_invalid_utf8(value: object) -> bool:
    # Files are decoded with surrogateescape, so each byte that is not valid UTF-8 becomes a lone
    # surrogate in U+DC80..U+DCFF. JSON escapes such as "\ud800" also produce lone surrogates,
    # which cannot be encoded as UTF-8 either.
    return isinstance(value, str) and any("\ud800" <= ch <= "\udfff" for ch in value)


def _printable(value: object) -> str:
    """Render a value for the quarantine table, showing invalid bytes as \\x escapes."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def resolve_source_files(paths: Sequence[str]) -> list[Path]:
    """Return the configured files, or raise naming the first that is missing or unsupported."""
    if not paths:
        raise BenchmarkSourceError(
            "No benchmark files are configured: set the dataset resource's `files` (or the "
            "EVAL_PIPELINE_DATASET_FILES environment variable) to CSV, JSONL or Parquet paths."
        )
    resolved = []
    for raw_path in paths:
        path = Path(raw_path).expanduser()
        if not path.is_file():
            raise BenchmarkSourceError(
                f"Benchmark file {str(path)!r} does not exist or is not a file; check the "
                "dataset resource's `files` setting."
            )
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise BenchmarkSourceError(
                f"Benchmark file {str(path)!r} has suffix {path.suffix!r}; expected one of "
                f"{sorted(SUPPORTED_SUFFIXES)}."
            )
        resolved.append(path.resolve())
    return resolved


def dataset_version(paths: Sequence[Path], settings: Mapping[str, object] | None = None) -> str:
    """Return a content hash of the files' bytes and the settings that decide which rows pass.

    File names and modification times do not count, so copying or touching a file keeps the
    version, while editing one byte or changing the allowed regions produces a new one.
    """
    digest = hashlib.sha256()
    for file_hash in sorted(hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths):
        digest.update(file_hash.encode())
    digest.update(json.dumps(settings or {}, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def current_dataset_version(
    paths: Sequence[str],
    allowed_regions: Iterable[str] = SPANISH_SPEAKING_REGIONS,
    field_defaults: Mapping[str, str] | None = None,
) -> str:
    """Return the dataset version that ingesting `paths` with these settings records."""
    regions = sorted({region.upper() for region in allowed_regions})
    settings = {"allowed_regions": regions, "field_defaults": dict(field_defaults or {})}
    return dataset_version(resolve_source_files(paths), settings)


def _read_jsonl(path: Path) -> Iterable[RawRecord]:
    text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    # JSON Lines separates records by "\n" only; str.splitlines would also split on U+2028 and
    # other Unicode line breaks that may appear inside a JSON string.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield RawRecord(str(path), number, {}, f"invalid JSON: {error.msg}", line)
            continue
        if not isinstance(value, dict):
            message = f"expected a JSON object, found {type(value).__name__}"
            yield RawRecord(str(path), number, {}, message, line)
            continue
        yield RawRecord(str(path), number, value, raw_text=line)


def _read_csv(path: Path) -> Iterable[RawRecord]:
    text = path.read_bytes().decode("utf-8", "surrogateescape").lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for number, row in enumerate(reader, start=1):
        extra_cells = row.pop(None, None)
        if extra_cells:
            message = f"row has {len(extra_cells)} more cells than the header"
            yield RawRecord(str(path), number, {**row, "_extra_cells": extra_cells}, message)
            continue
        yield RawRecord(str(path), number, {k: v for k, v in row.items() if v is not None})


def _read_parquet(path: Path) -> Iterable[RawRecord]:
    table = pq.read_table(path)
    # Reading strings as binary keeps rows with invalid UTF-8 readable, so they are quarantined
    # instead of failing the whole file; valid text decodes back unchanged.
    binary_schema = pa.schema(
        [
            field.with_type(pa.binary()) if pa.types.is_string(field.type) else field
            for field in table.schema
        ]
    )
    table = table.cast(binary_schema)
    for number, row in enumerate(table.to_pylist(), start=1):
        fields = {
            key: value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
            for key, value in row.items()
        }
        yield RawRecord(str(path), number, fields)


def read_records(path: Path) -> list[RawRecord]:
    """Return every row of a CSV, JSONL or Parquet file, keeping unparseable rows as records."""
    kind = SUPPORTED_SUFFIXES[path.suffix.lower()]
    reader = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[kind]
    return list(reader(path))


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = value if isinstance(value, str) else str(value)
    return unicodedata.normalize("NFC", text).strip()


def validate_records(
    records: Sequence[RawRecord],
    *,
    dataset_name: str,
    version: str,
    allowed_regions: Iterable[str] = SPANISH_SPEAKING_REGIONS,
    field_defaults: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split records into accepted and quarantined rows.

    Reasons (several may apply, comma-separated): `malformed_record`, `invalid_utf8`,
    `invalid_type`, `missing_field`, `empty_text`, `unknown_region`, `duplicate_item_id` (the
    first valid row with an item_id is kept, later valid ones are quarantined). Text is stored
    NFC-normalized.
    """
    regions = {region.upper() for region in allowed_regions}
    defaults = dict(field_defaults or {})
    first_seen: dict[str, str] = {}
    accepted, quarantined = [], []

    for record in records:
        reasons, details = [], []
        values = {**defaults, **{k: v for k, v in record.fields.items() if v not in (None, "")}}
        item_id = _clean(values.get("item_id"))

        if record.parse_error:
            reasons.append("malformed_record")
            details.append(record.parse_error)
        invalid = sorted(k for k, v in record.fields.items() if _has_invalid_utf8(v))
        if invalid or _has_invalid_utf8(record.raw_text):
            reasons.append("invalid_utf8")
            details.append(f"bytes that are not valid UTF-8 in {invalid or ['the record']}")
        # Text fields must be strings; an item_id may be a number and is stored as text.
        wrong_type = sorted(
            name
            for name in REQUIRED_FIELDS
            if name != "item_id"
            and values.get(name) is not None
            and not isinstance(values.get(name), str)
        )
        if wrong_type:
            reasons.append("invalid_type")
            details.append(f"fields {wrong_type} are not strings")
        if not record.parse_error:
            missing = [
                name for name in REQUIRED_FIELDS if name != "text" and not _clean(values.get(name))
            ]
            if missing:
                reasons.append("missing_field")
                details.append(f"missing or empty required fields {missing}")
            if not _clean(values.get("text")):
                reasons.append("empty_text")
                details.append("field 'text' is missing or empty")
            region = (_clean(values.get("region")) or "").upper()
            if region and region not in regions:
                reasons.append("unknown_region")
                details.append(f"region {region!r} is not one of {sorted(regions)}")
        location = f"{Path(record.source_file).name}:{record.row_number}"
        if not reasons and item_id in first_seen:
            reasons.append("duplicate_item_id")
            details.append(f"item_id {item_id!r} already used at {first_seen[item_id]}")
        elif not reasons:
            first_seen[item_id] = location

        if reasons:
            raw = record.raw_text if record.raw_text is not None else record.fields
            quarantined.append(
                {
                    "dataset_name": dataset_name,
                    "dataset_version": version,
                    "source_file": record.source_file,
                    "row_number": record.row_number,
                    "item_id": _printable(item_id) if item_id else None,
                    "reason": ",".join(reasons),
                    "detail": "; ".join(details),
                    "raw_record": _printable(raw),
                }
            )
            continue

        extra = {k: v for k, v in record.fields.items() if k not in REQUIRED_FIELDS}
        accepted.append(
            {
                "dataset_name": dataset_name,
                "dataset_version": version,
                **{name: _clean(values.get(name)) for name in REQUIRED_FIELDS},
                "region": _clean(values["region"]).upper(),
                "extra": json.dumps(extra, ensure_ascii=False, sort_keys=True, default=str),
                "source_file": record.source_file,
                "row_number": record.row_number,
            }
        )

    return (
        pd.DataFrame(accepted, columns=BRONZE_COLUMNS),
        pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS),
    )


def ingest_files(
    dataset_name: str,
    paths: Sequence[str],
    *,
    allowed_regions: Iterable[str] = SPANISH_SPEAKING_REGIONS,
    field_defaults: Mapping[str, str] | None = None,
) -> IngestionResult:
    """Read and validate every configured file of one dataset."""
    files = resolve_source_files(paths)
    regions = sorted({region.upper() for region in allowed_regions})
    version = current_dataset_version(paths, regions, field_defaults)
    records = [record for path in files for record in read_records(path)]
    if not records:
        raise BenchmarkSourceError(
            f"Benchmark files {[str(p) for p in files]} contain no rows; expected at least one "
            f"item with fields {list(REQUIRED_FIELDS)}."
        )
    accepted, quarantined = validate_records(
        records,
        dataset_name=dataset_name,
        version=version,
        allowed_regions=regions,
        field_defaults=field_defaults,
    )
    return IngestionResult(dataset_name, version, accepted, quarantined, [str(p) for p in files])
