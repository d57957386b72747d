"""Options are checked when made, not when a connection trips over them."""

from __future__ import annotations

import pytest

import ipfi


def test_keepalive_timeout_must_exceed_the_keepalive() -> None:
    assert ipfi.Options(keepalive=0.1, keepalive_timeout=0.11).keepalive_timeout == 0.11
    with pytest.raises(ValueError, match="exceed"):
        ipfi.Options(keepalive=0.1, keepalive_timeout=0.1)  # at the ping interval: a live peer is dropped
    with pytest.raises(ValueError, match="needs a keepalive"):
        ipfi.Options(keepalive_timeout=1.0)
    with pytest.raises(ValueError, match="positive"):
        ipfi.Options(keepalive=0)
