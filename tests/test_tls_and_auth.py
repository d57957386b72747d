"""``tls://`` in both drivers (a call and a stream; mutual TLS and the client's subject; a wrong CA,
a wrong host name and a missing client certificate refused; failed handshakes that cost the server
nothing; handshakes under way ended with the server), the CLI's TLS flags, and authentication by
tokens: refused clients get ``AuthenticationFailed``, tokens come from a keyword, ``$IPFI_TOKEN`` or
a file, and never reach a log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import ipfi
import ipfi.sync

from .conftest import PYTHON, ROOT
from .helpers.servers import DRIVERS, run_on, serving

TOKEN = "s3cret-token-value"

served = ipfi.Interface()


@served.procedure
def who() -> str | None:
    """The TLS subject of the caller's certificate, as the server sees it."""
    return ipfi.current_peer().tls_subject


@served.procedure
def count(n: int) -> Iterator[int]:
    yield from range(n)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def call_and_stream(driver: str, address: str, **options: Any) -> tuple[Any, list[int]]:
    """``who()`` and ``count(3)`` from a client of ``driver``."""
    if driver == "blocking":
        with ipfi.sync.connect(address, **options) as peer:
            return peer.call("who"), list(peer.stream("count", 3))

    async def client() -> tuple[Any, list[int]]:
        async with ipfi.connect(address, **options) as peer:
            return await peer.call("who"), [item async for item in peer.stream("count", 3)]

    return run_on(driver, client())


def by_name(address: str) -> str:
    return address.replace("127.0.0.1", "localhost")  # (the certificate's host name)


