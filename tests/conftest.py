from __future__ import annotations

import faulthandler
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_VECTORS = ROOT.parent / "shared" / "vectors"
# The team's vectors live in ../shared/vectors (CI clones beside it); tests/vectors is a copy, kept
# identical by test_vector_copy_matches_shared, so a clone anywhere else still runs every test.
VECTORS = SHARED_VECTORS if SHARED_VECTORS.is_dir() else Path(__file__).resolve().parent / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    path = VECTORS / name
    if not path.exists():
        pytest.fail(f"test vectors missing: {path}")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.fixture
def ipcprims() -> dict[str, Any]:
    return load_vectors("ipcprims.json")


@pytest.fixture(autouse=True)
def fresh_log_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process-wide log limiters start each test empty: one test's lines do not use up another's."""
    from ipfi import peer_base
    from ipfi.core.logs import RateLimitedLog

    for name in ("_failures", "_violations"):
        limiter = getattr(peer_base, name)
        fresh = RateLimitedLog(limiter._logger, burst=limiter.burst, period=limiter.period)
        monkeypatch.setattr(peer_base, name, fresh)


@pytest.fixture(autouse=True)
def fresh_calc_records() -> None:
    """The calc helper's records start empty in every test: nothing one test did is seen by another."""
    from .helpers import calc

    calc.started.clear()
    calc.cancelled.clear()
    calc.produced[0] = 0


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    # sun_path is short (108 bytes): keep socket names near the root of tmp_path.
    return str(tmp_path / "t.sock")


PYTHON = sys.executable
HELPERS = Path(__file__).resolve().parent / "helpers"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that hangs after its last test (a thread nobody stopped, a loop never closed) is out of
    pytest-timeout's sight: past a minute, print every thread's stack and exit rather than sit until
    CI's own limit."""
    # (To the process's own stderr: sys.stderr may be pytest's capture, gone by the time it fires.)
    faulthandler.dump_traceback_later(60, exit=True, file=sys.__stderr__)
