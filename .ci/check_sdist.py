"""The source distribution holds what it should and nothing else: usage ``check_sdist.py SDIST``."""

from __future__ import annotations

import sys
import tarfile

REQUIRED = {
    "PKG-INFO",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE-MIT",
    "LICENSE-APACHE",
    "mkdocs.yml",
    "src/ipfi/__init__.py",
    "src/ipfi/py.typed",
    "tests/conftest.py",
    "examples/demo.py",
    "docs/index.md",
    "docs/PROTOCOL.md",
    "benchmarks/RESULTS.md",
}
TOP_LEVEL = {"src", "tests", "examples", "docs", "benchmarks", "fuzz", ".gitignore"} | {
    name for name in REQUIRED if "/" not in name
}
#: What runs leave behind, that must never ship.
FORBIDDEN = ("__pycache__", ".pyc", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
             ".sock", "site/", "dist/", "fuzz/corpus", ".egg-info")  # fmt: skip


def main(path: str) -> None:
    with tarfile.open(path) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    missing = REQUIRED - set(names)
    stray = {name.split("/")[0] for name in names} - TOP_LEVEL
    leftovers = [name for name in names if any(part in name for part in FORBIDDEN)]
    if missing or stray or leftovers:
        sys.exit(f"{path}: missing {sorted(missing)}, unexpected {sorted(stray)}, left behind {leftovers[:10]}")
    print(f"sdist: {len(names)} files, as it should be")


if __name__ == "__main__":
    main(sys.argv[1])
