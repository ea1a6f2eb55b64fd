"""The drain process: copies committed ring-buffer extents to the spool, and nothing else.

The decoder runs at idle priority so that a capture never competes with the workload it
observes; left alone it would let the kernel's ring buffer overflow during any burst. This
process is the part that must keep up: at normal priority it only moves bytes (no
decoding, no allocation per record), from the ring (inherited map fd) to the ring spool
(agent/ring_spool.py).

What it cannot spool stays in the ring: it peeks an extent and releases it to the kernel
only once the spool has accepted it. A full spool (the decoder is behind) therefore ends
as the kernel's own drop counters when the ring fills, not as silent loss here.

    python -m agent.spool_drain --ring-fd FD --ring-size BYTES --dir DIR --max-bytes N
        [--committed-fd FD] [--poll-interval 0.005] [--parent PID] [--remove-dir-if-orphaned]
        [--ready-fd FD]

With --committed-fd (the programs' count of committed ring bytes, bpf/common.h) an
extent is copied without a Python step per record whenever every record in the ring is
committed, which is most of the time; otherwise the record headers are walked.

Stop with SIGTERM or SIGINT: one last drain, then one JSON line of counters on stdout
({"bytes", "extents", "unwalked", "refusals"}) and exit status 0. When the parent is gone (at start,
or later: PR_SET_PDEATHSIG sends SIGTERM, and getppid() is checked every second) it exits
with status 1 without that last drain or the JSON line, after deleting --dir if given
--remove-dir-if-orphaned. A bad argument or ring fd: one line on stderr, exit status 2.

It is not a command a user runs but the entry point of the child process that
agent/deferred.py starts (``command()`` builds that argv): its arguments are an internal
interface between two processes of the agent, parsed without argparse by
agent/spool_drain_argv.py (flags a user gives belong to the command line, cli/).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from agent.ring_spool import RingSpoolWriter
from agent.ringbuf import CommittedCount, RingBufferReader
from agent.spool_drain_argv import DrainUsageError, parse_args

PR_SET_PDEATHSIG = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_F_MMAPABLE = 1 << 10
BPF_MAP_TYPE_RINGBUF = 27
EXIT_PARENT_GONE = 1
EXIT_USAGE = 2

_PREFIX = "nodetap: spool drain"


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def command(
    ring_fd: int, ring_size: int, directory: Path, max_bytes: int, *options: str
) -> list[str]:
    """The command line that runs this module as a drain process (options: further flags,
    such as --poll-interval, --parent, --remove-dir-if-orphaned)."""
    return [
        sys.executable,
        "-m",
        "agent.spool_drain",
        "--ring-fd",
        str(ring_fd),
        "--ring-size",
        str(ring_size),
        "--dir",
        str(directory),
        "--max-bytes",
        str(max_bytes),
        *options,
    ]


def orphaned(parent: int | None) -> bool:
    """Whether the parent is gone. Without --parent a parent pid of 1 means orphaned; a
    parent that really is pid 1 (an agent as a container's init) must pass --parent 1."""
    ppid = os.getppid()
    return ppid != parent if parent is not None else ppid == 1


def parent_gone(parent: int | None) -> bool:
    """Whether the parent is gone or dying. A SIGKILLed parent's threads exit one by one: if
    the thread that started us exits first, we are handed to another of its threads, so
    getppid() still names the parent when PR_SET_PDEATHSIG's SIGTERM arrives; its main
    thread is then a zombie in /proc."""
    if orphaned(parent):
        return True
    if parent is None:
        return False
    try:
        with open(f"/proc/{parent}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X", "x")


def _parent_gone_at_stop(parent: int | None) -> bool:
    """parent_gone(), looked at for up to 50 ms: a SIGTERM from PR_SET_PDEATHSIG can come
    a moment before the dying parent shows as a zombie. A parent that asked us to stop
    waits for us, so a live one costs this wait once."""
    for _ in range(5):
        if parent_gone(parent):
            return True
        time.sleep(0.01)
    return False


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent dies (strictly: the parent's thread
    that started us)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        print(f"{_PREFIX}: prctl(PR_SET_PDEATHSIG): {os.strerror(err)}", file=sys.stderr)


def _map_info(fd: int, map_type: int, what: str) -> dict[str, str]:
    """The fdinfo of BPF map fd; OSError or ValueError unless it is one of map_type."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        raise OSError(f"fd {fd} is not open") from None
    if target != "anon_inode:bpf-map":
        raise ValueError(f"fd {fd} is {target}, not a BPF map")
    info: dict[str, str] = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    if info.get("map_type") != str(map_type):
        raise ValueError(f"fd {fd} is a BPF map of type {info.get('map_type')}, not {what}")
    return info


def check_ring_fd(fd: int, size: int) -> None:
    """Raise OSError or ValueError unless fd is a BPF ring buffer of size data bytes (it
    is mmapped read-write: anything else would be read as garbage, or written to)."""
    info = _map_info(fd, BPF_MAP_TYPE_RINGBUF, "a ringbuf")
    if info.get("max_entries") != str(size):
        raise ValueError(f"fd {fd} is a ring buffer of {info.get('max_entries')} bytes, not {size}")


def check_committed_fd(fd: int) -> None:
    """Raise OSError or ValueError unless fd is an array map this process can map (the
    count of committed ring bytes)."""
    info = _map_info(fd, BPF_MAP_TYPE_ARRAY, "an array")
    if not int(info.get("map_flags", "0"), 16) & BPF_F_MMAPABLE:
        raise ValueError(f"fd {fd} is an array map that cannot be mapped into memory")


def _size(n: int) -> str:
    if n < 1 << 20:
        return f"{n} bytes"
    x = n / (1 << 20)
    return f"{x:.0f} MiB" if x >= 10 else f"{x:.3g} MiB"


def drain(
    reader: RingBufferReader,
    writer: RingSpoolWriter,
    stop: _Stop,
    poll_interval: float,
    parent: int | None = None,
) -> bool:
    """Move extents from the ring to the spool until stop is requested, then once more
    until nothing is committed (or the spool refuses). Return False, without that last
    drain, when the parent is gone."""
    # an extent of at most half the bound (segments are at most a quarter): once the
    # reader has caught up, the next extent always fits
    cap = max(8, min(64 << 20, writer.max_bytes // 2))
    refused = False
    next_check = time.monotonic() + 1.0
    while not stop.requested:
        if time.monotonic() >= next_check:  # in case SIGTERM from PDEATHSIG was missed
            next_check = time.monotonic() + 1.0
            if parent_gone(parent):
                break
        got = reader.peek_extent(cap)
        if got is None:
            time.sleep(poll_interval)
            continue
        blob, end = got
        if writer.append(blob):
            reader.release(end)
            refused = False
            if len(blob) < cap // 2:
                time.sleep(poll_interval)  # caught up: let records gather
            continue
        if not refused:
            refused = True
            _warn_refused(writer)
        time.sleep(poll_interval)
    if _parent_gone_at_stop(parent):
        return False
    while (got := reader.peek_extent(cap)) is not None and writer.append(got[0]):
        reader.release(got[1])
    return True


def _warn_refused(writer: RingSpoolWriter) -> None:
    err = writer.last_error
    if err is not None and writer.write_errors and err.errno is not None:
        why = f"spool write failed ({os.strerror(err.errno)})"
        writer.last_error = None
    else:
        why = f"spool full ({_size(writer.max_bytes)}): the decoder is behind"
    print(f"nodetap: {why}; records wait in the ring buffer", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except DrainUsageError as e:
        print(f"{_PREFIX}: {e}", file=sys.stderr)
        return EXIT_USAGE
    os.nice(args.nice)
    _die_with_parent()
    if orphaned(args.parent):
        print(f"{_PREFIX}: the parent process is gone", file=sys.stderr)
        if args.remove_dir_if_orphaned:
            shutil.rmtree(args.dir, ignore_errors=True)
        return EXIT_PARENT_GONE
    committed = None
    if args.committed_fd is not None:
        try:
            check_committed_fd(args.committed_fd)
            committed = CommittedCount(args.committed_fd)
        except (OSError, ValueError) as e:
            print(f"{_PREFIX}: --committed-fd {args.committed_fd}: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        check_ring_fd(args.ring_fd, args.ring_size)
        reader = RingBufferReader(args.ring_fd, args.ring_size, committed)
    except (OSError, ValueError) as e:
        print(f"{_PREFIX}: --ring-fd {args.ring_fd}: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        writer = RingSpoolWriter(args.dir, args.max_bytes)
    except OSError as e:
        reader.close()
        print(f"{_PREFIX}: --dir {args.dir}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    if args.ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(args.ready_fd, b"ready\n")
            os.close(args.ready_fd)
    try:
        parent_alive = drain(reader, writer, stop, args.poll_interval, args.parent)
    finally:
        writer.close()
        reader.close()
        if committed is not None:
            committed.close()
    if not parent_alive:
        if args.remove_dir_if_orphaned:
            shutil.rmtree(args.dir, ignore_errors=True)
        return EXIT_PARENT_GONE
    counters = {
        "bytes": writer.bytes_written,
        "extents": writer.extents,
        "unwalked": reader.unwalked,
        "refusals": writer.refusals,
    }
    try:
        print(json.dumps(counters), flush=True)
    except OSError:  # nobody reads our stdout any more: keep the exit quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
