"""Type hints as contracts, on both drivers: each hint kind checked on the arguments a procedure
receives (and rebuilt: a map into a dataclass, a list into a tuple, a value into its Enum) and on
what it returns or yields (sent as plain data); the opt-out; typed proxies; the hints as JSON Schema."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal, Protocol, TypedDict

import msgspec
import pytest

import ipfi
import ipfi.sync
from tests.helpers.typed import Color, Item, Pair, Point


class Span(TypedDict):
    name: str
    size: int


WHEN = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@dataclasses.dataclass
class Case:
    """A hint; a value sent for it, the value the procedure must receive and what comes back; a
    value that breaks it, and the words of the refusal."""

    hint: Any
    sent: Any
    received: Any
    returned: Any
    bad: Any
    refusal: str


CASES = {
    "int": Case(int, 5, 5, 5, "5", "value: expected int, got str"),
    "int refuses bool": Case(int, 5, 5, 5, True, "value: expected int, got bool"),
    "float takes int": Case(float, 2, 2.0, 2.0, "2", "value: expected float, got str"),
    "str": Case(str, "a", "a", "a", 1, "value: expected str, got int"),
    "bytes": Case(bytes, b"ab", b"ab", b"ab", "ab", "value: expected bytes, got str"),
    "bool": Case(bool, True, True, True, 1, "value: expected bool, got int"),
    "None": Case(None, None, None, None, 0, "value: expected null, got int"),
    "list": Case(list[int], [1, 2], [1, 2], [1, 2], [1, "x"], "value[1]: expected int, got str"),
    "dict": Case(dict[str, int], {"a": 1}, {"a": 1}, {"a": 1}, {"a": "x"}, "expected int, got str"),
    "tuple": Case(tuple[int, str], [1, "a"], (1, "a"), [1, "a"], [1, 2], "value[1]: expected str, got int"),
    "Optional": Case(int | None, None, None, None, "x", "value: expected int | null, got str"),
    "union": Case(int | str, "a", "a", "a", 1.5, "value: expected int | str, got float"),
    "Annotated constraint": Case(Annotated[int, msgspec.Meta(ge=0)], 3, 3, 3, -1, "value: expected int >= 0"),
    "Literal": Case(Literal["a", "b"], "b", "b", "b", "c", "value: invalid enum value 'c'"),
    "Enum": Case(Color, "red", Color.RED, "red", "green", "value: invalid enum value 'green'"),
    "datetime": Case(datetime.datetime, WHEN, WHEN, WHEN, "yesterday", "value: invalid RFC3339 encoded datetime"),
    "UUID": Case(uuid.UUID, ID, ID, ID, "not-an-id", "value: invalid UUID"),
    # (msgspec leaves out a field it filled from its default: the typed side fills it again)
    "dataclass": Case(Point, {"x": 1}, Point(1, 0), {"x": 1}, {"x": "a"}, "value.x: expected int, got str"),
    "TypedDict": Case(Span, {"name": "a", "size": 1}, {"name": "a", "size": 1}, {"name": "a", "size": 1},
                      {"name": "a"}, "value: object missing required field size"),
    "NamedTuple": Case(Pair, [1, "a"], Pair(1, "a"), [1, "a"], [1], "value: expected array of length 2, got 1"),
    "Struct": Case(Item, {"name": "a", "price": decimal.Decimal("1.5")}, Item("a", decimal.Decimal("1.5")),
                   {"name": "a", "price": decimal.Decimal("1.5"), "tags": []}, {"name": "a"},
                   "value: object missing required field price"),
}  # fmt: skip


def echo_of(hint: Any, seen: list[Any]) -> Callable[..., Any]:
    def echo(value: Any) -> Any:
        seen.append(value)
        return value

    echo.__annotations__ = {"value": hint, "return": hint}
    return echo


class Pair_:
    """Both ends in this process, for either driver, with the blocking peer's shape."""

    def __init__(self, driver: str, iface: ipfi.Interface) -> None:
        self.driver = driver
        if driver == "blocking":
            self.client, self.server = ipfi.sync.pair(None, iface)
            self.loop: asyncio.AbstractEventLoop | None = None
        else:
            self.loop = asyncio.new_event_loop()
            self.client, self.server = self.loop.run_until_complete(ipfi.pair(None, iface))

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.loop is None:
            return self.client.call(name, *args, **kwargs)
        return self.loop.run_until_complete(self.client.call(name, *args, **kwargs))

    def items(self, name: str, *args: Any) -> list[Any]:
        if self.loop is None:
            return list(self.client.stream(name, *args))

        async def collect() -> list[Any]:
            return [item async for item in self.client.stream(name, *args)]

        return self.loop.run_until_complete(collect())

    def run(self, coroutine: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        if self.loop is None:
            self.client.close()
            self.server.close()
            return
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.server.aclose())
        self.loop.close()


