"""Hypothesis strategies derived from the construct definitions in pynvmetcp.spec.

``values(c)`` walks a fixed-size construct and returns a strategy for a value that ``c.build``
accepts, with every integer field drawn over its whole range, every reserved/bytes field as random
bytes, every text field as a string that survives the padding rules, and UUIDs as UUIDs.
``normalize`` turns a parsed Container into plain dicts/lists so it compares equal to that value.
"""
from __future__ import annotations

import struct

import construct as C
from hypothesis import strategies as st

from pynvmetcp.spec._types import _PaddedText, _Uuid

_SMALL_BYTES = 64
_SMALL_ARRAY = 8


def _bytes(n: int) -> st.SearchStrategy[bytes]:
    """n bytes; big reserved/vendor areas come from a seeded generator (Hypothesis' own byte
    strings are slow to generate and shrink at kilobyte sizes)."""
    if n <= _SMALL_BYTES:
        return st.binary(min_size=n, max_size=n)
    return st.one_of(st.just(bytes(n)), st.just(b"\xff" * n),
                     st.randoms(use_true_random=False).map(lambda r: r.randbytes(n)))


def _text(field: _PaddedText) -> st.SearchStrategy[str]:
    """Strings the padded-text adapter gives back unchanged: no NUL (the first NUL ends the text),
    no trailing space (stripped when read), at most ``size`` bytes once encoded."""
    size, enc = field._size, field._encoding
    ascii_ = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.just(" "),
                     max_size=size)
    if enc == "ascii":
        pool = ascii_
    else:
        wide = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                       max_size=size // 4)
        pool = ascii_ | wide
    return pool.map(lambda s: s.rstrip(" ")).filter(lambda s: len(s.encode(enc)) <= size)


def values(c) -> st.SearchStrategy:
    """A strategy for values of the fixed-size construct ``c``."""
    if isinstance(c, C.Renamed):
        return values(c.subcon)
    if isinstance(c, C.Struct):
        fields = {sc.name: values(sc) for sc in c.subcons if sc.name}
        return st.fixed_dictionaries(fields)
    if isinstance(c, _PaddedText):
        return _text(c)
    if isinstance(c, _Uuid):
        return st.uuids()
    if isinstance(c, C.FormatField):
        assert c.fmtstr[-1].isupper(), c.fmtstr  # every NVMe field is unsigned
        return st.integers(0, (1 << (8 * struct.calcsize(c.fmtstr))) - 1)
    if isinstance(c, C.BytesInteger):
        assert not c.signed
        return st.integers(0, (1 << (8 * c.length)) - 1)
    if isinstance(c, C.BitsInteger):
        return st.integers(0, (1 << c.length) - 1)
    if c is C.Flag or isinstance(c, type(C.Flag)):
        return st.booleans()
    if isinstance(c, C.Default):
        return values(c.subcon)
    if isinstance(c, C.Bytes):
        assert isinstance(c.length, int), "variable-length Bytes need their own strategy"
        return _bytes(c.length)
    if isinstance(c, C.Array):
        assert isinstance(c.count, int), "variable-length Array needs its own strategy"
        n = c.count
        if n <= _SMALL_ARRAY:
            return st.lists(values(c.subcon), min_size=n, max_size=n)
        # long arrays (LBA formats, power states, NSID lists): a few drawn elements, cycled
        return st.lists(values(c.subcon), min_size=1, max_size=_SMALL_ARRAY).map(
            lambda few: [few[i % len(few)] for i in range(n)])
    if isinstance(c, C.Transformed):  # ByteSwapped / BitStruct
        return values(c.subcon)
    raise TypeError(f"no strategy for {c!r}")


def has_text(c) -> bool:
    """True if ``c`` contains a padded text field (not byte-exact for arbitrary bytes)."""
    if isinstance(c, _PaddedText):
        return True
    if isinstance(c, C.Struct):
        return any(has_text(sc) for sc in c.subcons)
    sub = getattr(c, "subcon", None)
    return sub is not None and has_text(sub)


def normalize(obj):
    """A parsed Container/ListContainer as plain dicts and lists, without construct's own keys."""
    if isinstance(obj, dict):
        return {k: normalize(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    return obj


def roundtrip(c, value):
    """build → parse → build; returns (first bytes, parsed value, second bytes)."""
    raw = c.build(value)
    parsed = normalize(c.parse(raw))
    again = c.build(parsed)
    return raw, parsed, again


__all__ = ["values", "has_text", "normalize", "roundtrip"]
