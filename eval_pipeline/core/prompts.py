"""Versioned prompt templates that turn a benchmark item into the text a model receives."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass


class PromptTemplateError(ValueError):
    """Raised when a template is unknown or an item lacks a field the template needs."""


@dataclass(frozen=True)
class PromptTemplate:
    """A named, versioned prompt; its hash changes whenever its text changes."""

    name: str
    version: str
    text: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(
            field for _, field, _, _ in string.Formatter().parse(self.text) if field is not None
        )

    @property
    def template_hash(self) -> str:
        digest = hashlib.sha256(f"{self.name}\n{self.version}\n{self.text}".encode())
        return digest.hexdigest()[:16]

    @property
    def template_id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> str:
        missing = [field for field in self.fields if not values.get(field)]
        if missing:
            raise PromptTemplateError(
                f"Prompt template {self.template_id} needs non-empty values for {missing}; "
                f"got fields {sorted(values)}."
            )
        return self.text.format(**values)


# The term is quoted with «» so that models, and the demo glossary models, can find it even when
# the surrounding sentence carries noise.
DEFINE_TERM_V1 = PromptTemplate(
    name="define_term",
    version="1",
    text=(
        "Eres un asistente que explica expresiones regionales del español.\n"
        "Frase: {text}\n"
        "¿Qué significa «{term}» en español neutro? Responde solo con el significado."
    ),
)

TEMPLATES: dict[str, PromptTemplate] = {DEFINE_TERM_V1.template_id: DEFINE_TERM_V1}


def get_template(template_id: str) -> PromptTemplate:
    """Return the registered template with id `name@version`."""
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise PromptTemplateError(
            f"Unknown prompt template {template_id!r}; expected one of {sorted(TEMPLATES)}."
        ) from None


def extract_quoted_term(prompt: str) -> str | None:
    """Return the text between the last «» pair of a rendered prompt, or None when absent."""
    start = prompt.rfind("«")
    end = prompt.find("»", start + 1)
    if start < 0 or end < 0:
        return None
    return prompt[start + 1 : end]
