"""Type hints as contracts: a procedure's hints checked on the arguments it receives and on what
it returns or yields, structured values (dataclasses, msgspec Structs, enums, named tuples, dates)
carried as plain data and rebuilt on the typed side, and the hints described as JSON Schema.

msgspec does the work: ``msgspec.convert`` checks and rebuilds a value in one pass of C code, and
``msgspec.json.schema_components`` describes the same types; the commonest hints (``int``,
``str``, ``float``, ``bool``, ``bytes``, ``None``) are checked here without a call into it.
"""

from __future__ import annotations

import collections.abc
import datetime
import decimal
import functools
import inspect
import logging
import re
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import msgspec

from .errors import InvalidArguments, InvalidResult

log = logging.getLogger("ipfi.contracts")

#: What the codecs carry as they are: kept when a structured value is turned into plain data.
CARRIED: Final = (bytes, bytearray, memoryview, datetime.datetime, uuid.UUID, decimal.Decimal)

#: Checks one value against a hint: returns it (rebuilt where the hint says so, e.g. a dict into a
#: dataclass) or raises :class:`Mismatch`.
Check = Callable[[Any], Any]


class Mismatch(ValueError):
    """A value does not fit its hint; ``str()`` says where and how (``[1].x: expected int, got str``)."""


def _exact(expected: type, name: str) -> Check:
    def check(value: Any) -> Any:
        if type(value) is expected:
            return value
        raise Mismatch(f"expected {name}, got {_type_name(value)}")

    return check


