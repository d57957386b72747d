"""``ipfi stubs``: a live peer's procedures as a ``typing.Protocol`` module, read from the JSON
Schemas of ``ipfi.describe``, for ``peer.proxy(Procedures)`` and a type checker; and the same
schemas used by ``ipfi call`` to read command-line arguments."""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterator
from typing import Any

_FORMATS = {
    "date-time": "datetime.datetime",
    "date": "datetime.date",
    "time": "datetime.time",
    "duration": "datetime.timedelta",
    "uuid": "uuid.UUID",
    "decimal": "decimal.Decimal",
}
_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text) or "_"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "_" + name
    return name


class _Module:
    """What a stub module needs: the text of each definition, and which imports it uses."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.imports: set[str] = set()
        self.typing: set[str] = {"Protocol"}
        self.classes: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self._expanding: set[str] = set()

    def annotation(self, schema: Any) -> str:
        """A Python annotation for the values ``schema`` accepts (``Any`` where it cannot say)."""
        if not isinstance(schema, dict) or not schema:
            return self._any()
        if isinstance(schema.get("$ref"), str):
            return self._defined(schema["$ref"].rsplit("/", 1)[-1])
        for union in ("anyOf", "oneOf"):
            if isinstance(schema.get(union), list) and schema[union]:
                return " | ".join(dict.fromkeys(self.annotation(member) for member in schema[union]))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._literal(schema["enum"])
        if "const" in schema:
            return self._literal([schema["const"]])
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(dict.fromkeys(self.annotation({**schema, "type": one}) for one in kind))
        if kind == "string":
            return self._string(schema)
        if kind == "array":
            return self._array(schema)
        if kind == "object":
            values = schema.get("additionalProperties")
            return f"dict[str, {self.annotation(values if isinstance(values, dict) else {})}]"
        return _TYPES.get(kind, self._any()) if isinstance(kind, str) else self._any()

    def _any(self) -> str:
        self.typing.add("Any")
        return "Any"

    def _literal(self, values: list[Any]) -> str:
        if not all(isinstance(value, str | int | bool) or value is None for value in values):
            return self._any()
        self.typing.add("Literal")
        return f"Literal[{', '.join(json.dumps(v) if isinstance(v, str) else repr(v) for v in values)}]"

    def _string(self, schema: dict[str, Any]) -> str:
        if schema.get("contentEncoding") == "base64":
            return "bytes"
        shown = _FORMATS.get(schema.get("format", ""))
        if shown is None:
            return "str"
        self.imports.add(shown.split(".")[0])
        return shown

    def _array(self, schema: dict[str, Any]) -> str:
        fixed = schema.get("prefixItems")
        if isinstance(fixed, list):
            if not fixed:
                return "tuple[()]"
            return f"tuple[{', '.join(self.annotation(item) for item in fixed)}]"
        items = schema.get("items")
        return f"list[{self.annotation(items if isinstance(items, dict) else {})}]"

    def _defined(self, name: str) -> str:
        """The name of ``$defs/name``, written as a TypedDict (an object with properties) or an alias."""
        shown = _identifier(name)
        if shown in self.classes or shown in self.aliases:
            return shown
        schema = self.defs.get(name)
        if not isinstance(schema, dict):
            return self._any()
        properties = schema.get("properties")
        if schema.get("type") == "object" and isinstance(properties, dict):
            self.classes[shown] = ""  # (taken before its fields: a type may refer to itself)
            self.classes[shown] = self._typed_dict(shown, schema, properties)
        elif shown in self._expanding:  # (an alias of itself: Python's aliases cannot say that)
            return self._any()
        else:
            self._expanding.add(shown)
            # Written after what it names (an alias, unlike a class's fields, is evaluated at import).
            self.aliases[shown] = self.annotation({key: value for key, value in schema.items() if key != "title"})
        return shown

    def _typed_dict(self, shown: str, schema: dict[str, Any], properties: dict[str, Any]) -> str:
        self.typing.add("TypedDict")
        required = set(schema.get("required", ()))
        lines = [f"class {shown}(TypedDict):"]
        if schema.get("description"):
            lines.append(f"    {_docstring(schema['description'])}")
        fields = [(name, self.annotation(value)) for name, value in properties.items()]
        if not fields or any(not name.isidentifier() or keyword.iskeyword(name) for name, _ in fields):
            self.typing.add("Any")
            return f"{shown} = dict[str, Any]  # (field names that are not Python names)"
        for name, annotation in fields:
            if name in required:
                lines.append(f"    {name}: {annotation}")
            else:
                self.typing.add("NotRequired")
                lines.append(f"    {name}: NotRequired[{annotation}]")
        return "\n".join(lines)


def _docstring(text: str) -> str:
    return '"""' + text.replace("\\", "\\\\").replace('"""', r"\"\"\"") + '"""'


