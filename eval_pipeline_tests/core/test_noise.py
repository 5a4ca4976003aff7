import json
import os
import random
import re
import subprocess
import sys
import unicodedata

import pytest

from eval_pipeline.core.noise import (
    DEFAULT_NOISE_SPECS,
    NOISE_LEVELS,
    NoiseSpec,
    apply_noise,
    noise_spec_json,
    variant_seed,
)

SENTENCE = "¿Qué onda, güey? Ese chamaco está bien padre, ¡no mames!"
SPECS = {spec.level: spec for spec in DEFAULT_NOISE_SPECS}
NOISY = [level for level in NOISE_LEVELS if level != "clean"]

# Computed once with the version "1" algorithms. A change here means stored variants no
# longer match new ones, so bump NoiseSpec.version together with the pinned value.
PINNED_OUTPUTS = {
    "clean": "¿Qué onda, güey? Ese chamaco está bien padre, ¡no mames!",
    "ocr": "¿Qué onda, güey? Ese chamaeo esta bicn padre, ¡no mames!",
    "typo": "¿Qué onda, güey? Ese chamaco está bein padre, ¡noo mames!",
    "no_accents": "¿Que onda, guey? Ese chamaco esta bien padre, ¡no mames!",
}

WITHOUT_ACCENTS = "No tengo plata para el bondi, boludo."

CORPUS = [
    SENTENCE,
    "Che, ese pibe es re copado y la mina está re buena.",
    "¡Qué chévere, pana! Vamos a la rumba el viernes.",
    WITHOUT_ACCENTS,
    "Ñaño, ¿cachái lo que te digo? Está la raja.",
    "El guagua lloró toda la noche en Ñuñoa.",
    "¿Y qué? Él sabía que el pingüino no vendría.",
]


def _whitespace_runs(text: str) -> list[str]:
    return re.findall(r"\s+", text)


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_pinned_output_per_level(level):
    assert apply_noise(SENTENCE, SPECS[level], "mx-001", 0) == PINNED_OUTPUTS[level]


def test_variant_seed_pinned_value():
    assert variant_seed("mx-001", "ocr", 0) == 10245238712802354408


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_variant_seed_same_in_new_process(hash_seed):
    # String hash() changes with PYTHONHASHSEED, so two fixed values would expose its use.
    code = "from eval_pipeline.core.noise import variant_seed; print(variant_seed('mx-1','typo',7))"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
    assert int(completed.stdout) == variant_seed("mx-1", "typo", 7)


def test_variant_seed_separates_fields():
    assert variant_seed("a", "ocr", 1) != variant_seed("a", "ocr", 2)
    assert variant_seed("a", "ocr", 1) != variant_seed("b", "ocr", 1)
    assert variant_seed("a", "ocr", 1) != variant_seed("a", "typo", 1)


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_same_inputs_same_output(level):
    first = apply_noise(SENTENCE, SPECS[level], "ar-042", 5)
    second = apply_noise(SENTENCE, SPECS[level], "ar-042", 5)
    assert first == second


@pytest.mark.parametrize("level", ["ocr", "typo"])
def test_item_ids_give_different_outputs(level):
    outputs = {apply_noise(SENTENCE, SPECS[level], f"mx-{index:03d}") for index in range(20)}
    assert len(outputs) >= 15


@pytest.mark.parametrize("level", ["ocr", "typo"])
def test_seeds_give_different_outputs(level):
    outputs = {apply_noise(SENTENCE, SPECS[level], "mx-001", seed) for seed in range(20)}
    assert len(outputs) >= 15


def test_partial_no_accents_depends_on_item():
    spec = NoiseSpec("no_accents", 0.5, "1")
    text = "¿Y qué? Él sabía que el pingüino no vendría."
    outputs = {apply_noise(text, spec, f"cl-{index}") for index in range(20)}
    assert len(outputs) >= 4


def test_global_random_state_untouched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    apply_noise(SENTENCE, SPECS["typo"], "mx-001")
    assert random.random() == expected


@pytest.mark.parametrize("level", NOISE_LEVELS)
@pytest.mark.parametrize("text", CORPUS)
def test_inverted_marks_preserved(level, text):
    output = apply_noise(text, SPECS[level], "item-1")
    assert output.count("¿") == text.count("¿")
    assert output.count("¡") == text.count("¡")
    assert output.count("?") == text.count("?")
    assert output.count("!") == text.count("!")
    assert output.count(",") == text.count(",")


@pytest.mark.parametrize("level", NOISE_LEVELS)
@pytest.mark.parametrize("text", CORPUS)
def test_whitespace_and_word_count_stable(level, text):
    for index in range(10):
        output = apply_noise(text, SPECS[level], f"item-{index}")
        assert _whitespace_runs(output) == _whitespace_runs(text)
        assert len(output.split()) == len(text.split())


@pytest.mark.parametrize("level", ["ocr", "typo"])
@pytest.mark.parametrize("text", CORPUS)
def test_noisy_level_changes_sentence(level, text):
    for index in range(10):
        assert apply_noise(text, SPECS[level], f"item-{index}") != text


@pytest.mark.parametrize("text", [text for text in CORPUS if text != WITHOUT_ACCENTS])
def test_no_accents_changes_accented_sentence(text):
    assert apply_noise(text, SPECS["no_accents"], "item-1") != text


@pytest.mark.parametrize("level", ["ocr", "typo", "no_accents"])
def test_change_forced_at_tiny_rate(level):
    spec = NoiseSpec(level, 1e-9, "1")
    for index in range(10):
        assert apply_noise("Él está aquí", spec, f"item-{index}") != "Él está aquí"


