"""Deterministic noisy variants of Spanish benchmark text.

Each variant is a pure function of (text, spec, item_id, seed). Every call seeds its own
``random.Random`` from a SHA-256 digest, so the same inputs give the same output on any
machine and in any process. No global random state is read or changed.

Guarantees shared by all levels:

* Output is NFC, and NFD input is normalized to NFC first. ``clean`` returns the NFC form
  of the input, which equals the input for NFC text.
* Punctuation (including ``¿`` and ``¡``), digits outside the OCR confusions and all
  whitespace are left alone, so the whitespace runs of the output equal those of the input
  and the word count (``len(text.split())``) does not change.
* Non-empty input gives non-empty output, because a letter is dropped only from a word that
  keeps at least one other character.
* For ``ocr``, ``typo`` and ``no_accents`` with ``rate > 0``, the output differs from the
  NFC input whenever the text contains at least one eligible character. Eligible means an
  OCR confusion source for ``ocr``, a letter for ``typo`` and a letter with an acute
  accent or diaeresis for ``no_accents``. With ``rate == 0`` these levels return the NFC
  input unchanged.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

NOISE_LEVELS: tuple[str, ...] = ("clean", "ocr", "typo", "no_accents")

_ALGORITHM_VERSION = "1"


@dataclass(frozen=True)
class NoiseSpec:
    """Noise level, its rate and the version of the algorithm that produced a variant.

    ``rate`` is the probability that one eligible unit changes: an OCR confusion source for
    ``ocr``, a letter for ``typo``, an accented letter for ``no_accents``. Bump ``version``
    whenever the algorithm for a level changes, so stored variants can be distinguished.
    """

    level: str
    rate: float
    version: str

    def __post_init__(self) -> None:
        if self.level not in NOISE_LEVELS:
            raise ValueError(
                f"invalid noise level {self.level!r}: expected one of {', '.join(NOISE_LEVELS)}"
            )
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"invalid rate {self.rate!r} for {self.level!r}: expected 0..1")
        if self.level == "clean" and self.rate != 0.0:
            raise ValueError(f"invalid rate {self.rate!r} for 'clean': expected 0.0")
        if not self.version:
            raise ValueError(f"missing version for noise level {self.level!r}")


# The rates are chosen so that a 60-character sentence gets a few edits per noisy level,
# not calibrated against real OCR output or real typing logs.
DEFAULT_NOISE_SPECS: tuple[NoiseSpec, ...] = (
    NoiseSpec("clean", 0.0, _ALGORITHM_VERSION),
    NoiseSpec("ocr", 0.10, _ALGORITHM_VERSION),
    NoiseSpec("typo", 0.05, _ALGORITHM_VERSION),
    NoiseSpec("no_accents", 1.0, _ALGORITHM_VERSION),
)


def noise_spec_json(specs: Iterable[NoiseSpec] = DEFAULT_NOISE_SPECS) -> str:
    """Return the specs as canonical JSON, ordered by ``NOISE_LEVELS``.

    Keys are sorted and separators carry no spaces, so equal spec sets always give the
    same string. Raises ValueError when a level appears more than once.
    """
    spec_list = list(specs)
    levels = [spec.level for spec in spec_list]
    duplicates = sorted({level for level in levels if levels.count(level) > 1})
    if duplicates:
        raise ValueError(f"duplicate noise levels in specs: {', '.join(duplicates)}")

    spec_list.sort(key=lambda spec: NOISE_LEVELS.index(spec.level))
    return json.dumps(
        [asdict(spec) for spec in spec_list],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def variant_seed(item_id: str, level: str, seed: int) -> int:
    """Return a 64-bit seed derived from SHA-256 of the item, level and base seed.

    The value is the same on every machine and Python run, unlike ``hash()``, which is
    salted per process for strings.
    """
    # JSON of a list encodes the three fields without ambiguity, whatever characters the
    # item id contains.
    key = json.dumps([item_id, level, seed], ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def apply_noise(text: str, spec: NoiseSpec, item_id: str, seed: int = 0) -> str:
    """Return the noisy variant of ``text`` for ``spec``, in NFC.

    The output depends only on the arguments. See the module docstring for what each level
    preserves and when a change is guaranteed.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")

    text = unicodedata.normalize("NFC", text)
    if spec.level == "clean" or spec.rate == 0.0 or not text:
        return text

    rng = random.Random(variant_seed(item_id, spec.level, seed))
    noisy = _LEVEL_FUNCTIONS[spec.level](text, spec.rate, rng)
    return unicodedata.normalize("NFC", noisy)


