"""The folder list is the layering: the core does no I/O, and parsing an address touches nothing."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import ipfi

CORE = Path(ipfi.__file__).parent / "core"
FORBIDDEN = {"asyncio", "socket", "threading", "selectors", "fcntl", "select", "subprocess"}
OUTER = {"ipfi.net", "ipfi.aio", "ipfi.sync", "ipfi.cli"}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against ipfi.core
                parents = ["ipfi", "core"][: 3 - node.level] if node.level <= 2 else []
                base = ".".join([*parents, base] if base else parents)
            names.add(base)
    return names


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda path: path.name)
def test_the_core_imports_no_io_and_nothing_above_it(module: Path) -> None:
    for name in imports_of(module):
        assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
        assert not any(name == outer or name.startswith(outer + ".") for outer in OUTER), f"{module.name}: {name}"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import socket\nfrom ..net import addresses\n")
    assert imports_of(bad) == {"socket", "ipfi.net"}


def test_parsing_an_address_touches_no_file_and_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    touched: list[str] = []
    for name in ("stat", "lstat", "listdir", "mkdir", "open", "getenv"):
        original = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _n=name, _o=original, **k: touched.append(_n) or _o(*a, **k))

    class Environ(dict[str, str]):
        def get(self, *args: object) -> object:  # type: ignore[override]
            touched.append("environ")
            return super().get(*args)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "environ", Environ(os.environ))
    address = ipfi.parse_address("service:calc")
    assert address.name == "calc" and not touched
