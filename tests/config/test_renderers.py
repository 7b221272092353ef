"""The API's JSON renderer writes what DRF's writes, and embeds stored JSON text verbatim."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from config.api.json_text import RawJSON
from config.api.renderers import JSONRenderer

UTC = datetime.UTC
VALUES = [
    {"id": uuid.UUID("8c7d3f6e-1111-2222-3333-444455556666"), "n": 3, "f": 1.5, "b": True, "none": None},
    {"at": datetime.datetime(2026, 12, 2, 7, 1, 53, 737000, tzinfo=UTC)},
    {"at": datetime.datetime(2026, 12, 2, 7, 1, 53, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))},
    {"day": datetime.date(2026, 12, 2), "time": datetime.time(7, 1, 53, 5), "span": datetime.timedelta(seconds=90)},
    {"price": decimal.Decimal("12.50"), "lazy": gettext_lazy("Not found."), "raw": b"bytes"},
    {"text": 'é ü 漢字 \U0001f600 \u2028 \u2029 "quoted" \\ \n \t \x00'},
    ReturnList([ReturnDict({"a": [1, 2, {"b": []}]}, serializer=None)], serializer=None),
    {"big": 2**62, "negative": -1, "float": 0.1 + 0.2, "keys in order": {"z": 1, "a": 2}},
    {"past 64 bits": 2**64, "negative": -(2**70), "text": "\u2028"},  # orjson has no big integers
    [],
    "just a string",
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_bytes_are_drfs(value):
    assert JSONRenderer().render(value) == DRFJSONRenderer().render(value)
    assert JSONRenderer().render(value, "application/json") == DRFJSONRenderer().render(value, "application/json")


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_an_indented_rendering_is_drfs(value):
    asked = "application/json; indent=4"
    assert JSONRenderer().render(value, asked) == DRFJSONRenderer().render(value, asked)
    context = {"indent": 2}
    assert JSONRenderer().render(value, None, context) == DRFJSONRenderer().render(value, None, context)


def test_a_float_with_an_exponent_may_be_spelled_otherwise_but_parses_the_same():
    value = {"tiny": 1e-7, "huge": 1.5e300}
    rendered = JSONRenderer().render(value)
    assert rendered == b'{"tiny":1e-7,"huge":1.5e+300}'  # Python spells 1e-07
    assert json.loads(rendered) == json.loads(DRFJSONRenderer().render(value)) == value


def test_nothing_renders_as_no_body():
    assert JSONRenderer().render(None) == b""


def test_stored_json_text_goes_out_byte_for_byte():
    stored = '{"type":"message","n":1.0,"e":1e2,"z":null,"esc":"\\u0000","a":[1,  2]}'
    rendered = JSONRenderer().render({"results": [{"item": RawJSON(stored)}, {"item": None}], "revision": 3})
    assert rendered == ('{"results":[{"item":' + stored + '},{"item":null}],"revision":3}').encode()
    # What an agent framework hashes: json.dumps of the parsed item is json.dumps of what was sent.
    assert json.dumps(json.loads(rendered)["results"][0]["item"]) == json.dumps(json.loads(stored))


def test_stored_json_text_goes_out_verbatim_beside_an_integer_past_64_bits():
    stored = '{"n":1.0,"e":1e2,"big":123456789012345678901234567890}'
    value = {"metadata": {"count": 2**80}, "results": [{"item": RawJSON(stored)}]}
    rendered = JSONRenderer().render(value)
    assert rendered == ('{"metadata":{"count":' + str(2**80) + '},"results":[{"item":' + stored + "}]}").encode()


def test_stored_json_text_in_an_indented_rendering_is_its_parsed_value():
    stored = '{"b":1.0,"a":[true]}'
    rendered = JSONRenderer().render({"item": RawJSON(stored)}, "application/json; indent=2")
    assert json.loads(rendered) == {"item": {"b": 1.0, "a": [True]}}
    assert rendered.startswith(b'{\n  "item": {\n    "b": 1.0')
