"""JSON Schema 2020-12 per channel, checked on plain frames as they are received: ipcprims' schema
registry (the same directory layout and file names, strict mode, limits and error messages).

Behind the ``schema`` extra (``pip install 'ipfi[schema]'``): the validator is ``jsonschema``. It was
chosen over ``fastjsonschema``, which is 8x faster on a small object (5.4 µs against 44 µs) but knows
drafts 4-7 only: it ignores 2020-12's ``prefixItems``, ``$defs``, ``dependentRequired`` and
``unevaluatedProperties`` and would let through what ipcprims refuses.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from .core.errors import SchemaError
from .core.frames import COMMAND, CONTROL, DATA, ERROR, TELEMETRY

#: ipcprims' default limits on a schema directory.
MAX_SCHEMAS: Final = 256
MAX_SCHEMA_FILE_SIZE: Final = 256 * 1024
#: File names ipcprims maps to its named channels (besides ``channel_N.schema.json``).
NAMED_FILES: Final = {"control": CONTROL, "command": COMMAND, "data": DATA, "telemetry": TELEMETRY, "error": ERROR}
_SUFFIX: Final = ".schema.json"
#: Errors reported after the first, as ipcprims reports them (joined with "; ").
_MORE_ERRORS: Final = 3
#: The keywords whose values are schemas (or maps or lists of schemas): where strict mode looks.
_SCHEMA_MAPS: Final = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_SCHEMA_VALUES: Final = (
    "propertyNames",
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "contains",
    "additionalItems",
    "unevaluatedItems",
    "not",
    "if",
    "then",
    "else",
)
_SCHEMA_LISTS: Final = ("prefixItems", "allOf", "anyOf", "oneOf")
_OBJECT_KEYWORDS: Final = (
    "properties",
    "patternProperties",
    "additionalProperties",
    "unevaluatedProperties",
    "required",
    "dependentRequired",
    "dependentSchemas",
    "propertyNames",
)


class Schemas:
    """A JSON Schema (2020-12) per channel; pass it as ``schemas=`` to ``serve``, ``connect`` or
    ``pair`` (both drivers). A received plain frame on a channel with a schema must be JSON that the
    schema accepts: one that is not is consumed, never delivered; the sender gets
    ``{"error": "schema validation error: ..."}`` on the ERROR channel (4) if it was negotiated (not
    for a frame that came on ERROR itself, so two validating peers cannot answer each other forever),
    and the connection goes on. Frames on channels without a schema pass unchecked.

    ``strict`` forbids properties a schema does not list: every object schema without an
    ``additionalProperties`` of its own gets ``false`` (ipcprims' strict mode; its command line
    turns it on).

    Raises :class:`~ipfi.SchemaError` for a schema that is not valid JSON Schema, and
    ``ModuleNotFoundError`` naming the extra when ``jsonschema`` is not installed.
    """

    def __init__(self, schemas: Mapping[int, Mapping[str, Any] | str] | None = None, *, strict: bool = False) -> None:
        self.strict = strict
        self._validators: dict[int, Any] = {}
        for channel, schema in (schemas or {}).items():
            self.register(channel, schema)

    @classmethod
    def from_directory(
        cls,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        max_schemas: int = MAX_SCHEMAS,
        max_file_size: int = MAX_SCHEMA_FILE_SIZE,
    ) -> Schemas:
        """The schemas of a directory in ipcprims' layout: ``channel_N.schema.json`` for channel N,
        or ``control``, ``command``, ``data``, ``telemetry``, ``error`` ``.schema.json`` for 0-4
        (names in any case). Other files are ignored. Raises :class:`~ipfi.SchemaError` for a
        ``*.schema.json`` name it does not know, a symbolic link, more than ``max_schemas`` files,
        a file larger than ``max_file_size`` bytes, or one that does not load or compile."""
        schemas = cls(strict=strict)
        directory = Path(path)
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            raise SchemaError(f"failed to load schema: {directory}: {exc.strerror or exc}") from None
        loaded = 0
        for entry in entries:
            if not entry.name.lower().endswith(_SUFFIX):
                continue
            channel = _channel_of_file(entry.name)
            if entry.is_symlink():
                raise SchemaError(f"failed to load schema: refusing to load schema symlink: {entry.name}")
            if not entry.is_file():
                continue
            if channel is None:
                raise SchemaError(f"failed to load schema: unrecognized schema filename: {entry.name}")
            loaded += 1
            if loaded > max_schemas:
                raise SchemaError(f"failed to load schema: schema count exceeds configured max ({max_schemas})")
            schemas.register(channel, _read_bounded(entry, max_file_size))
        return schemas

    def register(self, channel: int, schema: Mapping[str, Any] | str) -> None:
        """Check frames on ``channel`` against ``schema`` (a JSON document, or its text)."""
        try:
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError as InvalidSchema
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError("schema validation needs jsonschema: pip install 'ipfi[schema]'") from exc

        document: Any = schema
        if isinstance(schema, str):
            try:
                document = json.loads(schema)
            except ValueError as exc:
                raise SchemaError(f"failed to load schema: channel {channel}: {exc}") from None
        if self.strict:
            document = _strict(document)
        try:
            Draft202012Validator.check_schema(document)
        except InvalidSchema as exc:
            raise SchemaError(f"failed to compile schema: channel {channel}: {exc.message}") from None
        self._validators[channel] = Draft202012Validator(document)

    @property
    def channels(self) -> list[int]:
        """The channels that have a schema, in order."""
        return sorted(self._validators)

    def __contains__(self, channel: object) -> bool:
        return channel in self._validators

    def check(self, channel: int, payload: bytes | bytearray | memoryview) -> str | None:
        """Why ``payload`` may not travel on ``channel`` (ipcprims' words), or ``None`` if it may."""
        validator = self._validators.get(channel)
        if validator is None:
            return None
        try:
            document = json.loads(str(payload, "utf-8"))  # (UTF-8 only, as ipcprims: no guessing)
        except ValueError as exc:  # (UnicodeDecodeError is one)
            return f"payload is not valid JSON: {exc}"
        except RecursionError:
            return "payload is not valid JSON: nested too deeply"
        try:
            errors = itertools.islice(validator.iter_errors(document), 1 + _MORE_ERRORS)
            messages = [_described(error) for error in errors]
        except RecursionError:
            return f"validation failed on channel {channel}: nested too deeply to check"
        except Exception as exc:  # (e.g. a $ref nothing resolves: the frame is refused, the peer lives)
            return f"validation failed on channel {channel}: the schema could not be applied: {exc}"
        return f"validation failed on channel {channel}: {'; '.join(messages)}" if messages else None


def _channel_of_file(name: str) -> int | None:
    """The channel a schema file's name stands for in ipcprims' layout, if any."""
    lower = name.lower()
    if not lower.endswith(_SUFFIX):
        return None
    stem = lower[: -len(_SUFFIX)]
    if stem.startswith("channel_") and stem[len("channel_") :].isdigit():
        channel = int(stem[len("channel_") :])
        return channel if channel <= 0xFFFF else None
    return NAMED_FILES.get(stem)


def _read_bounded(entry: Path, limit: int) -> str:
    """The file's text, read from the file that was checked (not a link, not swapped since)."""
    try:
        with open(entry, "rb") as file:
            opened = os.fstat(file.fileno())
            linked = entry.lstat()
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (linked.st_dev, linked.st_ino):
                raise SchemaError(f"failed to load schema: schema file changed during load: {entry.name}")
            if opened.st_size > limit:
                raise SchemaError(
                    f"failed to load schema: schema file too large ({opened.st_size} bytes): {entry.name}"
                )
            content = file.read(limit + 1)
    except OSError as exc:
        raise SchemaError(f"failed to load schema: failed opening schema {entry}: {exc.strerror or exc}") from None
    if len(content) > limit:
        raise SchemaError(f"failed to load schema: schema file too large while reading: {entry.name}")
    try:
        return content.decode()
    except UnicodeDecodeError as exc:
        raise SchemaError(f"failed to load schema: {entry.name}: {exc}") from None


def _described(error: Any) -> str:
    """One validation error: where, and what (``/items/0: 'x' is not of type 'integer'``)."""
    where = "".join(f"/{part}" for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def _strict(schema: Any) -> Any:
    """A copy of ``schema`` whose object schemas forbid properties they do not list."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    strict = dict(schema)
    if _is_object_schema(strict) and "additionalProperties" not in strict:
        strict["additionalProperties"] = False
    for key in _SCHEMA_MAPS:
        if isinstance(strict.get(key), Mapping):
            strict[key] = {name: _strict(value) for name, value in strict[key].items()}
    for key in (*_SCHEMA_VALUES, *_SCHEMA_LISTS):
        if key in strict:
            strict[key] = _strict(strict[key])
    return strict


def _is_object_schema(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind == "object"
    if isinstance(kind, list):
        return "object" in kind
    return any(keyword in schema for keyword in _OBJECT_KEYWORDS)
