import pandas as pd
import pytest

from eval_pipeline.core.features import (
    build_vocabulary,
    compute_features,
    estimate_noise_level,
    strip_accents,
    text_features,
)
from eval_pipeline.core.ingest import ingest_files
from eval_pipeline.core.items import build_evaluation_items
from eval_pipeline.core.noise import DEFAULT_NOISE_SPECS
from eval_pipeline.core.prompts import get_template
from eval_pipeline.resources import packaged_benchmark_path

ITEMS = pd.DataFrame(
    [
        {"region": "SV", "text": "El cipote corre rápido.", "term": "cipote", "reference": "niño"},
        {"region": "PE", "text": "Mi jato está cerca.", "term": "jato", "reference": "casa"},
        {"region": "MX", "text": "No tengo lana.", "term": "lana", "reference": "dinero"},
    ]
)


@pytest.fixture(scope="module")
def vocabulary():
    return build_vocabulary(ITEMS)


def test_strip_accents_keeps_enye():
    assert strip_accents("rápido pingüino año") == "rapido pinguino año"


def test_clean_text_has_no_noise(vocabulary):
    features = text_features("El cipote corre rápido.", vocabulary)
    assert features["token_count"] == 4
    assert features["char_length"] == 23
    assert features["noisy_char_share"] == 0.0
    assert features["lost_accent_share"] == 0.0
    assert features["oov_share"] == 0.0
    assert features["detected_region"] == "SV"
    assert features["estimated_noise_level"] == "clean"


def test_ocr_digit_in_word_is_noisy(vocabulary):
    # "c1pote" has one digit among 6 word characters; "corre" and "el" are clean: 1 of 13.
    features = text_features("El c1pote corre", vocabulary)
    assert features["noisy_char_share"] == pytest.approx(1 / 13)
    assert features["estimated_noise_level"] == "ocr"


def test_foreign_accent_is_noisy(vocabulary):
    features = text_features("Mi jato èstá", vocabulary)
    # "è" is one of the 10 word characters.
    assert features["noisy_char_share"] == pytest.approx(1 / 10)


def test_number_is_not_noise(vocabulary):
    assert text_features("No tengo 20 lana", vocabulary)["noisy_char_share"] == 0.0


def test_lost_accent_counted(vocabulary):
    features = text_features("Mi jato esta cerca", vocabulary)
    assert features["lost_accent_share"] == pytest.approx(1 / 4)
    assert features["oov_share"] == 0.0
    assert features["estimated_noise_level"] == "no_accents"


def test_typo_is_out_of_vocabulary(vocabulary):
    features = text_features("No tengo lanaa", vocabulary)
    assert features["oov_share"] == pytest.approx(1 / 3)
    assert features["estimated_noise_level"] == "typo"


def test_region_tie_is_unknown(vocabulary):
    assert text_features("cipote y jato", vocabulary)["detected_region"] is None
    assert text_features("hola", vocabulary)["detected_region"] is None


def test_shared_term_detects_no_region():
    items = pd.concat([ITEMS, ITEMS.iloc[[2]].assign(region="SV")], ignore_index=True)
    vocabulary = build_vocabulary(items)
    assert "lana" not in vocabulary.region_terms
    assert text_features("No tengo lana", vocabulary)["detected_region"] is None


def test_compute_features_none_text(vocabulary):
    frame = compute_features(["Mi jato", None], vocabulary)
    assert len(frame) == 2
    assert frame["token_count"].tolist()[0] == 2.0
    assert frame["token_count"].isna().tolist() == [False, True]
    assert frame["estimated_noise_level"].tolist() == ["clean", None]


def test_estimate_noise_level_order():
    base = {"noisy_char_share": 0.0, "lost_accent_share": 0.0, "oov_share": 0.0}
    assert estimate_noise_level({**base, "noisy_char_share": 0.1, "oov_share": 0.2}) == "ocr"
    assert estimate_noise_level({**base, "lost_accent_share": 0.1, "oov_share": 0.2}) == "typo"


def test_benchmark_levels_are_recognized():
    accepted = ingest_files("regional_es", [packaged_benchmark_path()]).accepted
    items = build_evaluation_items(accepted, get_template("define_term@1"), DEFAULT_NOISE_SPECS, 0)
    features = compute_features(items["text"], build_vocabulary(accepted))
    levels = pd.crosstab(items["noise_level"].to_numpy(), features["estimated_noise_level"])
    # Every clean sentence is in the vocabulary; noisy ones are rarely mistaken for clean.
    assert levels.loc["clean", "clean"] == len(accepted)
    assert levels.loc["typo"].get("clean", 0) <= 0.02 * len(accepted)
    assert levels.loc["ocr"].get("clean", 0) <= 0.02 * len(accepted)
    assert levels.loc["no_accents", "no_accents"] >= 0.5 * len(accepted)
    detected = features["detected_region"].to_numpy() == items["region"].to_numpy()
    assert detected[items["noise_level"].to_numpy() == "clean"].mean() >= 0.95
