"""``ipfi stubs``: a live server's procedures as a Protocol module that type-checks and drives a
typed proxy; and a type checker (mypy) refusing a wrong call on a typed proxy."""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import re
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ipfi
import ipfi.sync
from tests.helpers import typed

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    """The typed interface, served by the blocking driver on a Unix socket in a thread."""
    server = ipfi.sync.serve(f"unix:{tmp_path}/typed.sock", typed.iface)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.bound_address
    server.close()
    thread.join(10)


def stubs(address: str, *flags: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ipfi", "stubs", address, *flags], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def load(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import a module from ``path`` (registered, as an import would: hints are resolved in it)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)
    spec.loader.exec_module(module)
    return module


def test_stubs_type_check_and_drive_a_typed_proxy_and_mypy_refuses_wrong_calls(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "typed_stubs.py").write_text(stubs(address))
    (tmp_path / "typed_stubs_sync.py").write_text(stubs(address, "--sync", "--class-name", "Typed"))
    text = (tmp_path / "typed_stubs.py").read_text()
    for expected in [
        "class Point(TypedDict):\n    x: int\n    y: NotRequired[int]",
        "class Span(TypedDict):\n    id: uuid.UUID\n    start: datetime.datetime",
        'Color = Literal["blue", "red"]',
        "Pair = tuple[int, str]",
        '    async def add(self, a: int, b: int) -> int:\n        """Add two "numbers"."""',
        "    async def move(self, p: Point, /, dx: float, *, color: Color = ...) -> Point: ...",
        "    def count(self, n: int) -> AsyncIterator[int]: ...",
        "    # 'math.untyped': not a Python name; call it with peer.call('math.untyped', ...)",
        "    async def anything(self, *values: Any, **options: Any) -> dict[str, Any]: ...",
    ]:
        assert expected in text
    (tmp_path / "uses_well.py").write_text(
        textwrap.dedent(
            """
            import ipfi, ipfi.sync
            from typed_stubs import Procedures, Point
            from typed_stubs_sync import Typed

            async def use(peer: ipfi.Peer) -> int:
                calc = peer.proxy(Procedures)
                moved: Point = await calc.move({"x": 1}, 2.0, color="blue")
                return await calc.add(1, 2) + moved["x"] + sum([n async for n in calc.count(3)])

            def use_blocking(peer: ipfi.sync.Peer) -> str:
                return peer.proxy(Typed).greet("Ada", punctuation=None)
            """
        )
    )
    (tmp_path / "uses_badly.py").write_text(
        textwrap.dedent(
            """
            import ipfi
            from typed_stubs import Procedures

            async def use(peer: ipfi.Peer) -> None:
                calc = peer.proxy(Procedures)
                await calc.add(1, "2")
                text: str = await calc.add(1, 2)
                await calc.move({"x": 1}, 2.0, color="green")
                await calc.nothing_of_the_kind()
            """
        )
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"),
         "typed_stubs.py", "typed_stubs_sync.py", "uses_well.py", "uses_badly.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False,
        env={"MYPYPATH": str(ROOT / "src"), "PATH": ""},
    )  # fmt: skip
    errors = re.findall(r"^(\S+?):(\d+): error", checked.stdout, re.MULTILINE)
    assert sorted((path, int(line)) for path, line in errors) == [("uses_badly.py", line) for line in (7, 8, 9, 10)], (
        checked.stdout
    )

    # The stub module drives a typed proxy: results come back as its types say.
    module = load(tmp_path / "typed_stubs_sync.py", monkeypatch)
    with ipfi.sync.connect(address) as peer:
        proxy = peer.proxy(module.Typed)
        when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
        span = {"start": when, "id": uuid.UUID(int=7)}
        assert proxy.spans(span, (1, "a"), [{"name": "x", "price": "1.5"}], "a", b"") == [span]
        assert proxy.move({"x": 1}, 2.5) == {"x": 3, "y": 0}
        assert list(proxy.count(3)) == [0, 1, 2]
        with pytest.raises(ipfi.InvalidArguments, match=r"^spans: items\[0\].price: expected decimal, got array$"):
            proxy.spans(span, (1, "a"), [{"name": "x", "price": [1]}], "a", b"")

    async def use_async() -> None:
        async with await ipfi.connect(address) as peer:
            proxy = peer.proxy(load(tmp_path / "typed_stubs.py", monkeypatch).Procedures)
            assert await proxy.add(1, 2) == 3
            assert [n async for n in proxy.count(2)] == [0, 1]

    asyncio.run(use_async())


def test_call_reads_arguments_as_the_parameters_schemas_say(address: str) -> None:
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ipfi", "--format", "json", "call", address, *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert call("greet", "Ada").stdout == '"hello Ada"\n'
    assert call("greet", "123", "!").stdout == '"hello 123!"\n'  # (text, though it reads as JSON)
    assert call("greet", '"Ada"').stdout == '"hello Ada"\n'  # (quoted JSON, as before)
    assert call("add", "1", "2").stdout == "3\n"
    assert call("anything", "1", "x y", "[1]").returncode == 60  # ("x y" is not JSON, and Any takes JSON)
    assert call("anything", "1", '"x y"', "[1]").stdout == '{"values":[1,"x y",[1]],"options":{}}\n'
    refused = call("add", "1", "x")
    assert refused.returncode == 60 and "argument b is not JSON" in refused.stderr