def _parameters(module: _Module, parameters: list[dict[str, Any]]) -> str:
    shown = ["self"]
    keyword_only_marked = False
    for index, parameter in enumerate(parameters):
        name = _identifier(str(parameter.get("name", f"arg{index}")))
        annotation = module.annotation(parameter.get("schema"))
        kind = parameter.get("kind")
        if kind == "var_positional":
            shown.append(f"*{name}: {annotation}")
            keyword_only_marked = True
            continue
        if kind == "var_keyword":
            shown.append(f"**{name}: {annotation}")
            continue
        if kind == "keyword_only" and not keyword_only_marked:
            shown.append("*")
            keyword_only_marked = True
        default = "" if parameter.get("required", True) else " = ..."
        shown.append(f"{name}: {annotation}{default}")
        if kind == "positional_only" and (
            index + 1 == len(parameters) or parameters[index + 1].get("kind") != "positional_only"
        ):
            shown.append("/")
    return ", ".join(shown)


def _method(module: _Module, procedure: dict[str, Any], asynchronous: bool) -> Iterator[str]:
    name = str(procedure.get("name", ""))
    yield ""
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        yield f"    # {name!r}: not a Python name; call it with peer.call({name!r}, ...)"
        return
    result = module.annotation(procedure.get("result"))
    parameters = _parameters(module, procedure.get("parameters") or [])
    if procedure.get("streams"):
        iterator = "AsyncIterator" if asynchronous else "Iterator"
        module.imports.add(f"collections.abc:{iterator}")
        line = f"    def {name}({parameters}) -> {iterator}[{result}]:"
    else:
        line = f"    {'async ' if asynchronous else ''}def {name}({parameters}) -> {result}:"
    if not procedure.get("doc"):
        yield f"{line} ..."
        return
    yield line
    yield f"        {_docstring(str(procedure['doc']))}"
    yield "        ..."


def stub_module(procedures: list[dict[str, Any]], *, source: str, asynchronous: bool, name: str = "Procedures") -> str:
    """The text of a module with a ``typing.Protocol`` class ``name`` whose methods are
    ``procedures`` (as ``ipfi.describe`` gives them), and the types their schemas define."""
    defs: dict[str, Any] = {}
    for procedure in procedures:
        defs.update(procedure.get("$defs") or {})
    module = _Module(defs)
    methods = [line for procedure in procedures for line in _method(module, procedure, asynchronous)]
    driver = "an asyncio peer's" if asynchronous else "a blocking peer's (ipfi.sync)"
    lines = [
        f'"""The procedures of {source}, as `ipfi stubs` read them: give the class to {driver}',
        f'``proxy({name})``."""',
        "",
        "from __future__ import annotations",
        "",
    ]
    lines += [f"import {module_name}" for module_name in sorted(m for m in module.imports if ":" not in m)]
    for imported in sorted(m for m in module.imports if ":" in m):
        source_module, _, what = imported.partition(":")
        lines.append(f"from {source_module} import {what}")
    lines.append(f"from typing import {', '.join(sorted(module.typing))}")
    for text in module.classes.values():
        lines += ["", "", text]
    if module.aliases:
        lines += ["", ""]
    for alias, text in module.aliases.items():
        lines.append(f"{alias} = {text}")  # (after the classes an alias may name)
    lines += ["", "", f"class {_identifier(name)}(Protocol):"]
    lines += methods[1:] or ["    pass"]
    return "\n".join(lines) + "\n"


def _accepts_text_only(schema: Any, defs: dict[str, Any]) -> bool:
    """Whether ``schema`` accepts strings (and perhaps null) and nothing else."""
    if not isinstance(schema, dict) or not schema:
        return False
    if isinstance(schema.get("$ref"), str):
        return _accepts_text_only(defs.get(schema["$ref"].rsplit("/", 1)[-1]), defs)
    for union in ("anyOf", "oneOf"):
        if isinstance(schema.get(union), list):
            members = [member for member in schema[union] if member != {"type": "null"}]
            return bool(members) and all(_accepts_text_only(member, defs) for member in members)
    if isinstance(schema.get("enum"), list):
        return all(isinstance(value, str) for value in schema["enum"])
    return schema.get("type") == "string"


def parse_argument(text: str, schema: Any, defs: dict[str, Any], name: str) -> Any:
    """A command-line argument: JSON, except that a parameter that takes only text takes the text
    as it is (``ipfi call ADDR greet Ada``; quoted JSON, ``'"Ada"'``, still works)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if _accepts_text_only(schema, defs):
            return text
        raise json.JSONDecodeError(f"argument {name} is not JSON ({exc.msg})", text, exc.pos) from None
    if _accepts_text_only(schema, defs) and not isinstance(value, str) and value is not None:
        return text
    return value