@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_call_and_a_stream_over_tls(
    driver: str, server_driver: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with serving(server_driver, "tls://127.0.0.1:0", served, ssl=server_tls) as address:
        assert address.startswith("tls://")
        assert call_and_stream(driver, by_name(address), ssl=client_tls) == (None, [0, 1, 2])


@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_mutual_tls_gives_the_server_the_clients_subject_and_refuses_a_client_without_one(
    driver: str, server_driver: str, ca: trustme.CA, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server_tls.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_tls)
    with_certificate = ssl.create_default_context()
    ca.configure_trust(with_certificate)
    ca.issue_cert("alice@example.org", common_name="alice").configure_cert(with_certificate)
    with serving(server_driver, "tls://127.0.0.1:0", served, ssl=server_tls) as address:
        subject, items = call_and_stream(driver, by_name(address), ssl=with_certificate)
        assert "CN=alice" in subject and items == [0, 1, 2]
        with pytest.raises((ssl.SSLError, ConnectionError, ipfi.HandshakeError)):
            call_and_stream(driver, by_name(address), ssl=client_tls)  # no certificate: refused


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_server_the_client_cannot_verify_is_refused(driver: str, server_tls: ssl.SSLContext) -> None:
    other_ca = ssl.create_default_context()
    trustme.CA().configure_trust(other_ca)
    with serving("asyncio", "tls://127.0.0.1:0", served, ssl=server_tls) as address:
        for context, target in ((other_ca, by_name(address)), (None, by_name(address))):  # a wrong CA; the system's
            with pytest.raises(ssl.SSLCertVerificationError):
                call_and_stream(driver, target, **({} if context is None else {"ssl": context}))
        wrong_name = ssl.create_default_context()
        ca_for_other_host = trustme.CA()
        ca_for_other_host.configure_trust(wrong_name)
        with pytest.raises(ssl.SSLCertVerificationError):
            call_and_stream(driver, by_name(address), ssl=wrong_name)


@pytest.mark.parametrize("server_driver", DRIVERS)
def test_failed_tls_handshakes_cost_the_server_nothing(
    server_driver: str, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    limits = ipfi.Limits(handshake_timeout=1)
    with serving(server_driver, "tls://127.0.0.1:0", served, ssl=server_tls, limits=limits) as address:
        host, port = address.removeprefix("tls://").rsplit(":", 1)
        for _ in range(20):  # not TLS at all: refused by the handshake
            with socket.create_connection((host, int(port)), timeout=5) as stranger:
                stranger.sendall(b"IP\x00\x00\x00\x00\x00\x00 not a TLS client hello")
                with contextlib.suppress(ConnectionResetError):
                    stranger.recv(100)
        assert call_and_stream("asyncio", by_name(address), ssl=client_tls) == (None, [0, 1, 2])


@pytest.mark.parametrize("plain", ["tcp://127.0.0.1:0", "unix:{tmp}/plain.sock"])
def test_tls_settings_that_do_not_fit_their_address(plain: str, server_tls: ssl.SSLContext, tmp_path: Path) -> None:
    plain = plain.format(tmp=tmp_path)
    with pytest.raises(ipfi.AddressError, match="needs ssl="):
        ipfi.sync.serve("tls://127.0.0.1:0", served)
    with pytest.raises(ipfi.AddressError, match="for tls:// and wss:// addresses"):
        ipfi.sync.serve(plain, served, ssl=server_tls)

    async def serve_plain_with_a_context() -> None:
        await ipfi.serve(plain, served, ssl=server_tls)

    with pytest.raises(ipfi.AddressError, match="for tls:// and wss:// addresses"):
        asyncio.run(serve_plain_with_a_context())
    assert not (tmp_path / "plain.sock").exists()  # (refused before anything was bound)


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_tokens_admit_their_holders_and_refuse_the_rest(
    driver: str,
    server_driver: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("IPFI_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with (
        caplog.at_level(logging.DEBUG),
        serving(server_driver, "tcp://127.0.0.1:0", served, tokens={TOKEN, "other"}) as address,
    ):
        assert call_and_stream(driver, address, auth_token=TOKEN)[1] == [0, 1, 2]
        assert call_and_stream(driver, address, auth_token_file=str(token_file))[1] == [0, 1, 2]
        for refused in ({}, {"auth_token": "wrong"}, {"auth_token": TOKEN[:-1]}):
            with pytest.raises(ipfi.AuthenticationFailed):
                call_and_stream(driver, address, **refused)
        monkeypatch.setenv("IPFI_TOKEN", TOKEN)
        assert call_and_stream(driver, address)[1] == [0, 1, 2]
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(ipfi.Options(auth_token=TOKEN, tokens=frozenset({TOKEN})))


def test_tokens_must_be_a_collection() -> None:
    with pytest.raises(TypeError, match="not one string"):
        ipfi.sync.connect("tcp://127.0.0.1:1", tokens=TOKEN)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_plain_server_open_to_the_network_without_authentication_is_warned_of(
    host: str, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "ipfi"):
        with ipfi.sync.serve(f"{scheme}://{host}:0", served):
            pass
        with ipfi.sync.serve(f"{scheme}://{host}:0", served, tokens={TOKEN}):
            pass
    warnings = [record for record in caplog.records if "without TLS or authentication" in record.getMessage()]
    assert len(warnings) == (1 if host == "0.0.0.0" else 0)


# -- the command line ------------------------------------------------------------------------------


def test_the_cli_serves_and_calls_over_mutual_tls(ca: trustme.CA, tmp_path: Path) -> None:
    server_cert = ca.issue_cert("localhost")
    client_cert = ca.issue_cert("cli@example.org", common_name="cli")
    files = {
        "ca": ca.cert_pem,
        "server": server_cert.private_key_and_cert_chain_pem,
        "client": client_cert.private_key_and_cert_chain_pem,
    }
    for name, blob in files.items():
        blob.write_to_path(str(tmp_path / f"{name}.pem"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tls://localhost:{port}"

    def tls_flags(*pairs: str) -> list[str]:  # ("ca", "ca.pem's name"...) to ["--tls-ca", PATH...]
        return [
            item
            for flag, name in zip(pairs[::2], pairs[1::2], strict=True)
            for item in (f"--tls-{flag}", str(tmp_path / f"{name}.pem"))
        ]

    module = tmp_path / "tls_served.py"
    module.write_text(
        "import ipfi\niface = ipfi.Interface()\n\n@iface.procedure\ndef whoami() -> str:\n"
        "    return str(ipfi.current_peer().tls_subject)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    ipfi_command = [PYTHON, "-m", "ipfi"]
    serve = [*ipfi_command, "serve", "tls_served:iface", f"tls://127.0.0.1:{port}"]
    server = subprocess.Popen(
        [*serve, *tls_flags("cert", "server", "ca", "ca")],
        env=environment,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None and "serving" in server.stderr.readline()
        called = subprocess.run(
            [
                *ipfi_command,
                "call",
                address,
                "whoami",
                "--format",
                "json",
                *tls_flags("ca", "ca", "client-cert", "client"),
            ],
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert called.returncode == 0, called.stderr
        assert "CN=cli" in called.stdout
        unverified = subprocess.run(
            [*ipfi_command, "call", address, "whoami"], capture_output=True, text=True, timeout=30, check=False
        )
        assert unverified.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
        misplaced = subprocess.run(
            [*ipfi_command, "call", f"tcp://127.0.0.1:{port}", "whoami", "--tls-ca", "x.pem"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert misplaced.returncode == 64 and "--tls-ca is for tls:// addresses" in misplaced.stderr
    finally:
        server.terminate()
        server.wait(10)


marks: list[str] = []


@served.procedure
def mark(note: str) -> str:
    marks.append(note)
    return note


async def slow_verdict(peer: Any) -> bool:
    """An ``async def`` authenticate: it takes a while, then admits the holder of TOKEN only."""
    await asyncio.sleep(0.2)
    return bool(peer.auth_token == TOKEN)


def hello_then_call(note: str) -> bytes:
    """A client's hello and, in the same write, a call of ``mark(note)``: a client that does not
    wait for its answer (the call must not run before the server has admitted it)."""
    from ipfi.core.connection import Connection, Role

    client, rehearsal = Connection(Role.CLIENT), Connection(Role.SERVER)
    client.start()
    hello = b"".join(client.data_to_send())
    rehearsal.receive_data(hello)
    client.receive_data(b"".join(rehearsal.data_to_send()))
    client.send_call("mark", [note])
    return hello + b"".join(bytes(piece) for piece in client.data_to_send())


@pytest.mark.parametrize("server_driver", DRIVERS)
@pytest.mark.parametrize("driver", DRIVERS)
def test_an_async_authenticate_is_awaited_before_anything_the_client_sent_is_acted_on(
    driver: str, server_driver: str
) -> None:
    marks.clear()
    with serving(server_driver, "tcp://127.0.0.1:0", served, authenticate=slow_verdict) as address:
        assert call_and_stream(driver, address, auth_token=TOKEN)[1] == [0, 1, 2]
        with pytest.raises(ipfi.AuthenticationFailed):
            call_and_stream(driver, address, auth_token="wrong")
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as eager:
            eager.sendall(hello_then_call("before the verdict"))
            with contextlib.suppress(ConnectionResetError):
                while eager.recv(65536):
                    pass
    assert marks == []  # refused: its call never ran


@pytest.mark.parametrize("scheme", ["tls", "wss"])
@pytest.mark.parametrize("server_driver", DRIVERS)
def test_closing_a_server_ends_the_tls_handshakes_under_way(
    server_driver: str, scheme: str, server_tls: ssl.SSLContext
) -> None:
    """A client that connects and never says hello holds no server open past its close (asyncio on
    3.12+ would otherwise wait for that handshake's deadline in ``Server.wait_closed``)."""
    limits = ipfi.Limits(handshake_timeout=10.0)
    with contextlib.ExitStack() as stack:
        with serving(server_driver, f"{scheme}://127.0.0.1:0", served, ssl=server_tls, limits=limits) as address:
            host, port = address.removeprefix(f"{scheme}://").split("/")[0].rsplit(":", 1)
            silent = stack.enter_context(socket.create_connection((host, int(port)), timeout=5))
            time.sleep(0.2)  # (accepted, its handshake waiting)
            start = time.monotonic()
        assert time.monotonic() - start < 2
        silent.settimeout(2)
        assert silent.recv(1) == b""  # (closed with the server, not at its handshake's deadline)


@pytest.mark.parametrize("scheme", ["tls", "wss"])
@pytest.mark.parametrize("server_driver", DRIVERS)
def test_a_client_silent_in_its_tls_handshake_is_closed_at_handshake_timeout(
    server_driver: str, scheme: str, server_tls: ssl.SSLContext
) -> None:
    limits = ipfi.Limits(handshake_timeout=0.5)
    with serving(server_driver, f"{scheme}://127.0.0.1:0", served, ssl=server_tls, limits=limits) as address:
        host, port = address.removeprefix(f"{scheme}://").split("/")[0].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as silent:
            start = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert silent.recv(1) == b""
            assert 0.4 < time.monotonic() - start < 2
