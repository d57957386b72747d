"""The procedures one side offers to its peers."""

from __future__ import annotations

import enum
import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, overload

from . import contracts
from .errors import InvalidArguments, RemoteError

F = TypeVar("F", bound=Callable[..., Any])

#: Every interface answers this call with the description of its procedures (see ``ipfi info``).
DESCRIBE = "ipfi.describe"


class Kind(enum.Enum):
    """How a procedure produces its result."""

    FUNCTION = "function"
    COROUTINE = "coroutine"
    GENERATOR = "generator"  # streams items
    ASYNC_GENERATOR = "async_generator"  # streams items

    @property
    def streams(self) -> bool:
        return self in (Kind.GENERATOR, Kind.ASYNC_GENERATOR)


@dataclass(frozen=True, slots=True)
class Procedure:
    name: str
    function: Callable[..., Any]
    kind: Kind
    #: Run in a worker thread instead of on the event loop (for plain functions that block).
    blocking: bool
    signature: inspect.Signature | None
    #: The resolved type hints (empty without any): described by ``ipfi.describe``, and checked
    #: unless ``check_types`` is off.
    hints: Mapping[str, Any] = field(default_factory=dict)
    #: What each streamed item must pass before it is sent (see ``Connection.open_output_stream``).
    item_check: contracts.ItemCheck | None = None
    #: Its number on IPFI's wire (``protocol="ipfi-rust"``), where procedures have no names.
    index: int | None = None
    #: What an ``async def`` procedure's result must pass once awaited (drivers check it; see
    #: ``contracts.enforcing``).
    result_check: contracts.ItemCheck | None = None
    #: A plain function that does not block: drivers run it at once where its call was read.
    inline: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inline", self.kind is Kind.FUNCTION and not self.blocking)

    def describe(self) -> dict[str, Any]:
        """Name, signature, kind and first docstring line, for introspection."""
        doc = inspect.getdoc(self.function) or ""
        description: dict[str, Any] = {
            "name": self.name,
            "signature": str(self.signature) if self.signature else "(...)",
            "kind": self.kind.value,
            "streams": self.kind.streams,
            "doc": doc.splitlines()[0] if doc else "",
        }
        if self.index is not None:
            description["index"] = self.index
        if self.signature is not None:
            description.update(contracts.described(self.signature, self.hints, self.kind.streams))
        return description

    def arguments_fit(self, args: list[Any], kwargs: dict[str, Any]) -> bool:
        """Whether ``args``/``kwargs`` bind to the signature (checked only after a TypeError)."""
        if self.signature is None:
            return True
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError:
            return False
        return True


def error_record(procedure: Procedure, exc: Exception, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str, Any]:
    """``(type, message, data)`` of the error reply for a procedure that raised ``exc``."""
    if isinstance(exc, RemoteError):  # raised on purpose (e.g. Busy) or passed on from another call
        return exc.remote_type, exc.message, exc.data
    if isinstance(exc, TypeError) and not procedure.arguments_fit(args, kwargs):
        return InvalidArguments.wire_type, f"{procedure.name}: {exc}", None
    return type(exc).__name__, str(exc), declared_data(exc)


def declared_data(exc: BaseException) -> Any:
    """What an exception declares for the wire with a method ``__ipfi_data__()`` (any value the
    codec encodes; the caller finds it in ``RemoteError.data``), or ``None``."""
    declare = getattr(exc, "__ipfi_data__", None)
    if not callable(declare):
        return None
    try:
        return declare()
    except Exception:  # a broken declaration must not cost the caller its error reply
        return None


def _kind_of(function: Callable[..., Any]) -> Kind:
    if inspect.isasyncgenfunction(function):
        return Kind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(function):
        return Kind.GENERATOR
    if inspect.iscoroutinefunction(function):
        return Kind.COROUTINE
    return Kind.FUNCTION


