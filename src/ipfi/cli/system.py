"""``ipfi doctor``, ``envinfo`` and ``version``: what this machine offers ipfi."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.handshake import PROTOCOL, VERSION
from ..net.services import RUNDIR_ENV, SUN_PATH_MAX, list_services, runtime_dir, runtime_dir_problem
from .exit_codes import DOCTOR_FAILED, OK
from .output import Output

#: Optional extras: the module each one installs, and what it gives.
EXTRAS = {
    "speed": ("uvloop", "a faster event loop for ipfi.run and the command line"),
    "cbor": ("cbor2", "the cbor codec"),
    "schema": ("jsonschema", "--validate and ipfi.Schemas"),
}
#: A name this long must fit beside the runtime directory in a socket path.
MIN_NAME_ROOM = 16


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check(name: str, status: str, detail: str) -> dict[str, str]:
    return {"check": name, "status": status, "detail": detail}


def _runtime_dir_checks(directory: Path) -> list[dict[str, str]]:
    problem = runtime_dir_problem(directory)
    if problem:
        return [_check("runtime directory", "fail", problem)]
    checks = []
    if directory.exists():
        mode = stat.S_IMODE(os.lstat(directory).st_mode)
        checks.append(_check("runtime directory", "ok", f"{directory} (mode {mode:o}, owned by this user)"))
    else:
        existing = next(parent for parent in directory.parents if parent.exists())
        writable = os.access(existing, os.W_OK | os.X_OK)
        status, verb = ("ok", "will be created") if writable else ("fail", f"cannot be created in {existing}")
        checks.append(_check("runtime directory", status, f"{directory} is absent; {verb} (mode 700)"))
    room = SUN_PATH_MAX - len(os.fsencode(directory / ".sock"))
    status = "ok" if room >= MIN_NAME_ROOM else "fail"
    checks.append(_check("socket path room", status, f"service names up to {max(room, 0)} bytes fit in sun_path"))
    for name, pid in list_services(directory):
        if pid is None:
            checks.append(_check(f"service {name}", "warn", "stale socket: its server is gone (replaced on restart)"))
        else:
            checks.append(_check(f"service {name}", "ok", f"running (pid {pid})" if pid else "running"))
    return checks


def run_doctor(args: argparse.Namespace, out: Output) -> int:
    checks = [_check("python", "ok" if sys.version_info >= (3, 11) else "fail", platform.python_version())]
    for dependency in ("msgpack", "msgspec"):
        version = package_version(dependency)
        checks.append(_check(dependency, "ok" if version else "fail", version or "missing: reinstall ipfi"))
    if hasattr(socket, "AF_UNIX"):
        checks.extend(_runtime_dir_checks(runtime_dir()))
    else:
        checks.append(_check("unix sockets", "warn", f"not on {sys.platform} yet: unix: and service: addresses"))
    for extra, (module, gives) in EXTRAS.items():
        version = package_version(module)
        detail = f"{module} {version}" if version else f"not installed; pip install 'ipfi[{extra}]' for {gives}"
        checks.append(_check(f"extra [{extra}]", "ok" if version else "warn", detail))
    out.rows(checks)
    return DOCTOR_FAILED if any(check["status"] == "fail" for check in checks) else OK


def environment() -> dict[str, Any]:
    return {
        "ipfi": __version__,
        "protocol": f"{PROTOCOL} {VERSION}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "msgpack": package_version("msgpack"),
        "uvloop": package_version("uvloop"),
        "runtime_dir": str(runtime_dir()),
        RUNDIR_ENV: os.environ.get(RUNDIR_ENV),
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR"),
    }


def run_envinfo(args: argparse.Namespace, out: Output) -> int:
    out.record(environment())
    return OK


def _features() -> str:
    return ", ".join(f"{extra}={package_version(module) is not None}" for extra, (module, _) in EXTRAS.items())


def run_version(args: argparse.Namespace, out: Output) -> int:
    """As ipcprims: ``ipfi VERSION``, or with ``--extended`` one ``key: value`` line each; a JSON
    record only when ``--format json`` is asked for."""
    details: dict[str, Any] = {"name": "ipfi", "version": __version__}
    if args.extended:
        details |= {
            "protocol": f"{PROTOCOL} {VERSION}",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "target_os": sys.platform,
            "target_arch": platform.machine(),
            "features": ", ".join(
                f"{extra}={package_version(module) is not None}" for extra, (module, _) in EXTRAS.items()
            ),
        }
    if args.format == "json":
        out.record(details)
    elif not args.extended:
        print(f"ipfi {__version__}")
    else:
        for key, value in details.items():
            print(f"{key}: {value}")
    return OK
