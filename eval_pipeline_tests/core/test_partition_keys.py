import pytest

from eval_pipeline.core.partition_keys import (
    ModelVersionRef,
    PartitionKeyError,
    decode_partition_key,
    encode_partition_key,
)

NAMES = [
    "regional-explainer",
    "team/explainer v2",
    "main.default.explainer",
    "ñandú ¿modelo?",
    "a--v2",
    "~tilde",
    "comma,pipe|brackets[]",
    "dots...in...name",
    "名前",
]


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name):
    key = encode_partition_key(name, 7)
    assert decode_partition_key(key) == ModelVersionRef(name, "7")


@pytest.mark.parametrize("name", NAMES)
def test_key_uses_safe_characters_only(name):
    key = encode_partition_key(name, 3)
    assert all(ch.isascii() and (ch.isalnum() or ch in "_-~") for ch in key), key
    assert "..." not in key


def test_plain_name_stays_readable():
    assert encode_partition_key("regional-explainer", "2") == "regional-explainer--v2"


def test_similar_names_get_distinct_keys():
    names = ["a/b", "a b", "a_b", "a-b", "a.b", "A/b"]
    keys = {encode_partition_key(name, 1) for name in names}
    assert len(keys) == len(names)


def test_ref_uri_and_key():
    ref = ModelVersionRef("team/explainer v2", "4")
    assert ref.uri == "models:/team/explainer v2/4"
    assert decode_partition_key(ref.partition_key) == ref


@pytest.mark.parametrize("version", ["0", "-1", "v2", "", "1.5", None])
def test_invalid_version_rejected(version):
    with pytest.raises(PartitionKeyError, match="positive integer"):
        encode_partition_key("model", version)


@pytest.mark.parametrize("name", ["", "   ", None])
def test_invalid_name_rejected(name):
    with pytest.raises(PartitionKeyError, match="non-empty"):
        encode_partition_key(name, 1)


@pytest.mark.parametrize("key", ["no-version", "--v3", "model--vx", "bad/char--v1", "~ZZ--v1"])
def test_invalid_key_rejected(key):
    with pytest.raises(PartitionKeyError, match="Invalid partition key"):
        decode_partition_key(key)


def test_invalid_utf8_escape_rejected():
    with pytest.raises(PartitionKeyError, match="UTF-8"):
        decode_partition_key("~FF--v1")