class Interface:
    """A named set of procedures. One interface may serve any number of connections.

    >>> iface = Interface()
    >>> @iface.procedure
    ... def add(a: int, b: int) -> int:
    ...     return a + b
    >>> iface["add"].kind
    <Kind.FUNCTION: 'function'>
    """

    def __init__(self, *, check_types: bool = True) -> None:
        """``check_types``: enforce each procedure's type hints (see :meth:`procedure`) unless it
        says otherwise."""
        self._check_types = check_types
        self._procedures: dict[str, Procedure] = {}
        # What get() finds: the procedures, and the built-in DESCRIBE unless one is registered so.
        describe = Procedure(DESCRIBE, self.describe, Kind.FUNCTION, False, inspect.signature(self.describe))
        self._callable = {DESCRIBE: describe}

    @overload
    def procedure(
        self,
        function: F,
        /,
        *,
        name: str | None = None,
        blocking: bool = False,
        check_types: bool | None = None,
        index: int | None = None,
    ) -> F: ...
    @overload
    def procedure(
        self,
        function: None = None,
        /,
        *,
        name: str | None = None,
        blocking: bool = False,
        check_types: bool | None = None,
        index: int | None = None,
    ) -> Callable[[F], F]: ...

    def procedure(
        self,
        function: F | None = None,
        /,
        *,
        name: str | None = None,
        blocking: bool = False,
        check_types: bool | None = None,
        index: int | None = None,
    ) -> F | Callable[[F], F]:
        """Register a function (decorator, with or without arguments); returns it unchanged.

        A plain function runs at once where its call was read (on the event loop in the asyncio
        driver, in the connection's reader thread in the blocking one): pass ``blocking=True`` for
        one that blocks, so it runs in a worker thread. Generators stream their items.

        When the procedure raises, the caller gets a :class:`RemoteError` with the exception's type
        name and message (and its subclass :class:`InvalidArguments` when the arguments did not fit
        the signature); the server logs it at WARNING with its traceback. An exception may declare
        a value for the wire with a method ``__ipfi_data__(self)``: the caller reads it in
        ``RemoteError.data``. A :class:`RemoteError` raised on purpose (e.g. :class:`Busy`) travels
        as it is, and is not logged.

        Type hints are contracts (unless ``check_types=False``, here or on the interface): the
        arguments a call brings are checked against them and rebuilt (a map into the dataclass,
        msgspec Struct or TypedDict its parameter names, a list into a tuple, text into a
        ``datetime`` or ``UUID`` under JSON, a value into its ``Enum``), and the caller gets
        :class:`InvalidArguments` naming the parameter (``add: b: expected int, got str``); the
        result, or each streamed item, is checked against the return hint (a generator's
        ``Iterator[T]``) and sent as plain data, or the caller gets :class:`InvalidResult` and the
        server logs it. What is checked is what msgspec knows: builtins, ``list``/``dict``/``tuple``/
        ``set``, unions and ``Optional``, ``Literal``, ``Enum``, ``datetime`` and ``date``, ``UUID``,
        ``Decimal``, dataclasses, ``TypedDict``, named tuples and msgspec Structs; a parameter
        hinted with anything else (an iterator of input items, a class of your own) is not checked.
        Hints that cannot be resolved are logged at WARNING and not checked.

        ``index`` numbers the procedure for IPFI's wire (``protocol="ipfi-rust"``), whose calls
        name procedures by number only (0 to 65535, unique in the interface).
        """

        def register(fn: F) -> F:
            self.add(fn, name=name, blocking=blocking, check_types=check_types, index=index)
            return fn

        return register(function) if function is not None else register

    def add(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        blocking: bool = False,
        check_types: bool | None = None,
        index: int | None = None,
    ) -> None:
        """Register ``function`` (as :meth:`procedure` does). Raises ``ValueError`` for a name or
        an index already registered, an index out of range, or a function without a name."""
        procedure_name = name or getattr(function, "__name__", None)
        if not procedure_name:
            raise ValueError("a procedure needs a name")
        if procedure_name in self._procedures:
            raise ValueError(f"procedure {procedure_name!r} is already registered")
        if index is not None:
            if not 0 <= index < 1 << 16:
                raise ValueError(f"index {index} is out of range (0-65535)")
            if any(procedure.index == index for procedure in self):
                raise ValueError(f"index {index} is already registered")
        try:
            signature: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            signature = None
        kind = _kind_of(function)
        hints = contracts.hints_of(function, procedure_name) if signature is not None else {}
        item_check = result_check = None
        if hints and signature is not None and (self._check_types if check_types is None else check_types):
            contract = contracts.Contract(procedure_name, signature, hints, kind.streams)
            awaits = kind in (Kind.COROUTINE, Kind.ASYNC_GENERATOR)
            if contract.checks_arguments or (contract.result is not None and not kind.streams and not awaits):
                function = contracts.enforcing(function, contract, awaits=awaits, yields=kind.streams)
            if kind.streams:
                item_check = contract.item_check()
            elif kind is Kind.COROUTINE:
                result_check = contract.item_check("result")
        procedure = Procedure(
            procedure_name, function, kind, blocking, signature, hints, item_check, index, result_check
        )
        self._procedures[procedure_name] = self._callable[procedure_name] = procedure

    @property
    def callable(self) -> Mapping[str, Procedure]:
        """Every procedure a peer may call by its name (:data:`DESCRIBE` included); live."""
        return self._callable

    def get(self, name: str) -> Procedure | None:
        """The procedure called ``name``; :data:`DESCRIBE` gives the built-in introspection one."""
        return self._callable.get(name)

    def __getitem__(self, name: str) -> Procedure:
        return self._procedures[name]

    def __contains__(self, name: object) -> bool:
        return name in self._procedures

    def __iter__(self) -> Iterator[Procedure]:
        return iter(self._procedures.values())

    def __len__(self) -> int:
        return len(self._procedures)

    def describe(self) -> list[dict[str, Any]]:
        """Each procedure's name, signature, kind, whether it streams, and first docstring line."""
        return [procedure.describe() for procedure in self]