# Only random() is used, because the random module documentation ("Notes on
# Reproducibility") promises a stable random() sequence for a given seed across Python
# versions. choice(), randrange() and shuffle() carry no such promise.
def _pick_index(rng: random.Random, count: int) -> int:
    return min(int(rng.random() * count), count - 1)


def _pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[_pick_index(rng, len(options))]


# ---------------------------------------------------------------------------------------
# OCR confusions
# ---------------------------------------------------------------------------------------

# Two-character sources are matched before one-character sources, so "rn" becomes "m"
# rather than having its letters confused one by one.
_OCR_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "rn": ("m",),
    "cl": ("d",),
    "m": ("rn",),
    "d": ("cl",),
    "l": ("1", "I"),
    "I": ("l", "1"),
    "1": ("l", "I"),
    "O": ("0",),
    "o": ("0",),
    "0": ("O",),
    "e": ("c",),
    "c": ("e",),
    "u": ("v",),
    "v": ("u",),
    "h": ("b",),
    "b": ("h",),
    "S": ("5",),
    "5": ("S",),
    "B": ("8",),
    "8": ("B",),
    # The tilde is a small mark that OCR drops or splits off into a separate glyph.
    "ñ": ("n", "fi"),
    "Ñ": ("N",),
    # Accent marks are read as missing or as a different mark.
    "á": ("a", "à", "ä"),
    "é": ("e", "è", "ë"),
    "í": ("i", "ì", "l"),
    "ó": ("o", "ò", "ö"),
    "ú": ("u", "ù", "ü"),
    "ü": ("u", "ú"),
    "Á": ("A", "À"),
    "É": ("E", "È"),
    "Í": ("I", "Ì"),
    "Ó": ("O", "Ò"),
    "Ú": ("U", "Ù"),
    "Ü": ("U", "Ú"),
}


def _ocr_units(text: str) -> list[tuple[str, bool]]:
    """Split text into units, each flagged as an OCR confusion source or not."""
    units: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if len(pair) == 2 and pair in _OCR_CONFUSIONS:
            units.append((pair, True))
            i += 2
        else:
            units.append((text[i], text[i] in _OCR_CONFUSIONS))
            i += 1
    return units


def _apply_ocr(text: str, rate: float, rng: random.Random) -> str:
    units = _ocr_units(text)
    eligible = [index for index, (_, is_source) in enumerate(units) if is_source]
    if not eligible:
        return text

    pieces = [unit for unit, _ in units]
    for index in eligible:
        if rng.random() < rate:
            pieces[index] = _pick(rng, _OCR_CONFUSIONS[units[index][0]])

    noisy = "".join(pieces)
    if noisy != text:
        return noisy

    # Single replacement of a unit by a different string always changes the text.
    pieces = [unit for unit, _ in units]
    index = eligible[_pick_index(rng, len(eligible))]
    pieces[index] = _pick(rng, _OCR_CONFUSIONS[units[index][0]])
    return "".join(pieces)


# ---------------------------------------------------------------------------------------
# Keyboard typos
# ---------------------------------------------------------------------------------------

# Letter rows of the Spanish (ISO es) QWERTY layout with the horizontal offset of each row's
# first key, in key widths relative to Q. On ISO boards A sits a quarter key right of Q and
# Z three quarters right of Q, because the extra "<" key precedes Z.
_KEYBOARD_ROWS: tuple[tuple[str, float], ...] = (
    ("qwertyuiop", 0.0),
    ("asdfghjklñ", 0.25),
    ("zxcvbnm", 0.75),
)


def _keyboard_neighbours() -> dict[str, str]:
    """Map each lowercase letter to the letters on keys that touch it."""
    positions: dict[str, tuple[int, float]] = {}
    for row_index, (letters, offset) in enumerate(_KEYBOARD_ROWS):
        for column, letter in enumerate(letters):
            positions[letter] = (row_index, offset + column)

    neighbours: dict[str, str] = {}
    for letter, (row, x) in positions.items():
        touching = []
        for other, (other_row, other_x) in positions.items():
            if other == letter:
                continue
            same_row_adjacent = other_row == row and abs(other_x - x) == 1.0
            # Keys in adjacent rows touch when they overlap horizontally.
            adjacent_row_overlap = abs(other_row - row) == 1 and abs(other_x - x) < 1.0
            if same_row_adjacent or adjacent_row_overlap:
                touching.append(other)
        neighbours[letter] = "".join(sorted(touching))
    return neighbours


