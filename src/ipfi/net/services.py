"""Named services: ``service:NAME`` is a socket in a private, per-user runtime directory.

The directory is ``$IPFI_RUNDIR``, else ``$XDG_RUNTIME_DIR/ipfi``, else ``ipfi-UID`` under the temp dir.
A running service holds an exclusive lock on ``NAME.lock`` beside its ``NAME.sock``: a second server
with the same name fails at once, and a socket whose lock nobody holds is stale and is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

from ..core.errors import AddressError, AddressInUse, AddressTooLong, NotOnThisPlatform

RUNDIR_ENV = "IPFI_RUNDIR"
SOCKET_SUFFIX = ".sock"
LOCK_SUFFIX = ".lock"
#: Linux's ``sun_path`` holds 108 bytes, the terminating NUL included.
SUN_PATH_MAX = 107
_NAME_FORM = re.compile(r"[A-Za-z0-9_@][A-Za-z0-9_@.+-]*\Z")


def runtime_dir() -> Path:
    """Where named services live (not created here; see :func:`prepare_runtime_dir`)."""
    explicit = os.environ.get(RUNDIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "ipfi"
    return Path(tempfile.gettempdir()) / f"ipfi-{os.getuid()}"


def validate_name(name: str, directory: Path | None = None) -> str:
    """Return ``name`` if it can name a service; raise :class:`AddressError` saying why not.

    >>> validate_name("calc")
    'calc'
    """
    check_name_form(name)
    path = socket_path(name, directory, validate=False)
    room = SUN_PATH_MAX - len(os.fsencode(path)) + len(name.encode())
    if len(name.encode()) > room:
        raise AddressTooLong(
            f"service name {name!r} is too long: {path} exceeds the {SUN_PATH_MAX}-byte socket path limit"
            f" (at most {max(room, 0)} bytes here; a shorter ${RUNDIR_ENV} leaves more)"
        )
    return name


def check_name_form(name: str) -> str:
    """Return ``name`` if its characters can name a service (no look at the file system or the
    environment: the length is checked against the runtime directory by :func:`validate_name`)."""
    if not name:
        raise AddressError("a service name cannot be empty")
    if "/" in name or "\0" in name:
        raise AddressError(f"service name {name!r} cannot contain '/' or NUL")
    if ".." in name or not _NAME_FORM.match(name):
        raise AddressError(f"service name {name!r}: use letters, digits and _@.+- (not first: . + -), and no '..'")
    return name


def socket_path(name: str, directory: Path | None = None, *, validate: bool = True) -> str:
    """The socket of service ``name``."""
    if validate:
        validate_name(name, directory)
    return str((directory or runtime_dir()) / f"{name}{SOCKET_SUFFIX}")


def prepare_runtime_dir(directory: Path | None = None, *, group: bool = False) -> Path:
    """Create the runtime directory 0700 (0710 with ``group``) or check that an existing one is safe.

    Safe means: a real directory (not a symlink), owned by this user, writable by nobody else.
    Anything else could let another user plant or intercept sockets, so it is refused.
    """
    directory = directory or runtime_dir()
    mode = 0o710 if group else 0o700
    try:
        directory.mkdir(mode=mode, parents=True)
        os.chmod(directory, mode)  # mkdir's mode passes through the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise AddressError(f"cannot create the runtime directory {directory}: {exc.strerror}") from exc
    problem = runtime_dir_problem(directory)
    if problem:
        raise AddressError(problem)
    if group and not os.lstat(directory).st_mode & stat.S_IXGRP:
        os.chmod(directory, stat.S_IMODE(os.lstat(directory).st_mode) | stat.S_IXGRP)
    return directory


def runtime_dir_problem(directory: Path) -> str | None:
    """Why ``directory`` is unsafe as a runtime directory, or ``None`` if it is fine (or absent)."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return f"runtime directory {directory} is not a directory (a symlink or file is there)"
    if info.st_uid != os.getuid():
        return f"runtime directory {directory} belongs to uid {info.st_uid}, not to this user ({os.getuid()})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"runtime directory {directory} is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


class ServiceLock:
    """The exclusive lock a running service holds; also removes the service's files at release."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.socket_path = socket_path(name, directory)
        self.lock_path = str(directory / f"{name}{LOCK_SUFFIX}")
        self._fd = -1

    def acquire(self) -> ServiceLock:
        """Take the lock; remove a stale socket. Raises :class:`AddressError` if the service runs."""
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _flock(fd, exclusive=True)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise AddressInUse(
                    f"service {self.name!r} is already running" + (f" (pid {holder})" if holder else "")
                ) from None
            # A releasing server unlinks the file before unlocking it: if we locked such an orphan,
            # the name is not ours yet; try again on the file now at the path.
            try:
                same_file = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # nobody holds the lock, so nobody serves on it
        return self

    def release(self) -> None:
        """Remove the socket and the lock file, then unlock."""
        if self._fd < 0:
            return
        for path in (self.socket_path, self.lock_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(self._fd)
        self._fd = -1


def _flock(fd: int, *, exclusive: bool) -> None:
    """Take ``fd``'s lock without waiting (``BlockingIOError`` when another holds it); fcntl is
    imported here, where it is needed: ``import ipfi`` works where it does not exist."""
    try:
        import fcntl
    except ImportError:
        raise NotOnThisPlatform(f"named services need fcntl's locks, which {sys.platform} lacks") from None
    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def not_running(address: object) -> ConnectionRefusedError:
    """The error for connecting to a Unix socket path where no socket exists."""
    return ConnectionRefusedError(errno.ECONNREFUSED, f"nothing is listening at {address} (no socket file)")


def list_services(directory: Path | None = None) -> list[tuple[str, int | None]]:
    """The services with a socket in ``directory``: ``(name, pid)``, ``pid`` ``None`` for a stale one."""
    directory = directory or runtime_dir()
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if entry.suffix != SOCKET_SUFFIX or not stat.S_ISSOCK(os.lstat(entry).st_mode):
            continue
        found.append((entry.stem, _lock_holder(directory / f"{entry.stem}{LOCK_SUFFIX}")))
    return found


def _lock_holder(lock_path: Path) -> int | None:
    """The pid of the process holding ``lock_path``, or ``None`` if nobody holds it."""
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        _flock(fd, exclusive=False)
    except BlockingIOError:
        return _read_pid(fd) or 0
    finally:
        os.close(fd)
    return None