#: The connection whose call is running now (set by the drivers around each procedure).
current_peer_var: ContextVar[Any] = ContextVar("ipfi_current_peer")


class _Core(Protocol):
    def deadline_of(self, call_id: int) -> float | None: ...
    def is_serving(self, call_id: int) -> bool: ...


class CallContext:
    """The call a procedure serves: its caller, its deadline, and whether its answer is still wanted.

    ``deadline`` is on ``time.monotonic()``'s scale (``None``: the caller set no timeout);
    ``cancelled`` turns true when the caller cancels, the deadline passes or the connection ends,
    so a blocking procedure can stop early (an ``async def`` one is cancelled outright).
    """

    __slots__ = ("call_id", "core", "peer")

    def __init__(self, peer: Any, call_id: int, core: _Core) -> None:  # (made when current_call() asks)
        self.peer = peer
        self.call_id = call_id
        self.core = core

    def __repr__(self) -> str:
        return f"<CallContext {self.call_id} of {self.peer!r}>"

    @property
    def deadline(self) -> float | None:
        return self.core.deadline_of(self.call_id)

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once past), or ``None`` without one."""
        deadline = self.deadline
        return None if deadline is None else deadline - time.monotonic()

    @property
    def cancelled(self) -> bool:
        return self.call_id != 0 and not self.core.is_serving(self.call_id)


#: The call running now, where a driver runs it in a thread of its own or a task it made for it
#: (see current_call): (peer, call id, core), made into a CallContext only when asked for.
current_call_var: ContextVar[tuple[Any, int, _Core]] = ContextVar("ipfi_current_call")

#: How a driver that does not set current_call_var for a call finds it when asked: each returns
#: (peer, call id, core), or None where the call running now is not one of its own.
call_finders: list[Callable[[], tuple[Any, int, _Core] | None]] = []


def current_call() -> CallContext:
    """The call the running procedure serves (see :class:`CallContext`): in the procedure itself,
    in what it awaits and, for a blocking one, in its thread.

    Raises ``LookupError`` outside a procedure; in a plain ``def`` procedure run inline (on the
    event loop or a reader thread), as such a procedure finishes before anything could cancel it;
    and in a task an ``async def`` procedure starts (pass it what it needs to know).
    """
    for find in call_finders:
        found = find()
        if found is not None:
            return CallContext(*found)
    return CallContext(*current_call_var.get())


def current_peer() -> Any:
    """The peer that called the procedure running now, e.g. to call it back.

    Raises ``LookupError`` outside a procedure.
    """
    return current_peer_var.get()
