"""Validate the regional Spanish benchmark shipped in eval_pipeline/datasets/regional_es.jsonl."""

import gzip
import json
import math
import re
import unicodedata
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

DATASET = files("eval_pipeline") / "datasets" / "regional_es.jsonl"
REGIONS = ("SV", "PE", "MX")
REQUIRED_FIELDS = ("item_id", "region", "text", "term", "reference", "task_type")
TASK_TYPE = "define_term"
MIN_ITEMS = 180
MIN_ITEMS_PER_REGION = 60
MIN_TEXT_WORDS = 5
MAX_TEXT_WORDS = 25
MAX_REFERENCE_WORDS = 4
REQUIRED_CHARACTERS = "áéíóúñü¿¡"

# Per-country token counts over geotagged tweets (INGEOTEC regional vocabularies, MIT license).
# The data is not part of the repository, so the test looks for it next to the checkout.
REPO_ROOT = Path(__file__).resolve().parents[2]
VOCABULARY_DIR = REPO_ROOT.parent / "shared" / "data" / "ingeotec-regional-voc"
MIN_REGIONAL_SHARE = 0.9


def load_items() -> list[dict]:
    lines = DATASET.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return load_items()


def word_count(text: str) -> int:
    return len(text.split())


def normalize_token(word: str) -> str:
    """Lower-case `word` and strip accents, including the tilde of ñ, like the vocabulary files."""
    decomposed = unicodedata.normalize("NFD", word.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def read_per_million(path: Path, tokens: set[str]) -> dict[str, float]:
    """Read one gzip TSV vocabulary (token, occs, ndocs, weight) and return the frequency of
    each of `tokens` per million token occurrences in that country."""
    counts = dict.fromkeys(tokens, 0)
    total = 0
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        for line_number, line in enumerate(stream):
            token, occs = line.rstrip("\n").split("\t")[:2]
            if line_number == 0 and not occs.isdigit():
                continue  # header row
            total += int(occs)
            if token in counts:
                counts[token] += int(occs)
    return {token: count / total * 1e6 for token, count in counts.items()}


def distinctiveness(token: str, region: str, frequencies: dict[str, dict[str, float]]) -> float:
    """Return the ratio of a token's frequency in `region` to its maximum in other countries."""
    own = frequencies[region][token]
    rival = max(
        per_million[token] for country, per_million in frequencies.items() if country != region
    )
    if rival == 0:
        return math.inf if own > 0 else 0.0
    return own / rival


def test_dataset_is_utf8_jsonl():
    raw = DATASET.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        pytest.fail(f"dataset is not valid UTF-8: {error}")

    for line_number, line in enumerate(text.splitlines(), start=1):
        assert line.strip(), f"line {line_number} is blank"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            pytest.fail(f"line {line_number} is not valid JSON: {error}")
        assert isinstance(record, dict), f"line {line_number} is not a JSON object"


def test_dataset_has_no_unicode_escapes():
    text = DATASET.read_text(encoding="utf-8")
    escapes = sorted(set(re.findall(r"\\u[0-9a-fA-F]{4}", text)))
    assert not escapes, f"write real characters instead of escapes: {escapes}"


def test_item_count_total(items):
    assert len(items) >= MIN_ITEMS, f"{len(items)} items, expected at least {MIN_ITEMS}"


@pytest.mark.parametrize("region", REGIONS)
def test_item_count_per_region(items, region):
    count = sum(1 for item in items if item.get("region") == region)
    assert count >= MIN_ITEMS_PER_REGION, (
        f"{count} items for {region}, expected at least {MIN_ITEMS_PER_REGION}"
    )


def test_required_fields_nonempty_strings(items):
    for index, item in enumerate(items):
        item_id = item.get("item_id", f"<item {index}>")
        for field in REQUIRED_FIELDS:
            assert field in item, f"{item_id}: missing field {field!r}"
            assert isinstance(item[field], str), f"{item_id}: {field!r} is not a string"
            assert item[field].strip(), f"{item_id}: {field!r} is empty"


def test_item_ids_unique(items):
    counts = Counter(item["item_id"] for item in items)
    duplicates = sorted(item_id for item_id, count in counts.items() if count > 1)
    assert not duplicates, f"duplicate item_id values: {duplicates}"


def test_region_is_known(items):
    for item in items:
        assert item["region"] in REGIONS, (
            f"{item['item_id']}: invalid region {item['region']!r}, expected one of {REGIONS}"
        )


def test_task_type_is_define_term(items):
    for item in items:
        assert item["task_type"] == TASK_TYPE, (
            f"{item['item_id']}: task_type {item['task_type']!r}, expected {TASK_TYPE!r}"
        )


def test_term_occurs_in_text(items):
    for item in items:
        pattern = rf"\b{re.escape(item['term'])}\b"
        assert re.search(pattern, item["text"], flags=re.IGNORECASE), (
            f"{item['item_id']}: term {item['term']!r} not found as a word in {item['text']!r}"
        )


def test_reference_word_count(items):
    for item in items:
        count = word_count(item["reference"])
        assert 1 <= count <= MAX_REFERENCE_WORDS, (
            f"{item['item_id']}: reference {item['reference']!r} has {count} words, "
            f"expected 1 to {MAX_REFERENCE_WORDS}"
        )


def test_text_word_count(items):
    for item in items:
        count = word_count(item["text"])
        assert MIN_TEXT_WORDS <= count <= MAX_TEXT_WORDS, (
            f"{item['item_id']}: text has {count} words, "
            f"expected {MIN_TEXT_WORDS} to {MAX_TEXT_WORDS}"
        )


@pytest.mark.parametrize("character", REQUIRED_CHARACTERS)
def test_required_character_present(character):
    text = DATASET.read_text(encoding="utf-8")
    assert character in text, f"character {character!r} does not occur in the dataset"


def test_terms_more_frequent_in_own_region(items):
    """Check that each term is more frequent per million tweet tokens in its own country than
    in every other country of the vocabulary data. A multi-word term is judged by its most
    distinctive token, the one with the highest ratio of own to maximum other frequency."""
    if not VOCABULARY_DIR.is_dir():
        pytest.skip(f"regional vocabulary folder is absent: looked for {VOCABULARY_DIR}")

    pairs = sorted({(item["region"], item["term"].casefold()) for item in items})
    tokens_by_pair = {
        (region, term): [normalize_token(word) for word in re.findall(r"\w+", term)]
        for region, term in pairs
    }
    all_tokens = {token for tokens in tokens_by_pair.values() for token in tokens}
    frequencies = {
        path.name.removesuffix(".tsv.gz"): read_per_million(path, all_tokens)
        for path in sorted(VOCABULARY_DIR.glob("*.tsv.gz"))
    }
    for region in REGIONS:
        assert region in frequencies, f"no vocabulary file {region}.tsv.gz in {VOCABULARY_DIR}"

    failures = []
    for (region, term), tokens in tokens_by_pair.items():
        token = max(tokens, key=lambda token: distinctiveness(token, region, frequencies))
        own = frequencies[region][token]
        others = [country for country in frequencies if country != region]
        if any(frequencies[country][token] >= own for country in others):
            per_country = ", ".join(
                f"{country} {frequencies[country][token]:.2f}" for country in frequencies
            )
            failures.append(f"{region} {term!r} (token {token!r}: {per_country})")

    share = 1 - len(failures) / len(pairs)
    assert share >= MIN_REGIONAL_SHARE, (
        f"{share:.1%} of {len(pairs)} (region, term) pairs are most frequent per million in "
        f"their own region, expected at least {MIN_REGIONAL_SHARE:.0%}; not most frequent: "
        + "; ".join(failures)
    )
