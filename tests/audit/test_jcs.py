"""The fast canonicaliser is byte-identical to `rfc8785` (RFC 8785), on a corpus and under
hypothesis; values read back from PostgreSQL's jsonb hash as they did when written."""

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.jcs import canonical, fast_safe, loads_stored, restore_floats

CORPUS = [
    None, True, False, 0, -1, 1, 2**53 - 1, -(2**53 - 1), "", "a", "é", "☃", "𝄞",
    {"amount": 25000, "note": "naïve ☃ 𝄞", "ok": True, "none": None},
    {"b": 1, "a": 2, "aa": [1, 2, {"z": "y", "y": "z"}], "": 0},
    # floats: JCS prints them the ECMAScript way (fallback path)
    1.0, -0.0, 0.1, 1.5, 1e21, 1e-7, 1e-5, 123456789.125, 5e-324, 1.7976931348623157e308,
    {"f": 0.1, "g": 1e21, "h": 2.0, "nested": [1.0, {"x": -1.5e-10}]},
    # control characters, DEL, quotes, backslash, U+2028/2029, non-ASCII, astral plane
    "".join(chr(i) for i in range(0x20)) + "\x7f\"\\/\u2028\u2029\u00e9\u4e2d\U0001F600",
    {"\u2028": "\u2029", "tab\t": "\b\f\n\r", "quote\"": "back\\slash"},
    # keys whose UTF-16 order differs from code-point order (fallback path)
    {"\ue000": 1, "\U0001F600": 2, "a": 3},
    {"\uffff": 1, "\U00010000": 2},
    {"é": 1, "e": 2, "z": 3, "Z": 4, "10": 5, "9": 6},
    # nested structures
    {"a": [[[[{"b": [None, True, False, "", 0]}]]]], "c": {"d": {"e": {"f": []}}}},
    [{"x": 1}, [], {}, [[]], [{}]],
]

RAISES = [2**53, -(2**53), 10**21, float("nan"), float("inf"), "\ud800", {"k": "\udfff"},
          {1: "non-string key"}]


@pytest.mark.parametrize("value", CORPUS, ids=range(len(CORPUS)))
def test_corpus_byte_identical(value):
    assert canonical(value) == rfc8785.dumps(value)


def test_corpus_uses_the_fast_path_where_it_is_safe():
    fast = [v for v in CORPUS if fast_safe(v)]
    assert len(fast) >= 12
    assert not fast_safe(1.0) and not fast_safe({"\ue000": 1}) and not fast_safe((1, 2))
    assert fast_safe({"é": 1, "k": "values may be astral: 𝄞"})


@pytest.mark.parametrize("value", RAISES, ids=range(len(RAISES)))
def test_what_rfc8785_refuses_is_refused(value):
    with pytest.raises(Exception) as reference:
        rfc8785.dumps(value)
    with pytest.raises(type(reference.value)):
        canonical(value)


json_scalars = (st.none() | st.booleans() | st.integers(-(2**60), 2**60)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(st.characters(codec="utf-8"), max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), children, max_size=5),
    max_leaves=25)


@settings(max_examples=600, deadline=None)
@given(json_values)
def test_property_identical_or_both_refuse(value):
    try:
        expected = rfc8785.dumps(value)
    except Exception as exc:  # noqa: BLE001 - whatever the reference refuses
        with pytest.raises(type(exc)):
            canonical(value)
        return
    assert canonical(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.characters(min_codepoint=0xD7F0, codec="utf-8"), max_size=3),
                       st.integers(0, 9), max_size=6))
def test_property_key_order_near_the_surrogate_range(value):
    assert canonical(value) == rfc8785.dumps(value)


def test_jsonb_numbers_come_back_as_what_was_hashed():
    # PostgreSQL prints the float 1e21 as the integer 1000000000000000000000
    text = '{"g": 1000000000000000000000, "big": 9007199254740991, "f": 0.1, "h": 1e400}'
    value = loads_stored(text.replace(', "h": 1e400', ""))
    assert value == {"g": 1e21, "big": 2**53 - 1, "f": 0.1}
    assert isinstance(value["g"], float) and isinstance(value["big"], int)
    assert canonical(value) == rfc8785.dumps({"g": 1e21, "big": 2**53 - 1, "f": 0.1})
    assert restore_floats({"a": [10**21, 3]}) == {"a": [1e21, 3]}
    assert loads_stored('{"n": 18446744073709551616}') == {"n": float(2**64)}



STRINGS = ["system:engine", "user:adam", "client:naïve ☃", "x\"y", "back\\slash", "tab\there",
           "\u2028", "𝄞", "\x7f", "2026-11-21T15:17:45.123456Z", "", "\ud800"]


DATA = [{"v": v} for v in CORPUS[13:]] + [
    '{"a": 1.0}', '{"g": 1000000000000000000000}', '{"k": "v", "n": [1, 2, {"z": null}]}']


@pytest.mark.parametrize("data", DATA, ids=range(len(DATA)))
@pytest.mark.parametrize("actor", STRINGS, ids=range(len(STRINGS)))
def test_event_bytes_are_rfc8785(actor, data):
    """The verifier's assembled event body (data as stored JSON text or as a value) equals
    rfc8785 of the same body."""
    from audit.verify import event_bytes  # noqa: PLC0415 - needs Django set up

    value = loads_stored(data) if isinstance(data, str) else data
    for stream, seq, code in (("run/1", 7, "FC-RUN-001"), (actor, 2**53 - 1, actor),
                              ("tenant/é/admin", 1, "FC-AUD-001")):
        body = {"stream": stream, "seq": seq, "code": code, "actor": actor,
                "at": actor if seq == 1 else "2026-11-21T15:17:45.123456Z", "data": value}
        try:
            expected = rfc8785.dumps(body)
        except Exception as exc:  # noqa: BLE001
            with pytest.raises(type(exc)):
                event_bytes(stream, seq, code, actor, body["at"], data)
            continue
        assert event_bytes(stream, seq, code, actor, body["at"], data) == expected
