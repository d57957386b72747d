"""The .proto compiled at run time (``grpc_tools.protoc``) into a temp dir the children import from."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

PROTO = Path(__file__).resolve().parents[1] / "bench.proto"
DIR_ENV = "IPFI_BENCH_GRPC_DIR"
#: 16 MiB messages exceed gRPC's 4 MiB default.
OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
ITEM = b"x" * 16
#: gRPC streams 100,000 items in about 11 s; it stops after this long, so a run stays under 5 minutes.
STREAM_SECONDS = 1.5


def compile_proto() -> str:
    """Generate ``bench_pb2`` and ``bench_pb2_grpc``; returns the directory (also set in the environment)."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="ipfi-bench-grpc-")
    status = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={out}", f"--grpc_python_out={out}", str(PROTO)])
    if status != 0:
        raise RuntimeError(f"protoc failed on {PROTO} ({status})")
    os.environ[DIR_ENV] = out
    return out


def generated() -> tuple[Any, Any]:
    sys.path.insert(0, os.environ[DIR_ENV])
    return importlib.import_module("bench_pb2"), importlib.import_module("bench_pb2_grpc")


def target(endpoint: tuple[str, Any]) -> str:
    kind, where = endpoint
    return f"unix:{where}" if kind == "unix" else f"127.0.0.1:{where}"