_NEIGHBOURS = _keyboard_neighbours()

_TYPO_OPERATIONS = ("substitute", "drop", "double", "swap")


def _typo_operations(word: str, index: int, kept: int) -> list[str]:
    """List the typo operations that apply to ``word[index]``.

    ``kept`` is the number of characters of the word still in the output. A drop needs two,
    so the word never vanishes and the whitespace structure stays intact.
    """
    char = word[index]
    operations = []
    if char.lower() in _NEIGHBOURS:
        operations.append("substitute")
    if kept >= 2:
        operations.append("drop")
    operations.append("double")
    following = word[index + 1] if index + 1 < len(word) else ""
    if following.isalpha() and following != char:
        operations.append("swap")
    return operations


def _type_word(word: str, chosen: set[int], rng: random.Random) -> str:
    """Apply one typo at each chosen letter position of a whitespace-free word."""
    output: list[str] = []
    kept = len(word)
    index = 0
    while index < len(word):
        char = word[index]
        if index not in chosen:
            output.append(char)
            index += 1
            continue

        operation = _pick(rng, _typo_operations(word, index, kept))
        if operation == "substitute":
            replacement = _pick(rng, _NEIGHBOURS[char.lower()])
            output.append(replacement.upper() if char.isupper() else replacement)
        elif operation == "drop":
            kept -= 1
        elif operation == "double":
            output.append(char + char)
        else:
            output.append(word[index + 1] + char)
            index += 1
        index += 1
    return "".join(output)


def _apply_typos(text: str, rate: float, rng: random.Random) -> str:
    # The separators are kept as their own tokens, so whitespace passes through unchanged.
    tokens = re.split(r"(\s+)", text)
    letter_positions = [
        (token_index, char_index)
        for token_index, token in enumerate(tokens)
        if token and not token.isspace()
        for char_index, char in enumerate(token)
        if char.isalpha()
    ]
    if not letter_positions:
        return text

    chosen = {position for position in letter_positions if rng.random() < rate}
    noisy = _type_positions(tokens, chosen, rng)
    if noisy != text:
        return noisy

    # Several typos can cancel out ("aab" with the first "a" dropped and the second doubled),
    # so retry with a single typo, which always changes the text.
    forced = letter_positions[_pick_index(rng, len(letter_positions))]
    return _type_positions(tokens, {forced}, rng)


def _type_positions(tokens: list[str], chosen: set[tuple[int, int]], rng: random.Random) -> str:
    pieces = []
    for token_index, token in enumerate(tokens):
        positions = {char_index for index, char_index in chosen if index == token_index}
        pieces.append(_type_word(token, positions, rng) if positions else token)
    return "".join(pieces)


# ---------------------------------------------------------------------------------------
# Accent removal
# ---------------------------------------------------------------------------------------

# Combining acute accent and combining diaeresis. The tilde of ñ (U+0303) is kept on purpose.
_STRIPPED_MARKS = frozenset({"\u0301", "\u0308"})


def _strip_marks(char: str) -> str:
    decomposed = unicodedata.normalize("NFD", char)
    kept = "".join(mark for mark in decomposed if mark not in _STRIPPED_MARKS)
    return unicodedata.normalize("NFC", kept)


def _apply_no_accents(text: str, rate: float, rng: random.Random) -> str:
    stripped = [_strip_marks(char) for char in text]
    eligible = [index for index, char in enumerate(text) if stripped[index] != char]
    if not eligible:
        return text

    chars = list(text)
    for index in eligible:
        if rng.random() < rate:
            chars[index] = stripped[index]

    if chars == list(text):
        index = eligible[_pick_index(rng, len(eligible))]
        chars[index] = stripped[index]
    return "".join(chars)


_LEVEL_FUNCTIONS: dict[str, Callable[[str, float, random.Random], str]] = {
    "ocr": _apply_ocr,
    "typo": _apply_typos,
    "no_accents": _apply_no_accents,
}