def _float(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    raise Mismatch(f"expected float, got {_type_name(value)}")


def _binary(value: Any) -> Any:
    # bytearray and memoryview too: a decoder with ``binary_views`` gives large binaries as views.
    if isinstance(value, bytes | bytearray | memoryview):
        return value
    raise Mismatch(f"expected bytes, got {_type_name(value)}")


def _none(value: Any) -> Any:
    if value is None:
        return value
    raise Mismatch(f"expected null, got {_type_name(value)}")


_SIMPLE: Final[dict[Any, Check]] = {
    int: _exact(int, "int"),
    str: _exact(str, "str"),
    bool: _exact(bool, "bool"),
    float: _float,
    bytes: _binary,
    None: _none,
    type(None): _none,
}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_AT: Final = re.compile(r" - at `\$(.*)`$")


def _msgspec_check(hint: Any) -> Check:
    convert = msgspec.convert
    invalid = msgspec.ValidationError

    def check(value: Any) -> Any:
        try:
            return convert(value, hint, strict=True)
        except RecursionError:
            raise Mismatch("nested too deeply to check") from None
        except invalid as exc:
            text = str(exc).replace("`", "")
            where = _AT.search(str(exc))
            if where is None:
                raise Mismatch(text[:1].lower() + text[1:]) from None
            text = text[: -len(where.group(0).replace("`", ""))]
            raise Mismatch(f"{where.group(1)}: {text[:1].lower()}{text[1:]}") from None

    return check


def checker(hint: Any) -> Check | None:
    """The check for values of ``hint``, or ``None`` where there is nothing to check: no hint,
    ``Any``, or a type that is not data (an iterator given as a stream's input, a callable...)."""
    if hint is inspect.Parameter.empty or hint is Any:
        return None
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    try:
        info = msgspec.inspect.type_info(hint)
    except (TypeError, ValueError):
        return None
    if isinstance(info, msgspec.inspect.CustomType) and inspect.isabstract(info.cls):
        return None
    if isinstance(info, msgspec.inspect.AnyType):
        return None
    return _msgspec_check(hint)


#: The msgspec type nodes a codec cannot carry as they are.
_STRUCTURED: Final = (
    msgspec.inspect.DataclassType,
    msgspec.inspect.StructType,
    msgspec.inspect.EnumType,
    msgspec.inspect.NamedTupleType,
    msgspec.inspect.DateType,
    msgspec.inspect.TimeType,
    msgspec.inspect.TimeDeltaType,
    msgspec.inspect.SetType,
    msgspec.inspect.FrozenSetType,
)


def _carries_structure(info: msgspec.inspect.Type) -> bool:
    if isinstance(info, _STRUCTURED):
        return True
    if isinstance(info, msgspec.inspect.UnionType):
        return any(_carries_structure(member) for member in info.types)
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        return _carries_structure(info.item_type)
    if isinstance(info, msgspec.inspect.TupleType):
        return any(_carries_structure(item) for item in info.item_types)
    if isinstance(info, msgspec.inspect.DictType):
        return _carries_structure(info.key_type) or _carries_structure(info.value_type)
    if isinstance(info, msgspec.inspect.TypedDictType):
        return any(_carries_structure(field.type) for field in info.fields)
    if isinstance(info, msgspec.inspect.Metadata):
        return _carries_structure(info.type)
    return False


def plain_data(value: Any) -> Any:
    """``value`` as the codecs carry it: dataclasses, Structs and named tuples as maps or lists,
    enums as their values, dates and times as ISO text; what the codecs carry as is kept."""
    return msgspec.to_builtins(value, builtin_types=CARRIED)


def to_plain(hint: Any) -> Callable[[Any], Any] | None:
    """What turns a value of ``hint`` into plain data, or ``None`` when it already is."""
    if hint in _SIMPLE or hint is inspect.Parameter.empty or hint is Any:
        return None
    try:
        info = msgspec.inspect.type_info(hint)
    except (TypeError, ValueError):
        return None
    return plain_data if _carries_structure(info) else None


def _outgoing(hint: Any) -> Check | None:
    """A check for what a procedure gives back, that also makes it plain data."""
    check = checker(hint)
    plain = to_plain(hint)
    if check is None or plain is None:
        return check
    return lambda value: plain(check(value))


def hints_of(function: Callable[..., Any], name: str) -> dict[str, Any]:
    """``function``'s resolved type hints; none (with a warning) when they cannot be resolved, and
    none, silently, for a callable that has no annotations of its own (a ``functools.partial``)."""
    if not getattr(function, "__annotations__", None):
        return {}
    try:
        return typing.get_type_hints(function, include_extras=True)  # (Annotated constraints are checked)
    except Exception as exc:  # a forward reference to a name defined nowhere, a broken annotation
        log.warning("procedure %s: its type hints are not checked: %s: %s", name, type(exc).__name__, exc)
        return {}


_ITEM_ORIGINS: Final = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


def item_hint(hint: Any) -> Any:
    """The item type of a generator's return hint (``Iterator[int]``, ``AsyncGenerator[int, None]``)."""
    if typing.get_origin(hint) in _ITEM_ORIGINS and typing.get_args(hint):
        return typing.get_args(hint)[0]
    return inspect.Parameter.empty


class ItemCheck(NamedTuple):
    """How the core checks each item a generator procedure yields, as it is sent; and how a driver
    checks what an ``async def`` procedure returns, once awaited."""

    #: Checks an item and makes it plain data; raises :class:`InvalidResult` for one that does not fit.
    check: Callable[[Any], Any]
    #: Items of exactly this type pass without the call (the commonest hints: see ``_EXACT_TYPES``).
    exact: type


class _Never:
    """The type of no item: where every item is checked."""


class Contract:
    """The checks of one procedure's hints, applied around each call of it."""

    __slots__ = ("_keyword", "_positional", "_rest", "_rest_keywords", "name", "result")

    def __init__(self, name: str, signature: inspect.Signature, hints: Mapping[str, Any], streams: bool) -> None:
        self.name = name
        self._positional: list[tuple[str, Check | None]] = []
        self._keyword: dict[str, Check | None] = {}
        self._rest: Check | None = None
        self._rest_keywords: Check | None = None
        kinds = inspect.Parameter
        for parameter in signature.parameters.values():
            check = checker(hints.get(parameter.name, kinds.empty))
            if parameter.kind is kinds.VAR_POSITIONAL:
                self._rest = check
            elif parameter.kind is kinds.VAR_KEYWORD:
                self._rest_keywords = check
            else:
                if parameter.kind is not kinds.KEYWORD_ONLY:
                    self._positional.append((parameter.name, check))
                if parameter.kind is not kinds.POSITIONAL_ONLY:
                    self._keyword[parameter.name] = check
        returns = hints.get("return", kinds.empty)
        #: The check of the result (of each item, for a generator), making it plain data.
        self.result = _outgoing(item_hint(returns) if streams else returns)

    @property
    def checks_arguments(self) -> bool:
        return any(check is not None for _, check in self._positional) or any(
            check is not None for check in (*self._keyword.values(), self._rest, self._rest_keywords)
        )

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments checked and rebuilt (``kwargs`` in place); raises
        :class:`InvalidArguments` naming the parameter. Arguments that do not bind are left to the
        call (and its ``TypeError``)."""
        checked = list(args)
        positional = self._positional
        for index, value in enumerate(args):
            if index < len(positional):
                name, check = positional[index]
            else:
                name, check = f"*[{index - len(positional)}]", self._rest
            if check is not None:
                checked[index] = self._checked(check, value, name)
        for name, value in kwargs.items():
            check = self._keyword.get(name, self._rest_keywords)
            if check is not None:
                kwargs[name] = self._checked(check, value, name)
        return tuple(checked)

    def _checked(self, check: Check, value: Any, parameter: str) -> Any:
        try:
            return check(value)
        except Mismatch as exc:
            raise InvalidArguments(f"{self.name}: {_where(str(exc), parameter)}") from None

    def item_check(self, what: str = "item") -> ItemCheck | None:
        """What each item a generator procedure yields (or, ``what="result"``, what an ``async
        def`` procedure returns) must pass before it is sent (``None``: nothing to check)."""
        if self.result is None:
            return None
        return ItemCheck(functools.partial(self.returned, what=what), _EXACT_TYPES.get(_hint_of(self.result), _Never))

    def returned(self, value: Any, what: str = "result") -> Any:
        """``value`` checked against the result's hint and made plain data; raises
        :class:`InvalidResult` when it does not fit."""
        return _fitted(self.result, value, self.name, what)


def _fitted(check: Check | None, value: Any, name: str, what: str) -> Any:
    """``value`` through ``check``; a misfit is :class:`InvalidResult` naming the procedure and where."""
    if check is None:
        return value
    try:
        return check(value)
    except Mismatch as exc:
        raise InvalidResult(f"{name}: {_where(str(exc), what)}") from None


def _where(message: str, name: str) -> str:
    """``[1].x: expected int`` under ``b`` is ``b[1].x: expected int``; ``expected int`` is ``b: expected int``."""
    path, colon, rest = message.partition(": ")
    if colon and path[:1] in ".[":
        return f"{name}{path}: {rest}"
    return f"{name}: {message}"


class Outgoing:
    """A call made through a typed proxy: arguments turned into plain data as their hints say, and
    the result (or each streamed item) checked against the return hint and rebuilt into it."""

    __slots__ = ("_keyword", "_positional", "_result", "name")

    def __init__(self, name: str, signature: inspect.Signature, hints: Mapping[str, Any], streams: bool) -> None:
        self.name = name
        kinds = inspect.Parameter
        parameters = list(signature.parameters.values())[1:]  # (a protocol's method: the first is self)
        plain = {p.name: to_plain(hints.get(p.name, kinds.empty)) for p in parameters}
        self._positional = [plain[p.name] for p in parameters if p.kind is not kinds.KEYWORD_ONLY]
        self._keyword = plain
        returns = hints.get("return", kinds.empty)
        self._result = checker(item_hint(returns) if streams else returns)

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The positional arguments as plain data (``kwargs`` in place)."""
        positional = self._positional
        plain = [
            value if index >= len(positional) or positional[index] is None else positional[index](value)  # type: ignore[misc]
            for index, value in enumerate(args)
        ]
        for name, value in kwargs.items():
            convert = self._keyword.get(name)
            if convert is not None:
                kwargs[name] = convert(value)
        return tuple(plain)

    def received(self, value: Any, what: str = "result") -> Any:
        """``value`` checked against the declared type and rebuilt into it; raises
        :class:`InvalidResult` when it does not fit."""
        return _fitted(self._result, value, self.name, what)


def enforcing(function: Callable[..., Any], contract: Contract, *, awaits: bool, yields: bool) -> Callable[..., Any]:
    """``function`` with its contract enforced: arguments checked before it runs, and a plain
    function's result after. A generator or coroutine function stays one as far as a driver can
    tell: what is returned is its generator or coroutine, made only after the arguments fit; a
    generator's items are checked as they are sent, a coroutine's result by the driver once awaited
    (:meth:`Contract.item_check`: a coroutine around it would cost a round trip 2%).

    Raises :class:`InvalidArguments` for arguments that do not fit, and :class:`InvalidResult` for
    a plain function's result that does not."""
    checks_arguments = contract.checks_arguments
    finish: Callable[[Contract, Any], Any] | None = None
    if contract.result is not None and not yields and not awaits:
        finish = Contract.returned

    def run(*args: Any, **kwargs: Any) -> Any:
        if checks_arguments:
            args = contract.arguments(args, kwargs)
        produced = function(*args, **kwargs)
        return produced if finish is None else finish(contract, produced)

    fast = _positional_fast_path(function, contract, run, returns_plainly=finish is not None)
    fast.__wrapped__ = function  # type: ignore[attr-defined]
    fast.__doc__ = function.__doc__
    fast.__name__ = getattr(function, "__name__", contract.name)
    return fast


#: The hints whose values need no check when they are exactly of that type (the commonest).
_EXACT_TYPES: Final[dict[Any, type]] = {int: int, str: str, bool: bool, bytes: bytes, float: float, None: type(None)}


def _positional_fast_path(
    function: Callable[..., Any],
    contract: Contract,
    general: Callable[..., Any],
    *,
    returns_plainly: bool,
) -> Callable[..., Any]:
    """``general`` (the wrapper above), with the call that passes each positional parameter and no
    keyword written out as code: a type test per value of a common type, a call per other check.
    (As dataclasses and attrs write their methods: a checked call then costs a few percent of a
    round trip, where the general path's loops cost fifteen.)"""
    count = len(contract._positional)
    values = [f"v{index}" for index in range(count)]
    names = ", ".join(values)
    # What a generator or coroutine function returns is returned as it is (see enforcing).
    lines = [
        "def make(function, general, checked, returned):",
        "    def run(*args, **kwargs):",
        f"        if kwargs or len(args) != {count}:",
        "            return general(*args, **kwargs)",
    ]
    if count:
        lines.append(f"        {names}, = args")
    for index, (_, check) in enumerate(contract._positional):
        if check is None:
            continue
        exact = _EXACT_TYPES.get(_hint_of(check))
        test = f"if type(v{index}) is not {exact.__name__}: " if exact else ""
        lines.append(f"        {test}v{index} = checked({index}, v{index})")
    if not returns_plainly:  # (a generator or a coroutine, or nothing to check)
        lines.append(f"        return function({names})")
    else:
        assert contract.result is not None
        lines.append(f"        result = function({names})")
        exact = _EXACT_TYPES.get(_hint_of(contract.result))
        test = f"if type(result) is not {exact.__name__}: " if exact else ""
        lines += [f"        {test}result = returned(result)", "        return result"]
    lines.append("    return run")
    namespace: dict[str, Any] = {"NoneType": type(None)}
    exec("\n".join(lines), namespace)  # (only names and numbers of ours are in the text)

    def checked(index: int, value: Any) -> Any:
        name, check = contract._positional[index]
        assert check is not None
        return contract._checked(check, value, name)

    made: Callable[..., Any] = namespace["make"](function, general, checked, contract.returned)
    return made


def _hint_of(check: Check) -> Any:
    """The hint ``check`` was made for, where it is one of :data:`_SIMPLE`'s."""
    return next((hint for hint, simple in _SIMPLE.items() if simple is check and hint in _EXACT_TYPES), object)


def described(signature: inspect.Signature, hints: Mapping[str, Any], streams: bool) -> dict[str, Any]:
    """The parameters (name, kind, whether required, JSON Schema) and the result (each item's, for
    a generator) of a procedure, with the schemas they refer to under ``$defs``."""
    defs: dict[str, Any] = {}
    kinds = inspect.Parameter
    parameters = [
        {
            "name": parameter.name,
            "kind": parameter.kind.name.lower(),
            "required": parameter.default is kinds.empty
            and parameter.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD),
            "schema": _schema(hints.get(parameter.name, kinds.empty), defs),
        }
        for parameter in signature.parameters.values()
    ]
    returns = hints.get("return", kinds.empty)
    description = {"parameters": parameters, "result": _schema(item_hint(returns) if streams else returns, defs)}
    if defs:
        description["$defs"] = defs
    return description


