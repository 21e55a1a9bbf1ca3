"""The protobuf body decoder for the built-in kinds kubectl's typed clients send."""

from __future__ import annotations

import pytest

from leap0_dev.apiserver.protobuf import MAGIC, ProtobufError, decode_object


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version) + _field(2, kind)
    return MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, "") + _field(4, "")


def test_decodes_a_secret_with_metadata_maps_and_lists() -> None:
    owner = _field(5, "v1") + _field(1, "ConfigMap") + _field(3, "o") + _field(4, "u-1") + _field(6, 1)
    meta = (
        _field(1, "s")
        + _field(3, "ns")
        + _field(7, 0)
        + _field(11, _field(1, "app") + _field(2, "web"))
        + _field(12, _field(1, "note") + _field(2, "x"))
        + _field(13, owner)
        + _field(14, "a.example/f")
        + _field(14, "b.example/g")
    )
    raw = _field(1, meta) + _field(2, _field(1, "k") + _field(2, b"\x00\xff")) + _field(3, "Opaque")
    obj = decode_object(_envelope("v1", "Secret", raw))
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "namespace": "ns",
            "labels": {"app": "web"},
            "annotations": {"note": "x"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-1", "controller": True}
            ],
            "finalizers": ["a.example/f", "b.example/g"],
        },
        "data": {"k": "AP8="},
        "type": "Opaque",
    }


def test_unknown_kinds_and_garbage_are_refused() -> None:
    with pytest.raises(ProtobufError, match="not supported"):
        decode_object(_envelope("apps/v1", "Deployment", b""))
    with pytest.raises(ProtobufError):
        decode_object(b"{}")
    with pytest.raises(ProtobufError):
        decode_object(MAGIC + b"\x0a\x10abc")


def test_fields_it_does_not_know_are_refused_not_dropped() -> None:
    meta = _field(1, "cm")
    assert decode_object(_envelope("v1", "ConfigMap", _field(1, meta)))["metadata"] == {"name": "cm"}
    with pytest.raises(ProtobufError, match="field 9"):
        decode_object(_envelope("v1", "ConfigMap", _field(1, meta) + _field(9, "surprise")))
