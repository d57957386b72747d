"""JSON Schema per channel (``ipfi.Schemas``), as ipcprims' schema registry loads and applies them;
the ``--validate DIR`` of ``ipfi echo``, ``listen`` and ``send`` is in tests/test_cli.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipfi

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"
OBJECT = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}, "required": ["id"]}


def test_a_directory_in_ipcprims_layout_loads_by_file_name() -> None:
    schemas = ipfi.Schemas.from_directory(FIXTURES)  # (its README.txt is not a schema: ignored)
    assert schemas.channels == [1, 300]
    assert schemas.check(1, b'{"action": "start", "args": {"count": 3}}') is None
    assert schemas.check(300, b'[7, "seven", true]') is None
    assert schemas.check(2, b"not even JSON: channel 2 has no schema") is None


def test_a_refusal_says_why_in_ipcprims_words() -> None:
    schemas = ipfi.Schemas.from_directory(FIXTURES)
    assert schemas.check(1, b'{"args": {"count": -1}}') == (
        "validation failed on channel 1: /args/count: -1 is less than the minimum of 0; 'action' is a required property"
    )
    assert schemas.check(1, b"{oops").startswith("payload is not valid JSON: ")  # type: ignore[union-attr]
    assert schemas.check(1, b"\xff").startswith("payload is not valid JSON: ")  # type: ignore[union-attr]
    utf16 = '{"action": "go"}'.encode("utf-16")  # (json.loads of bytes would guess its encoding)
    assert schemas.check(1, utf16).startswith("payload is not valid JSON: ")  # type: ignore[union-attr]
    deep = b"[" * 100_000 + b"]" * 100_000  # a hostile peer's: answered, not a crash
    assert schemas.check(1, deep) == "payload is not valid JSON: nested too deeply"
    unresolvable = ipfi.Schemas({7: {"$ref": "https://example.invalid/nothing.json"}})  # (never fetched)
    assert "the schema could not be applied" in (unresolvable.check(7, b"{}") or "")
    # 2020-12's own keywords hold (a drafts-4-to-7 validator would let this through):
    assert schemas.check(300, b'["seven", 7]') == (
        "validation failed on channel 300: /0: 'seven' is not of type 'integer'; /1: 7 is not of type 'string'"
    )
    many = json.dumps({str(n): n for n in range(10)}).encode()
    strict = ipfi.Schemas({5: {"type": "object", "patternProperties": {"^x": {}}}}, strict=True)
    assert strict.check(5, many).count(";") == 0  # (one error names every unexpected property)
    assert ipfi.Schemas({5: {"type": "array", "items": {"type": "string"}}}).check(5, b"[1,2,3,4,5,6]").count(";") == 3


def test_strict_mode_forbids_properties_a_schema_does_not_list_at_every_depth() -> None:
    nested = {"type": "object", "properties": {"inner": OBJECT}}
    loose, strict = ipfi.Schemas({1: nested}), ipfi.Schemas({1: nested}, strict=True)
    for payload in (b'{"inner": {"id": 1}, "extra": 1}', b'{"inner": {"id": 1, "extra": 1}}'):
        assert loose.check(1, payload) is None
        assert "Additional properties are not allowed" in (strict.check(1, payload) or "")
    allowing = ipfi.Schemas({1: {**OBJECT, "additionalProperties": True}}, strict=True)
    assert allowing.check(1, b'{"id": 1, "extra": 1}') is None  # (a schema's own word stands)


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("whatever.schema.json", "{}", "unrecognized schema filename: whatever.schema.json"),
        ("channel_70000.schema.json", "{}", "unrecognized schema filename"),
        ("data.schema.json", '{"type": "definitely-not-a-type"}', "failed to compile schema: channel 2"),
        ("data.schema.json", "{not json", "failed to load schema: channel 2"),
    ],
)
def test_a_directory_with_a_bad_schema_is_refused_whole(tmp_path: Path, name: str, content: str, error: str) -> None:
    shutil.copy(FIXTURES / "command.schema.json", tmp_path)
    (tmp_path / name).write_text(content)
    with pytest.raises(ipfi.SchemaError, match=error):
        ipfi.Schemas.from_directory(tmp_path)


def test_a_schema_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "DATA.schema.json").symlink_to(FIXTURES / "command.schema.json")  # (names in any case)
    with pytest.raises(ipfi.SchemaError, match=r"refusing to load schema symlink: DATA\.schema\.json"):
        ipfi.Schemas.from_directory(tmp_path)


def test_schema_count_and_size_limits_hold_at_and_past_their_values(tmp_path: Path) -> None:
    for channel in (300, 301):
        (tmp_path / f"channel_{channel}.schema.json").write_text(json.dumps(OBJECT))
    assert ipfi.Schemas.from_directory(tmp_path, max_schemas=2).channels == [300, 301]
    with pytest.raises(ipfi.SchemaError, match=r"schema count exceeds configured max \(1\)"):
        ipfi.Schemas.from_directory(tmp_path, max_schemas=1)
    size = len(json.dumps(OBJECT))
    assert ipfi.Schemas.from_directory(tmp_path, max_file_size=size).channels == [300, 301]
    with pytest.raises(ipfi.SchemaError, match=f"schema file too large \\({size} bytes\\)"):
        ipfi.Schemas.from_directory(tmp_path, max_file_size=size - 1)
    with pytest.raises(ipfi.SchemaError, match=r"failed to load schema: .*missing"):
        ipfi.Schemas.from_directory(tmp_path / "missing")


STRICT_FIXTURES = ipfi.Schemas.from_directory(FIXTURES, strict=True)  # (read only: nothing shared changes)


@settings(max_examples=150, deadline=None)
@given(
    payload=st.binary(max_size=512)
    | st.recursive(st.none() | st.integers() | st.text(), st.lists).map(lambda value: json.dumps(value).encode())
)
def test_any_payload_gets_an_answer_never_an_exception(payload: bytes) -> None:
    for channel in (1, 300):
        reason = STRICT_FIXTURES.check(channel, payload)
        assert reason is None or reason.startswith(
            ("payload is not valid JSON: ", f"validation failed on channel {channel}: ")
        )