def _schema(hint: Any, defs: dict[str, Any]) -> Any:
    """``hint``'s JSON Schema (2020-12), ``{}`` (anything) without one or for a type that is not data."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    try:
        (schema,), components = msgspec.json.schema_components([hint], ref_template="#/$defs/{name}")
        _mark_datetimes(msgspec.inspect.type_info(hint), schema, components, set())
    except (TypeError, ValueError):
        return {}
    defs.update(components)
    return schema


_FIELDS: Final = (msgspec.inspect.StructType, msgspec.inspect.DataclassType, msgspec.inspect.TypedDictType)


def _mark_datetimes(info: Any, schema: Any, defs: dict[str, Any], seen: set[str]) -> None:
    """Give each ``datetime`` in ``schema`` the ``date-time`` format. msgspec leaves it out unless
    the hint demands a timezone (its JSON may carry naive ones); ipfi's codecs carry only aware
    datetimes, and without it a schema cannot tell a datetime from text."""
    if not isinstance(schema, dict):
        return
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    inspect_ = msgspec.inspect
    if isinstance(schema.get("$ref"), str):
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            _mark_datetimes(info, defs.get(name), defs, seen)
    elif isinstance(info, inspect_.DateTimeType):
        schema.setdefault("format", "date-time")
    elif isinstance(info, inspect_.UnionType):
        members = [*schema.get("anyOf", ()), *schema.get("oneOf", ())]
        for member in info.types:
            fits = [m for m in members if _shape_of(m) == _shape_of_info(member)]
            if fits:
                _mark_datetimes(member, fits[0], defs, seen)
    elif isinstance(info, inspect_.ListType | inspect_.SetType | inspect_.FrozenSetType | inspect_.VarTupleType):
        _mark_datetimes(info.item_type, schema.get("items"), defs, seen)
    elif isinstance(info, inspect_.TupleType):
        for item, item_schema in zip(info.item_types, schema.get("prefixItems", ()), strict=False):
            _mark_datetimes(item, item_schema, defs, seen)
    elif isinstance(info, inspect_.DictType):
        _mark_datetimes(info.value_type, schema.get("additionalProperties"), defs, seen)
    elif isinstance(info, _FIELDS):
        properties = schema.get("properties", {})
        for field in info.fields:
            _mark_datetimes(field.type, properties.get(field.encode_name), defs, seen)
    elif isinstance(info, inspect_.NamedTupleType):
        for field, item_schema in zip(info.fields, schema.get("prefixItems", ()), strict=False):
            _mark_datetimes(field.type, item_schema, defs, seen)


def _shape_of(schema: Any) -> Any:
    return "$ref" if isinstance(schema, dict) and "$ref" in schema else schema.get("type")


def _shape_of_info(info: Any) -> Any:
    """Which union member's schema may hold a datetime: its JSON type, or a reference."""
    while isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, (*_FIELDS, msgspec.inspect.NamedTupleType)):
        return "$ref"
    if isinstance(info, msgspec.inspect.DateTimeType):
        return "string"
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.TupleType | msgspec.inspect.VarTupleType):
        return "array"
    if isinstance(info, msgspec.inspect.DictType):
        return "object"
    return None