DRIVERS = ["asyncio", "blocking"]


@pytest.fixture(params=DRIVERS)
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[ipfi.Interface], Pair_]]:
    made: list[Pair_] = []

    def make(iface: ipfi.Interface) -> Pair_:
        made.append(Pair_(request.param, iface))
        return made[-1]

    yield make
    for pair in made:
        pair.close()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_hint_is_checked_and_rebuilt_on_the_way_in_and_plain_on_the_way_out(connect: Any, case: Case) -> None:
    seen: list[Any] = []
    iface = ipfi.Interface()
    iface.add(echo_of(case.hint, seen), name="echo")
    ends = connect(iface)

    assert ends.call("echo", case.sent) == case.returned
    assert seen == [case.received]
    assert type(seen[0]) is type(case.received)
    with pytest.raises(ipfi.InvalidArguments) as refused:
        ends.call("echo", case.bad)
    assert str(refused.value).startswith("echo: ")
    assert case.refusal in str(refused.value)
    assert len(seen) == 1  # (the procedure did not run)
    assert ends.call("echo", case.sent) == case.returned  # the connection goes on


def test_keyword_and_variadic_arguments_are_checked_by_name(connect: Any) -> None:
    iface = ipfi.Interface()

    @iface.procedure
    def place(point: Point, /, *scales: float, label: str = "", **tags: int) -> list[Any]:
        return [point.x, list(scales), label, tags]

    ends = connect(iface)
    assert ends.call("place", {"x": 2}, 1, 2.5, label="a", size=3) == [2, [1.0, 2.5], "a", {"size": 3}]
    for args, kwargs, refusal in [
        (({"x": 2}, 1, "big"), {}, "place: *[1]: expected float, got str"),
        (({"x": 2},), {"label": 5}, "place: label: expected str, got int"),
        (({"x": 2},), {"size": "3"}, "place: size: expected int, got str"),
    ]:
        with pytest.raises(ipfi.InvalidArguments) as refused:
            ends.call("place", *args, **kwargs)
        assert str(refused.value) == refusal
    with pytest.raises(ipfi.InvalidArguments, match="missing 1 required positional argument"):
        ends.call("place")  # (what does not bind is left to the call, as without hints)

    @iface.procedure
    def repeat(value: Any) -> Iterator[Any]:
        yield value

    with pytest.raises(ipfi.InvalidArguments, match="takes 1 positional argument but 2 were given"):
        ends.items("repeat", 1, 2)  # (a generator that cannot start is answered too)
    assert ends.items("repeat", 1) == [1]


