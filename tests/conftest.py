from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT.parent / "shared" / "vectors"
if not VECTORS.is_dir():  # a checkout beside shared/ is the norm; CI keeps it so
    VECTORS = Path(os.environ.get("IPFI_VECTORS", VECTORS))


def load_vectors(name: str) -> dict[str, Any]:
    path = VECTORS / name
    if not path.exists():
        pytest.fail(f"test vectors missing: {path} (set IPFI_VECTORS to the shared/vectors folder)")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.fixture
def ipcprims() -> dict[str, Any]:
    return load_vectors("ipcprims.json")


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    # sun_path is short (108 bytes): keep socket names near the root of tmp_path.
    return str(tmp_path / "t.sock")


PYTHON = sys.executable
HELPERS = Path(__file__).resolve().parent / "helpers"
