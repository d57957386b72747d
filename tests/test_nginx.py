"""ipfi behind nginx, as deployments put it (Debian's nginx, started here on loopback with a
generated configuration): WebSocket upgrades proxied to an ipfi ``ws://`` server, nginx terminating
TLS for ``wss://`` clients, and its stream module relaying raw ``tcp://`` and ``tls://`` (the TLS
passed through to ipfi). Both drivers' clients; an ipfi server behind each."""

from __future__ import annotations

import contextlib
import shutil
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

from .helpers.servers import DRIVERS, run_on, serving

NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()), None
)
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs Debian's)")

calc = ipfi.Interface()


@calc.procedure
def add(a: int, b: int) -> int:
    return a + b


@calc.procedure
def count(n: int) -> Iterator[int]:
    yield from range(n)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def nginx(directory: Path, ports: list[int], http: str = "", stream: str = "") -> Iterator[None]:
    """nginx in the foreground, one process, with ``http`` and ``stream`` server blocks, once it
    listens on ``ports``."""
    temporary = "\n".join(
        f"{kind}_temp_path {directory}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = directory / "nginx.conf"
    config.write_text(
        (f"load_module {STREAM_MODULE};\n" if stream and STREAM_MODULE.exists() else "")
        + f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log warn;\n"
        + "events { worker_connections 1024; }\n"
        + (f"http {{\naccess_log off;\n{temporary}\n{http}\n}}\n" if http else "")
        + (f"stream {{\n{stream}\n}}\n" if stream else "")
    )
    process = subprocess.Popen(
        [str(NGINX), "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log"), "-g",
         "daemon off; master_process off;"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                assert process.poll() is None, f"nginx exited: {(directory / 'error.log').read_text()}"
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                assert time.monotonic() < deadline, "nginx did not listen in time"
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(10)


def session(driver: str, address: str, **options: Any) -> tuple[int, list[int]]:
    if driver == "blocking":
        with ipfi.sync.connect(address, **options) as peer:
            return peer.call("add", 1, 2), list(peer.stream("count", 3))

    async def client() -> tuple[int, list[int]]:
        async with ipfi.connect(address, **options) as peer:
            return await peer.call("add", 1, 2), [item async for item in peer.stream("count", 3)]

    return run_on(driver, client())


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("certificates")
    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    issued.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    issued.private_key_pem.write_to_path(str(directory / "key.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issued.configure_cert(server)
    return {"directory": directory, "client": client, "server": server}


def websocket_location(path: str, backend: int) -> str:
    return f"""
    location {path} {{
        proxy_pass http://127.0.0.1:{backend};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_read_timeout 1h;
    }}"""


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss terminated by nginx"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_websocket_clients_reach_ipfi_through_nginx(
    driver: str, tls: bool, tmp_path: Path, certificates: dict[str, Any]
) -> None:
    front = free_port()
    files = certificates["directory"]
    listen = f"listen 127.0.0.1:{front}" + (
        f" ssl;\nssl_certificate {files}/cert.pem;\nssl_certificate_key {files}/key.pem;" if tls else ";"
    )
    with serving("asyncio", "ws://127.0.0.1:0/calc", calc) as backend:
        backend_port = int(backend.rsplit(":", 1)[1].split("/")[0])
        with nginx(tmp_path, [front], http=f"server {{\n{listen}\n{websocket_location('/calc', backend_port)}\n}}"):
            scheme = "wss" if tls else "ws"
            options = {"ssl": certificates["client"]} if tls else {}
            assert session(driver, f"{scheme}://localhost:{front}/calc", **options) == (3, [0, 1, 2])


@pytest.mark.skipif(not STREAM_MODULE.exists(), reason="nginx's stream module is not installed (libnginx-mod-stream)")
@pytest.mark.parametrize("driver", DRIVERS)
def test_tcp_and_tls_clients_reach_ipfi_through_nginxs_stream_module(
    driver: str, tmp_path: Path, certificates: dict[str, Any]
) -> None:
    plain_front, tls_front = free_port(), free_port()
    tls_options = {"ssl": certificates["server"]}
    plain_server = serving("asyncio", "tcp://127.0.0.1:0", calc)
    with plain_server as plain, serving("asyncio", "tls://127.0.0.1:0", calc, **tls_options) as tls:
        stream = "\n".join(
            f"server {{ listen 127.0.0.1:{front}; proxy_pass {backend.split('://')[1]}; }}"
            for front, backend in ((plain_front, plain), (tls_front, tls))
        )
        with nginx(tmp_path, [plain_front, tls_front], stream=stream):
            assert session(driver, f"tcp://127.0.0.1:{plain_front}") == (3, [0, 1, 2])
            # nginx passes TLS through: the client verifies ipfi's own certificate.
            assert session(driver, f"tls://localhost:{tls_front}", ssl=certificates["client"]) == (3, [0, 1, 2])
