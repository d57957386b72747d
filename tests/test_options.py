"""Options are checked when made, not when a connection trips over them."""

from __future__ import annotations

import subprocess
import sys

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


def test_cbor_is_offered_when_cbor2_is_installed_and_asked_for_clearly_when_not() -> None:
    assert "cbor" in ipfi.Options().codecs  # (the dev extra installs cbor2)
    program = (
        "import sys; sys.modules['cbor2'] = None\n"  # (as if it were not installed)
        "import ipfi\n"
        "assert 'cbor' not in ipfi.Options().codecs, ipfi.Options().codecs\n"
        "try:\n"
        "    ipfi.Options(codecs=('cbor', 'msgpack'))\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "the cbor codec needs cbor2: pip install 'ipfi[cbor]'"
