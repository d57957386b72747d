"""Connection options shared by every driver."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Final, TypedDict, Unpack

from .core.codecs import CODECS, DEFAULT_CODECS, CustomType
from .core.errors import HandshakeError, NotOnThisPlatform
from .core.handshake import DEFAULT_SERVER_CHANNELS, normalize_channels
from .core.limits import Limits
from .core.reading import PayloadCheck

#: The wires' protocols (see ``Options.protocol``).
PROTOCOLS: Final = ("ipfi", "ipfi-rust", "libipc")


@dataclass(frozen=True, slots=True)
class Options:
    """How a connection is set up; ``connect``/``serve`` take these as keyword arguments.

    - ``limits``: see :class:`~ipfi.core.limits.Limits`.
    - ``codecs``: acceptable codecs, preferred first (the client's order wins).
    - ``channels``: a client's requested channels, or a server's offered ones (default 1-4).
    - ``auth_token``: sent by a client in its hello; a server hands it to ``authenticate``.
    - ``authenticate``: server only; called with the new peer (its ``auth_token``, ``credentials``,
      ``tls_subject``, ``forwarded_for``, ``get_extra_info("peername")``), returns False to refuse
      it; an ``async def`` one is awaited (the client is answered, and what it sends acted on, once
      it has said yes).
    - ``keepalive``: ping a silent peer every so many seconds; ``keepalive_timeout`` (default 3x)
      after which a silent peer is declared lost.
    - ``rpc``: False makes a plain framed peer (no ipfi extension in the hello).
    - ``binary_views``: a received binary of 64 KiB or more (an argument, a result, or an item of
      a list that is one) arrives as a read-only ``memoryview`` of the received message instead of
      being copied into ``bytes``: large payloads then cost one copy, from the socket. Such a view
      (and any read-only ``memoryview`` of bytes) is also sent without being copied.
    - ``mode``: server only; permissions of a Unix socket it creates (0600: this user only;
      0660 lets the socket's group in too).
    - ``allow_uids``: server only; the user ids allowed to connect, checked with the kernel's
      record of the peer (``SO_PEERCRED``) before any byte is read. Peers whose credentials
      cannot be known (TCP) are then refused too. :class:`NotOnThisPlatform` where the kernel
      keeps no such record (any platform but Linux, for now).
    - ``custom_types``: Python types the msgpack codec carries as extension types (see
      :class:`~ipfi.CustomType`), beyond those built in: ``uuid.UUID``, ``decimal.Decimal`` and
      timezone-aware ``datetime``. Both ends need the same ones. JSON carries JSON's types only.
    - ``env``, ``cwd``, ``stderr``: for an ``exec:`` client, the child's environment (the whole
      of it, as ``subprocess`` takes it; default: this process's), working directory, and where its
      standard error goes (a file, an fd or ``subprocess.DEVNULL``; default: this process's).
      ``ValueError`` with any other address: the other wires start no process.
    - ``schemas``: JSON Schemas for plain frames, per channel (see :class:`~ipfi.Schemas`): a frame
      received on a channel with one is checked; one refused is answered on the ERROR channel and
      never delivered.
    - ``send_tracebacks``: when a procedure served here raises, send its formatted traceback (with
      its causes) to the caller, who finds it in ``RemoteError.remote_traceback`` and printed as the
      error's cause. Off by default: a traceback shows code and paths to whoever calls.
    - ``unix_buffer_size``: bytes of send and of receive buffer asked of the kernel for each Unix
      socket connection (default 1 MiB; ``None`` keeps the system's, often 208 KiB). Large messages
      then cross in fewer, larger reads: a 16 MiB echo ran 15-20% faster here. The kernel caps it
      at ``net.core.wmem_max``/``rmem_max``; it is a ceiling on queued bytes, not memory taken.
      TCP connections keep the kernel's autotuning. On Linux an ``exec:`` child's stdin and stdout
      pipes are given this size too, before it starts (64 KiB otherwise; capped by
      ``fs.pipe-max-size``, 1 MiB): 1 MiB echoes over ``exec:`` ran 35-60% faster here.
    - ``ssl``: for ``tls://`` addresses, the ``ssl.SSLContext`` (as asyncio takes it): a server's
      holds its certificate and key (see :func:`ipfi.tls_server_context`), and asks clients for
      theirs when its ``verify_mode`` is ``CERT_REQUIRED``; a client's default verifies the server's
      certificate and host name against the system's CAs (:func:`ipfi.tls_client_context` for
      others, and for a client certificate).
    - ``tokens``: server only; the tokens a client may present (``auth_token``), compared in
      constant time; any other, or none, is refused with ``AuthenticationFailed``. With
      ``authenticate`` too, both must accept.
    - ``auth_token_file``: client only; a file whose first line is the token (when ``auth_token``
      is not given). Without either, a client sends ``$IPFI_TOKEN`` if it is set.
    - ``protocol``: the wire's protocol: ``"ipfi"`` (ipfi's own, on ipcprims' frames: the default),
      ``"ipfi-rust"`` (IPFI's, to talk to its Rust hosts and modules: procedures are numbered,
      see ``Interface.procedure(index=)``) or ``"libipc"`` (libIPC's plain messages; a
      ``libipc:NAME`` address chooses it). Options of ipfi's handshake (codecs, channels, tokens,
      keepalive, schemas) do not apply to the other two.
    - ``remote_indices``: with ``"ipfi-rust"``, the peer's procedure numbers by name, so that
      ``peer.call("greet", ...)`` calls the number ``{"greet": 0}`` gives it (a number is always
      called as it is).
    """

    limits: Limits = field(default_factory=Limits)
    codecs: tuple[str, ...] = DEFAULT_CODECS
    channels: tuple[int, ...] = DEFAULT_SERVER_CHANNELS
    auth_token: str | None = field(default=None, repr=False)
    authenticate: Callable[[Any], bool | Awaitable[bool]] | None = None
    keepalive: float | None = None
    keepalive_timeout: float | None = None
    rpc: bool = True
    binary_views: bool = False
    mode: int = 0o600
    allow_uids: frozenset[int] | None = None
    unix_buffer_size: int | None = 1 << 20
    send_tracebacks: bool = False
    custom_types: tuple[CustomType, ...] = ()
    schemas: PayloadCheck | None = None
    env: Mapping[str, str] | None = None
    cwd: str | os.PathLike[str] | None = None
    stderr: int | IO[Any] | None = None
    protocol: str = "ipfi"
    remote_indices: Mapping[str, int] | None = None
    ssl: ssl.SSLContext | None = None
    tokens: frozenset[str] | None = field(default=None, repr=False)
    auth_token_file: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        try:
            normalize_channels(list(self.channels), limit=None)
        except HandshakeError as exc:
            raise ValueError(f"channels: {exc}") from None
        if not 0 <= self.mode <= 0o777:
            raise ValueError(f"mode must be permission bits (0..0o777), got {self.mode:o}")
        unknown = [name for name in self.codecs if name not in CODECS]
        if unknown or not self.codecs:
            raise ValueError(f"codecs must name some of {list(CODECS)}, got {list(self.codecs)}")
        if self.allow_uids is not None and not hasattr(socket, "SO_PEERCRED"):
            raise NotOnThisPlatform(
                f"allow_uids needs the kernel's record of a peer (SO_PEERCRED, Linux's), which {sys.platform} has not"
            )
        if "cbor" in self.codecs and "cbor" not in DEFAULT_CODECS:
            raise ValueError("the cbor codec needs cbor2: pip install 'ipfi[cbor]'")
        if self.keepalive is not None and self.keepalive <= 0:
            raise ValueError("keepalive must be positive")
        if self.keepalive_timeout is not None and (self.keepalive is None or self.keepalive_timeout <= self.keepalive):
            raise ValueError("keepalive_timeout needs a keepalive, and must exceed it (a live peer gets a ping first)")
        if self.unix_buffer_size is not None and self.unix_buffer_size <= 0:
            raise ValueError("unix_buffer_size must be positive (or None for the system's)")
        if self.stderr in (subprocess.PIPE, subprocess.STDOUT):
            raise ValueError("stderr: PIPE would fill with nobody reading it, STDOUT would corrupt the frames")

    @property
    def authenticates(self) -> bool:
        """Whether a server refuses some clients (``tokens`` or ``authenticate``)."""
        return self.tokens is not None or self.authenticate is not None

    def client_token(self) -> str | None:
        """The token a client sends: ``auth_token``, else the first line of ``auth_token_file``,
        else ``$IPFI_TOKEN``. Raises ``OSError`` for a file that cannot be read."""
        if self.auth_token is not None:
            return self.auth_token
        if self.auth_token_file is not None:
            with open(self.auth_token_file, encoding="utf-8") as file:
                return file.readline().strip()
        return os.environ.get("IPFI_TOKEN") or None

    @property
    def spawns(self) -> dict[str, Any]:
        """The ``exec:`` child's settings, as ``subprocess`` takes them."""
        return {"env": self.env, "cwd": self.cwd, "stderr": self.stderr}

    def for_scheme(self, scheme: str) -> Options:
        """These options for an address of ``scheme``: a ``libipc:`` address speaks libIPC's wire.
        Raises ``ValueError`` when child settings are given for a wire that starts no child, or
        another protocol for a ``libipc:`` address."""
        if scheme != "exec" and any(value is not None for value in self.spawns.values()):
            raise ValueError(f"env, cwd and stderr are for exec: addresses, not {scheme}:")
        if scheme != "libipc":
            return self
        if self.protocol == "ipfi-rust":
            raise ValueError("a libipc: address speaks libIPC's wire, not protocol='ipfi-rust'")
        return replace(self, protocol="libipc")


class OptionArgs(TypedDict, total=False):
    """The keyword arguments ``connect``, ``serve``, ``pair`` and friends take (both drivers): the
    fields of :class:`Options`, with any iterable for the sequences."""

    limits: Limits
    codecs: Sequence[str]
    channels: Sequence[int]
    auth_token: str | None
    authenticate: Callable[[Any], bool | Awaitable[bool]] | None
    keepalive: float | None
    keepalive_timeout: float | None
    rpc: bool
    binary_views: bool
    mode: int
    allow_uids: Iterable[int] | None
    unix_buffer_size: int | None
    send_tracebacks: bool
    custom_types: Sequence[CustomType]
    schemas: PayloadCheck | None
    env: Mapping[str, str] | None
    cwd: str | os.PathLike[str] | None
    stderr: int | IO[Any] | None
    protocol: str
    remote_indices: Mapping[str, int] | None
    ssl: ssl.SSLContext | None
    tokens: Iterable[str] | None
    auth_token_file: str | os.PathLike[str] | None


def make_options(**given: Unpack[OptionArgs]) -> Options:
    """:class:`Options` from keyword arguments. Raises ``ValueError`` for a value out of range and
    ``TypeError`` for an unknown name."""
    fields: dict[str, Any] = dict(given)
    for name in ("codecs", "channels", "custom_types"):
        if name in fields:
            fields[name] = tuple(fields[name])
    if isinstance(fields.get("tokens"), str):
        raise TypeError("tokens: a collection of tokens, not one string")
    for name in ("allow_uids", "tokens"):
        if fields.get(name) is not None:
            fields[name] = frozenset(fields[name])
    return Options(**fields)
