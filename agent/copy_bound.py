"""How many bytes of one syscall the programs copy: --max-body, plus room for a head.

A body is stored up to --max-body bytes (longer ones are flagged ``truncated``), so
copying more of one syscall than that, plus the message head in front of it, copies
bytes nobody keeps: the programs stop at this bound (bpf/data_io.c, NT_CFG_COPY_BOUND)
and report the rest as a gap marked NT_GAP_BOUND, which the agent turns into a skip
inside the body (the message is ``truncated``, not ``gap``). Bytes past the bound are a
real loss only when the same syscall also held the start of a further message (a
pipelined head after a body longer than the bound): that message is flagged ``gap``.
"""

from __future__ import annotations

# Room for a message head (and pipelined bytes before the body) in front of a body cut
# at --max-body. Also the least bound: syscalls of up to this many bytes never look it up.
HEAD_ROOM = 64 << 10


def copy_bound(max_body: int) -> int:
    """The bound for NT_CFG_COPY_BOUND, from CaptureConfig.max_body."""
    return max(max_body, 0) + HEAD_ROOM
