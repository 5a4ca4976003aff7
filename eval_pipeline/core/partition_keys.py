"""Reversible mapping between registered model versions and Dagster partition keys.

Registered model names may contain `/`, spaces, dots and any Unicode character, while partition
keys travel through URLs, run tags and range syntax (`a...b`). A key keeps ASCII letters,
digits, `_` and `-` as they are. Every other character becomes `~` plus the upper-case hex of
its UTF-8 bytes, so two different names never share a key and the name is recovered exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAFE_CHARACTERS = re.compile(r"[A-Za-z0-9_-]")
_ESCAPE = "~"
_VERSION_SEPARATOR = "--v"
_ESCAPED_BYTE = re.compile(r"~([0-9A-F]{2})")


class PartitionKeyError(ValueError):
    """Raised when a model name, version or partition key cannot be mapped."""


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version: its registry name and version number."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def partition_key(self) -> str:
        return encode_partition_key(self.name, self.version)


def _escape_name(name: str) -> str:
    parts = []
    for character in name:
        if _SAFE_CHARACTERS.fullmatch(character):
            parts.append(character)
        else:
            parts.extend(f"{_ESCAPE}{byte:02X}" for byte in character.encode("utf-8"))
    return "".join(parts)


def encode_partition_key(name: str, version: str | int) -> str:
    """Return the partition key for `name` at `version`, for example `regional-glossary--v2`."""
    if not isinstance(name, str) or not name.strip():
        raise PartitionKeyError(
            f"Invalid registered model name {name!r}: expected a non-empty string."
        )
    version_text = str(version).strip()
    if not version_text.isdigit() or int(version_text) < 1:
        raise PartitionKeyError(
            f"Invalid model version {version!r} for model {name!r}: expected a positive integer "
            "as assigned by the MLflow model registry."
        )
    return f"{_escape_name(name)}{_VERSION_SEPARATOR}{int(version_text)}"


def decode_partition_key(key: str) -> ModelVersionRef:
    """Return the model name and version that `encode_partition_key` turned into `key`."""
    escaped_name, separator, version = key.rpartition(_VERSION_SEPARATOR)
    if not separator or not escaped_name or not version.isdigit():
        raise PartitionKeyError(
            f"Invalid partition key {key!r}: expected '<escaped model name>--v<version>', "
            "as produced by encode_partition_key."
        )
    try:
        raw = bytearray()
        position = 0
        while position < len(escaped_name):
            match = _ESCAPED_BYTE.match(escaped_name, position)
            if match:
                raw.append(int(match.group(1), 16))
                position = match.end()
                continue
            character = escaped_name[position]
            if not _SAFE_CHARACTERS.fullmatch(character):
                raise PartitionKeyError(
                    f"Invalid partition key {key!r}: character {character!r} at position "
                    f"{position} is neither a letter, digit, '_', '-' nor a '~XX' escape."
                )
            raw.extend(character.encode("ascii"))
            position += 1
        name = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PartitionKeyError(
            f"Invalid partition key {key!r}: its escapes do not decode as UTF-8 ({error})."
        ) from error
    return ModelVersionRef(name=name, version=str(int(version)))
