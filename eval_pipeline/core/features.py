"""Text features of a request input, the same for production traffic and benchmark items.

The features describe how noisy an input is and where it probably comes from, so that live
traffic can be compared with the benchmark it was evaluated on:

- ``char_length`` and ``token_count``: size of the text (tokens are runs of word characters);
- ``noisy_char_share``: share of the characters inside words that are digits mixed with
  letters or letters outside the Spanish alphabet (``0`` for ``o``, ``è`` for ``é``), the
  traces that OCR leaves;
- ``lost_accent_share``: share of tokens that are unknown as written but match a known
  accented word once accents are removed (``rapido`` for ``rápido``);
- ``oov_share``: share of the remaining tokens that the vocabulary does not contain, which
  typos raise;
- ``detected_region``: the region whose regional terms appear most often, or None.

The vocabulary is built from the benchmark (sentences, terms and references), so a clean
benchmark sentence has no out-of-vocabulary token. Nothing here imports Dagster or Spark.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMERIC_FEATURES = (
    "char_length",
    "token_count",
    "noisy_char_share",
    "lost_accent_share",
    "oov_share",
)
FEATURE_COLUMNS = (*NUMERIC_FEATURES, "detected_region", "estimated_noise_level")

SPANISH_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzáéíóúüñ")

_TOKEN = re.compile(r"\w+")
# Combining acute accent and combining diaeresis; the tilde of ñ is a different letter.
_ACCENT_MARKS = frozenset({"\u0301", "\u0308"})


def tokenize(text: str) -> list[str]:
    """Return the casefolded NFC word tokens of ``text`` (runs of letters, digits and ``_``)."""
    return _TOKEN.findall(unicodedata.normalize("NFC", text).casefold())


def strip_accents(word: str) -> str:
    """Remove acute accents and diaereses, keeping ``ñ``."""
    decomposed = unicodedata.normalize("NFD", word)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _ACCENT_MARKS))


@dataclass(frozen=True)
class Vocabulary:
    """Known words, their accented forms and the regional terms, built from a benchmark."""

    words: frozenset[str]
    accented_forms: dict[str, str]
    """Accent-stripped spelling of each accented word, mapped to the accented word."""
    region_terms: dict[str, str]
    """Accent-stripped regional term (one or more words), mapped to its region code."""


def build_vocabulary(items: pd.DataFrame) -> Vocabulary:
    """Build the vocabulary from benchmark rows with ``text``, ``term``, ``reference``, ``region``.

    A term used by several regions maps to none of them, because it cannot tell them apart.
    """
    words: set[str] = set()
    for column in ("text", "term", "reference"):
        for value in items[column].dropna():
            words.update(tokenize(value))
    accented = {strip_accents(word): word for word in words if strip_accents(word) != word}

    regions_of_term: dict[str, set[str]] = {}
    for term, region in zip(items["term"], items["region"], strict=True):
        key = " ".join(strip_accents(token) for token in tokenize(term))
        if key:
            regions_of_term.setdefault(key, set()).add(region)
    region_terms = {
        term: next(iter(regions)) for term, regions in regions_of_term.items() if len(regions) == 1
    }
    return Vocabulary(frozenset(words), accented, region_terms)


def _is_noisy_character(char: str, token: str) -> bool:
    if char.isdigit():
        # A number is not noise, but a digit inside a word ("c0mo") is.
        return any(other.isalpha() for other in token)
    return char.isalpha() and char not in SPANISH_LETTERS


def _detect_region(tokens: Sequence[str], vocabulary: Vocabulary) -> str | None:
    stripped = " " + " ".join(strip_accents(token) for token in tokens) + " "
    counts: Counter[str] = Counter()
    for term, region in vocabulary.region_terms.items():
        hits = stripped.count(f" {term} ")
        if hits:
            counts[region] += hits
    if not counts:
        return None
    ranked = counts.most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def text_features(text: str, vocabulary: Vocabulary) -> dict[str, object]:
    """Return the features of one input text (see the module docstring)."""
    tokens = tokenize(text)
    word_chars = sum(len(token) for token in tokens)
    noisy_chars = sum(_is_noisy_character(char, token) for token in tokens for char in token)

    lost_accents = 0
    unknown = 0
    for token in tokens:
        if token in vocabulary.words or token.isdigit():
            continue
        if strip_accents(token) == token and token in vocabulary.accented_forms:
            lost_accents += 1
        else:
            unknown += 1

    count = len(tokens)
    features: dict[str, object] = {
        "char_length": len(text),
        "token_count": count,
        "noisy_char_share": noisy_chars / word_chars if word_chars else 0.0,
        "lost_accent_share": lost_accents / count if count else 0.0,
        "oov_share": unknown / count if count else 0.0,
        "detected_region": _detect_region(tokens, vocabulary),
    }
    features["estimated_noise_level"] = estimate_noise_level(features)
    return features


def estimate_noise_level(features: dict[str, object]) -> str:
    """Return the benchmark noise level that an input's features resemble most.

    OCR traces win over lost accents, which win over unknown words (typos). The heuristic
    reads every OCR confusion between two Spanish letters (``e`` for ``c``) as a typo.
    """
    if features["noisy_char_share"] > 0:
        return "ocr"
    if features["lost_accent_share"] > 0 and features["oov_share"] == 0:
        return "no_accents"
    if features["oov_share"] > 0:
        return "typo"
    return "clean"


def compute_features(texts: Iterable[str | None], vocabulary: Vocabulary) -> pd.DataFrame:
    """Return one row of ``FEATURE_COLUMNS`` per text; a None text gets NaN features."""
    rows = []
    for text in texts:
        if isinstance(text, str):
            rows.append(text_features(text, vocabulary))
        else:
            rows.append(
                {
                    **{name: np.nan for name in NUMERIC_FEATURES},
                    "detected_region": None,
                    "estimated_noise_level": None,
                }
            )
    frame = pd.DataFrame(rows, columns=list(FEATURE_COLUMNS))
    for name in NUMERIC_FEATURES:
        frame[name] = frame[name].astype("float64")
    return frame
