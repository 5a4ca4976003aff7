"""Small offline models for demos and tests, logged and registered as MLflow pyfunc models.

They run on CPU in microseconds and differ clearly in quality:
- `EchoModel` returns its prompt unchanged, the floor any real model must beat;
- `GlossaryModel` looks the quoted term up in a regional glossary. With `fuzzy=False` and half
  of the glossary it is a weak version. It also returns an empty string for about one prompt in
  twenty, the way an unreliable endpoint does. With `fuzzy=True` and the whole glossary it
  tolerates typos and OCR errors in the term and is the strong version. A third version covers
  85% of the terms: good enough for the minimums, but a regression from the second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.pyfunc import PythonModel

from eval_pipeline.core.prompts import extract_quoted_term

logger = logging.getLogger(__name__)

UNKNOWN_TERM_ANSWER = "No conozco esa expresión."


def normalize_term(term: str) -> str:
    """Casefold and strip diacritics so that lookups survive lost accents."""
    decomposed = unicodedata.normalize("NFD", term.casefold().strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class EchoModel(PythonModel):
    """Baseline that answers with its own prompt."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        return model_input["prompt"].astype(str).tolist()


class GlossaryModel(PythonModel):
    """Answers with the glossary meaning of the term quoted in the prompt."""

    def __init__(self, fuzzy: bool, empty_answer_share: float = 0.0):
        self.fuzzy = fuzzy
        self.empty_answer_share = empty_answer_share
        self.glossary: dict[str, dict[str, str]] = {}

    def load_context(self, context) -> None:
        path = Path(context.artifacts["glossary"])
        self.glossary = json.loads(path.read_text(encoding="utf-8"))

    def _is_dropped(self, prompt: str) -> bool:
        bucket = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) % 1000
        return bucket < self.empty_answer_share * 1000

    def _lookup(self, term: str, region: str) -> str:
        key = normalize_term(term)
        regional = self.glossary.get(region, {})
        pooled = {k: v for entries in self.glossary.values() for k, v in entries.items()}
        for entries in (regional, pooled):
            if key in entries:
                return entries[key]
        if self.fuzzy:
            from rapidfuzz import fuzz, process

            for entries in (regional, pooled):
                match = process.extractOne(key, entries.keys(), scorer=fuzz.ratio, score_cutoff=70)
                if match:
                    return entries[match[0]]
        return UNKNOWN_TERM_ANSWER

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        answers = []
        for prompt, region in zip(model_input["prompt"], model_input["region"], strict=True):
            if self._is_dropped(prompt):
                answers.append("")
                continue
            term = extract_quoted_term(prompt)
            answers.append(self._lookup(term, region) if term else UNKNOWN_TERM_ANSWER)
        return answers


class ConstantModel(PythonModel):
    """Answers every prompt with the same text; gives summaries that are easy to compute by hand."""

    def __init__(self, answer: str):
        self.answer = answer

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        return [self.answer] * len(model_input)


class FaultyModel(PythonModel):
    """Fails in a chosen way per region, to show how failures become error codes.

    `failures` maps a region to "raise", "none", "empty" or "number"; other regions get "ok".
    """

    def __init__(self, failures: dict[str, str]):
        self.failures = failures

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[object]:
        answers: list[object] = []
        for region in model_input["region"]:
            failure = self.failures.get(region)
            if failure == "raise":
                raise RuntimeError(f"simulated failure for region {region}")
            answers.append({"none": None, "empty": "", "number": 42}.get(failure, "ok"))
        return answers


def build_glossary(items: Iterable[dict], share: float = 1.0) -> dict[str, dict[str, str]]:
    """Return {region: {normalized term: reference}} from benchmark items.

    With `share` below 1 only that share of the distinct terms (chosen by a stable hash, so the
    same terms every time) is kept.
    """
    glossary: dict[str, dict[str, str]] = {}
    for item in items:
        key = normalize_term(item["term"])
        bucket = int(hashlib.sha256(f"{item['region']}:{key}".encode()).hexdigest()[:8], 16)
        if bucket % 1000 >= share * 1000:
            continue
        glossary.setdefault(item["region"], {}).setdefault(key, item["reference"])
    return glossary


@dataclass(frozen=True)
class DemoModelSpec:
    """One demo model version to register."""

    registered_name: str
    description: str
    kind: str  # "echo" or "glossary"
    glossary_share: float = 1.0
    fuzzy: bool = False
    empty_answer_share: float = 0.0

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


EXPLAINER_MODEL = "regional-explainer"
BASELINE_MODEL = "echo-baseline"

DEMO_MODEL_SPECS = (
    DemoModelSpec(
        EXPLAINER_MODEL,
        "Glossary of half the terms, exact lookup, 5% empty answers",
        "glossary",
        glossary_share=0.5,
        empty_answer_share=0.05,
    ),
    DemoModelSpec(
        EXPLAINER_MODEL,
        "Glossary of every term with fuzzy lookup that tolerates noisy input",
        "glossary",
        fuzzy=True,
    ),
    DemoModelSpec(
        EXPLAINER_MODEL,
        "Glossary of 85% of the terms with fuzzy lookup: clears minimums, regresses on version 2",
        "glossary",
        glossary_share=0.85,
        fuzzy=True,
    ),
    DemoModelSpec(BASELINE_MODEL, "Returns its prompt unchanged", "echo"),
)