@pytest.mark.parametrize("level", NOISY)
def test_zero_rate_returns_input(level):
    assert apply_noise(SENTENCE, NoiseSpec(level, 0.0, "1"), "mx-001") == SENTENCE


def test_clean_returns_input():
    assert apply_noise(SENTENCE, SPECS["clean"], "mx-001") == SENTENCE


def test_no_accents_strips_acute_and_diaeresis():
    text = "á é í ó ú ü Á É Í Ó Ú Ü"
    assert apply_noise(text, SPECS["no_accents"], "x") == "a e i o u u A E I O U U"


def test_no_accents_keeps_enye():
    output = apply_noise("Mañana el Ñandú", SPECS["no_accents"], "x")
    assert output == "Mañana el Ñandu"


def test_no_accents_keeps_other_marks():
    assert apply_noise("à ç ñ", SPECS["no_accents"], "x") == "à ç ñ"


def test_no_accents_full_rate_strips_all():
    output = apply_noise("¿Y qué? Él sabía que el pingüino no vendría.", SPECS["no_accents"], "x")
    decomposed = unicodedata.normalize("NFD", output)
    assert "\u0301" not in decomposed
    assert "\u0308" not in decomposed


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_output_is_nfc_for_nfd_input(level):
    decomposed = unicodedata.normalize("NFD", SENTENCE)
    output = apply_noise(decomposed, SPECS[level], "mx-001")
    assert unicodedata.is_normalized("NFC", output)
    assert output == PINNED_OUTPUTS[level]


@pytest.mark.parametrize("level", NOISE_LEVELS)
def test_empty_string_stays_empty(level):
    assert apply_noise("", SPECS[level], "x") == ""


@pytest.mark.parametrize("level", NOISE_LEVELS)
@pytest.mark.parametrize("text", ["a", "ñ", "é", "y", "?", " ", "¿", "7"])
def test_one_character_never_empty(level, text):
    for index in range(10):
        output = apply_noise(text, SPECS[level], f"item-{index}")
        assert output
        assert _whitespace_runs(output) == _whitespace_runs(text)


def test_punctuation_only_text_unchanged():
    for level in NOISE_LEVELS:
        assert apply_noise("¿¡...!?", SPECS[level], "x") == "¿¡...!?"


def test_typo_one_letter_word_kept():
    for index in range(30):
        output = apply_noise("y", NoiseSpec("typo", 1.0, "1"), f"item-{index}")
        assert len(output) >= 1
        assert output.isalpha()


def test_typo_full_rate_keeps_every_word():
    text = "a la de y o un mi"
    for index in range(20):
        output = apply_noise(text, NoiseSpec("typo", 1.0, "1"), f"item-{index}")
        assert len(output.split()) == len(text.split())


def test_typo_substitutes_keyboard_neighbours():
    # A one-letter word allows only substitution and doubling.
    outputs = {apply_noise("ñ", NoiseSpec("typo", 1.0, "1"), f"i{n}") for n in range(60)}
    assert outputs <= {"ññ", "l", "p"}
    assert {"l", "p"} <= outputs


def test_typo_keeps_case_on_substitution():
    outputs = {apply_noise("Q", NoiseSpec("typo", 1.0, "1"), f"i{n}") for n in range(60)}
    assert outputs <= {"QQ", "A", "W"}


def test_ocr_uses_known_confusions():
    outputs = {apply_noise("m", NoiseSpec("ocr", 1.0, "1"), f"i{n}") for n in range(10)}
    assert outputs == {"rn"}
    outputs = {apply_noise("rn", NoiseSpec("ocr", 1.0, "1"), f"i{n}") for n in range(10)}
    assert outputs == {"m"}
    outputs = {apply_noise("ñ", NoiseSpec("ocr", 1.0, "1"), f"i{n}") for n in range(40)}
    assert outputs == {"n", "fi"}


def test_ocr_without_sources_unchanged():
    assert apply_noise("ga ya", NoiseSpec("ocr", 1.0, "1"), "x") == "ga ya"


def test_no_accents_without_accents_unchanged():
    assert apply_noise(WITHOUT_ACCENTS, SPECS["no_accents"], "x") == WITHOUT_ACCENTS


def test_non_string_text_rejected():
    with pytest.raises(TypeError):
        apply_noise(None, SPECS["ocr"], "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("level", "rate"),
    [("blur", 0.1), ("ocr", -0.1), ("ocr", 1.5), ("clean", 0.2)],
)
def test_spec_rejects_invalid_values(level, rate):
    with pytest.raises(ValueError):
        NoiseSpec(level, rate, "1")


def test_spec_rejects_empty_version():
    with pytest.raises(ValueError):
        NoiseSpec("ocr", 0.1, "")


def test_default_specs_cover_levels():
    assert tuple(spec.level for spec in DEFAULT_NOISE_SPECS) == NOISE_LEVELS
    assert SPECS["clean"].rate == 0.0
    assert SPECS["no_accents"].rate == 1.0


def test_spec_json_canonical():
    text = noise_spec_json()
    assert " " not in text
    decoded = json.loads(text)
    assert [entry["level"] for entry in decoded] == list(NOISE_LEVELS)
    assert list(decoded[0]) == sorted(decoded[0])
    assert noise_spec_json(reversed(DEFAULT_NOISE_SPECS)) == text


def test_spec_json_pinned():
    assert noise_spec_json([NoiseSpec("typo", 0.05, "1")]) == (
        '[{"level":"typo","rate":0.05,"version":"1"}]'
    )


def test_spec_json_rejects_duplicates():
    with pytest.raises(ValueError, match="typo"):
        noise_spec_json([NoiseSpec("typo", 0.05, "1"), NoiseSpec("typo", 0.1, "1")])
