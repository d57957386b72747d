from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import SHARED_VECTORS

COPY = Path(__file__).resolve().parent / "vectors"


@pytest.mark.parametrize("name", ["ipcprims.json", "ipfi-rust.json", "libipc.json"])
def test_vector_copy_matches_shared(name: str) -> None:
    if not SHARED_VECTORS.is_dir():
        pytest.skip("../shared/vectors is not beside this checkout")
    assert (COPY / name).read_bytes() == (SHARED_VECTORS / name).read_bytes()