def test_a_result_or_item_that_breaks_its_hint_is_invalid_result_and_logged(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    iface = ipfi.Interface()

    @iface.procedure
    def wrong() -> int:
        return "one"  # type: ignore[return-value]

    @iface.procedure
    async def wrong_later() -> Point:
        return {"x": "one"}  # type: ignore[return-value]

    @iface.procedure
    def counting(n: int) -> Iterator[int]:
        yield from range(n)
        yield "more"  # type: ignore[misc]

    @iface.procedure
    async def counting_later(n: int) -> AsyncIterator[Color]:
        for _ in range(n):
            yield Color.BLUE
        yield "green"  # type: ignore[misc]

    ends = connect(iface)
    with caplog.at_level(logging.WARNING, logger="ipfi"):
        with pytest.raises(ipfi.InvalidResult, match=r"^wrong: result: expected int, got str$"):
            ends.call("wrong")
        with pytest.raises(ipfi.InvalidResult, match=r"^wrong_later: result.x: expected int, got str$"):
            ends.call("wrong_later")
        with pytest.raises(ipfi.InvalidResult, match=r"^counting: item: expected int, got str$"):
            ends.items("counting", 2)
        with pytest.raises(ipfi.InvalidResult, match=r"^counting_later: item: invalid enum value 'green'$"):
            ends.items("counting_later", 2)
    assert isinstance(ipfi.InvalidResult("x"), TypeError)
    assert [record.getMessage().split(" raised ")[-1] for record in caplog.records].count("InvalidResult") == 4


def test_async_procedures_and_generators_rebuild_their_arguments(connect: Any) -> None:
    iface = ipfi.Interface()

    @iface.procedure
    async def moved(point: Point, by: Point) -> Point:
        await asyncio.sleep(0)
        assert isinstance(asyncio.current_task(), asyncio.Task)
        return Point(point.x + by.x, point.y + by.y)

    @iface.procedure
    async def walk(start: Point, steps: int) -> AsyncIterator[Point]:
        for step in range(steps):
            await asyncio.sleep(0)
            yield Point(start.x + step, start.y)

    @iface.procedure
    async def unhinted_result(point: Point):  # type: ignore[no-untyped-def]  # (only the argument is checked)
        await asyncio.sleep(0)
        return [point.x, point.y]

    @iface.procedure
    def marks(when: datetime.datetime, n: int) -> Iterator[datetime.datetime]:
        for day in range(n):
            yield when + datetime.timedelta(days=day)

    ends = connect(iface)
    assert ends.call("moved", {"x": 1, "y": 1}, {"x": 2}) == {"x": 3, "y": 1}
    assert ends.items("walk", {"x": 5}, 2) == [{"x": 5, "y": 0}, {"x": 6, "y": 0}]
    assert ends.items("marks", WHEN, 2) == [WHEN, WHEN + datetime.timedelta(days=1)]
    assert ends.call("unhinted_result", {"x": 7}) == [7, 0]
    with pytest.raises(ipfi.InvalidArguments, match=r"^unhinted_result: point: expected object, got int$"):
        ends.call("unhinted_result", 7)
    with pytest.raises(ipfi.InvalidArguments, match=r"^walk: start.x: expected int, got str$"):
        ends.items("walk", {"x": "5"}, 2)
    with pytest.raises(ipfi.InvalidArguments, match=r"^marks: n: expected int, got float$"):
        ends.items("marks", WHEN, 2.0)


def test_checking_can_be_turned_off_per_interface_or_per_procedure(connect: Any) -> None:
    def add(a: int, b: int) -> int:
        return a + b

    unchecked = ipfi.Interface(check_types=False)
    unchecked.add(add)
    unchecked.add(add, name="checked", check_types=True)
    checked = ipfi.Interface()
    checked.add(add, name="unchecked", check_types=False)
    first, second = connect(unchecked), connect(checked)
    assert first.call("add", "x", "y") == "xy"
    assert second.call("unchecked", "x", "y") == "xy"
    with pytest.raises(ipfi.InvalidArguments):
        first.call("checked", "x", "y")


def test_what_is_not_data_is_not_checked(connect: Any, caplog: pytest.LogCaptureFixture) -> None:
    """An input stream's iterator, a type of one's own, and hints that cannot be resolved."""
    iface = ipfi.Interface()

    @iface.procedure
    def total(items: Iterator[int], start: int = 0) -> int:
        return start + sum(items)

    @iface.procedure
    async def total_later(items: AsyncIterator[int], start: int = 0) -> int:
        return start + sum([item async for item in items])

    def unresolved(value: NotDefinedAnywhere) -> int:  # type: ignore[name-defined]  # noqa: F821
        return value  # type: ignore[no-any-return]

    with caplog.at_level(logging.WARNING, logger="ipfi.contracts"):
        iface.add(unresolved)
    assert "procedure unresolved: its type hints are not checked: NameError" in caplog.text
    ends = connect(iface)
    assert ends.call("unresolved", "anything") == "anything"
    if ends.loop is None:
        assert ends.client.with_options(input=[1, 2, 3]).call("total", start=1) == 7
    else:  # (the asyncio driver gives a procedure its input as an async iterator)
        assert ends.run(ends.client.with_options(input=[1, 2, 3]).call("total_later", start=1)) == 7


class Geometry(Protocol):
    async def moved(self, point: Point, by: Point) -> Point: ...
    def walk(self, start: Point, steps: int) -> AsyncIterator[Point]: ...
    async def lied(self) -> Point: ...


class BlockingGeometry(Protocol):
    def moved(self, point: Point, by: Point) -> Point: ...
    def walk(self, start: Point, steps: int) -> Iterator[Point]: ...
    def lied(self) -> Point: ...


def geometry() -> ipfi.Interface:
    iface = ipfi.Interface()

    @iface.procedure
    def moved(point: Point, by: Point) -> Point:
        return Point(point.x + by.x, point.y + by.y)

    @iface.procedure
    def walk(start: Point, steps: int) -> Iterator[Point]:
        for step in range(steps):
            yield Point(start.x + step, start.y)

    @iface.procedure
    def lied() -> dict[str, str]:
        return {"x": "not a number"}

    return iface


def test_a_typed_proxy_sends_plain_data_and_rebuilds_results(connect: Any) -> None:
    ends = connect(geometry())
    if ends.loop is None:
        proxy = ends.client.proxy(BlockingGeometry)
        assert proxy.moved(Point(1, 2), by=Point(3)) == Point(4, 2)
        assert list(proxy.walk(Point(1), 2)) == [Point(1), Point(2)]
        with pytest.raises(ipfi.InvalidResult, match=r"^lied: result.x: expected int, got str$"):
            proxy.lied()
        assert ends.client.with_options(timeout=5).proxy(BlockingGeometry).moved(Point(1), Point(1)) == Point(2)
        with pytest.raises(TypeError, match=r"^Geometry.lied: expected def$"):
            ends.client.proxy(Geometry)
        return

    async def use() -> None:
        proxy = ends.client.proxy(Geometry)
        assert await proxy.moved(Point(1, 2), by=Point(3)) == Point(4, 2)
        assert [point async for point in proxy.walk(Point(1), 2)] == [Point(1), Point(2)]
        with pytest.raises(ipfi.InvalidResult, match=r"^lied: result.x: expected int, got str$"):
            await proxy.lied()
        assert await ends.client.with_options(timeout=5).proxy(Geometry).moved(Point(1), Point(1)) == Point(2)
        with pytest.raises(TypeError, match=r"BlockingGeometry.lied: expected async def"):
            ends.client.proxy(BlockingGeometry)

    ends.run(use())


def test_a_typed_stream_stops_at_an_item_that_does_not_fit(connect: Any) -> None:
    iface = ipfi.Interface()

    @iface.procedure
    def numbers(n: int) -> Iterator[Any]:
        yield 1
        yield "two"
        yield from range(n)

    class Numbers(Protocol):
        def numbers(self, n: int) -> AsyncIterator[int]: ...

    class BlockingNumbers(Protocol):
        def numbers(self, n: int) -> Iterator[int]: ...

    ends = connect(iface)
    if ends.loop is None:
        got: list[int] = []
        with pytest.raises(ipfi.InvalidResult, match=r"^numbers: item: expected int, got str$"):
            got.extend(ends.client.proxy(BlockingNumbers).numbers(1000))
        assert got == [1]
        assert ends.call("numbers", 0) == [1, "two"]  # the connection goes on
        return

    async def use() -> list[int]:
        got = []
        with pytest.raises(ipfi.InvalidResult, match=r"^numbers: item: expected int, got str$"):
            async for item in ends.client.proxy(Numbers).numbers(1000):
                got.append(item)  # noqa: PERF401  (the items before the refusal are kept)
        return got

    assert ends.run(use()) == [1]
    assert ends.call("numbers", 0) == [1, "two"]


def test_descriptions_carry_json_schemas_of_parameters_and_results() -> None:
    iface = ipfi.Interface()

    @iface.procedure
    def place(point: Point, /, when: datetime.datetime, *, color: Color = Color.RED, **tags: int) -> list[Point]:
        """Place a point."""
        return [point]

    @iface.procedure
    async def ticks(n: int) -> AsyncIterator[float]:
        yield 0.0

    @iface.procedure
    def plain(anything, *rest):  # type: ignore[no-untyped-def]
        return anything

    described = {entry["name"]: entry for entry in iface.describe()}
    place_ = described["place"]
    assert place_["parameters"] == [
        {"name": "point", "kind": "positional_only", "required": True, "schema": {"$ref": "#/$defs/Point"}},
        {"name": "when", "kind": "positional_or_keyword", "required": True,
         "schema": {"type": "string", "format": "date-time"}},
        {"name": "color", "kind": "keyword_only", "required": False, "schema": {"$ref": "#/$defs/Color"}},
        {"name": "tags", "kind": "var_keyword", "required": False, "schema": {"type": "integer"}},
    ]  # fmt: skip
    assert place_["result"] == {"type": "array", "items": {"$ref": "#/$defs/Point"}}
    assert place_["$defs"]["Point"]["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}}
    assert place_["$defs"]["Color"]["enum"] == ["blue", "red"]
    assert described["ticks"]["result"] == {"type": "number"}  # (each item's)
    assert described["plain"]["parameters"][1] == {"name": "rest", "kind": "var_positional", "required": False,
                                                   "schema": {}}  # fmt: skip
    assert described["plain"]["result"] == {}
