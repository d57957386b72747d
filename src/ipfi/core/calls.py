"""The call table: every call in progress on one connection, in either direction, with its state.

Call ids have their caller's parity (odd: the client's, even: the server's), so the calls made here
and the calls served here share one table without clashing. An entry is the call's state:

- :data:`AWAITING_REPLY`: a call made here, its reply due, nothing else to track (the common case);
- :data:`RUNNING`: a call served here, its reply not yet sent, nothing else to track;
- a :class:`Call` record otherwise: a call that streams in either direction or has a deadline.

The two plain states are constants, not records, because every unary call passes through them and
creating a record costs a round trip ~3% (measured with callgrind). A plain entry becomes a record
the moment it needs one (its first stream item).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final


class Plain(enum.Enum):
    """The state of a call with nothing to track but that its reply is due."""

    AWAITING_REPLY = "awaiting reply"
    RUNNING = "running"


AWAITING_REPLY: Final = Plain.AWAITING_REPLY
RUNNING: Final = Plain.RUNNING


class Call:
    """A call that streams or has a deadline.

    ``receive_credit`` counts the stream items the other side may still send on it (``None``: no
    stream comes this way any more), ``send_credit`` those this side may still send (``None``: no
    stream goes out), ``pending`` the items encoded but not yet framed, ``item_check`` what each
    item sent must pass first (a procedure's return hint), if anything, unless it is exactly of
    type ``item_type``.
    """

    __slots__ = (
        "call_id",
        "deadline",
        "item_check",
        "item_type",
        "outgoing",
        "pending",
        "receive_credit",
        "send_credit",
    )

    def __init__(
        self,
        call_id: int,
        *,
        outgoing: bool,
        receive_credit: int | None = None,
        send_credit: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.call_id = call_id
        self.outgoing = outgoing
        self.receive_credit = receive_credit
        self.send_credit = send_credit
        self.pending: list[bytes] = []
        self.deadline = deadline
        self.item_check: Callable[[Any], Any] | None = None
        self.item_type: type | None = None

    @property
    def state(self) -> str:
        """``awaiting reply`` or ``running``, with ``streaming in`` and/or ``streaming out``."""
        states = ["awaiting reply" if self.outgoing else "running"]
        if self.receive_credit is not None:
            states.append("streaming in")
        if self.send_credit is not None:
            states.append("streaming out")
        return ", ".join(states)

    def __repr__(self) -> str:
        return f"<Call {self.call_id}: {self.state}>"


Entry = Plain | Call
