"""The record loop's part for bytes the programs did not copy on purpose: sendfile's
(read back from the file, agent/sendfile_bodies.py) and those past the copy bound
(agent/copy_bound.py), which cut a body (``truncated``) instead of making a ``gap``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.sendfile_bodies import FileRanges, SendfileRecord

if TYPE_CHECKING:
    from agent.connections import Connection, ConnectionTracker
    from agent.protocols.http1.types import HttpExchange
    from agent.streams import Chunk


class UncopiedBytes:
    """Mixed into agent.capture.SyscallCapture (which sets ``_files``)."""

    _files: FileRanges

    if TYPE_CHECKING:  # the record loop's side (agent/capture.py, capture_lifecycle.py)
        stats: dict[str, int]
        tracker: ConnectionTracker
        _holey: set[Connection]
        _mono_to_wall: int

        def _feed_chunk(self, conn: Connection, d: int, ch: Chunk) -> None: ...
        def _flush_other(self, conn: Connection, d: int) -> None: ...
        def _emit(self, conn: Connection, ex: HttpExchange) -> None: ...

    def _on_sendfile(self, rec: memoryview) -> None:
        """Bytes sendfile() moved: read back from the file (agent/sendfile_bodies.py), or
        a gap when they cannot be."""
        r = SendfileRecord.unpack(rec)
        conn = self.tracker.get(r.conn_id)
        if conn is None:
            return
        conn.last_ns = r.ts_ns
        stream, d, ts = conn.streams[r.dir], r.dir, r.ts_ns
        if conn in self._holey:
            self._flush_other(conn, d)
        data = self._files.read(r, ts + self._mono_to_wall)
        if data is None:
            self.stats["drop_sendfile_unreadable_bytes"] += r.length
            chunks, rest = stream.push_gap(r.offset, r.length, ts), 0
        else:
            self.stats["sendfile_read_bytes"] += len(data)
            chunks, rest = stream.push(r.offset, data, ts), r.length - len(data)
        for ch in chunks:
            self._feed_chunk(conn, d, ch)
        at = r.offset + r.length - rest  # the file was shorter than the range: the rest
        if rest and not self._skip_in_order(conn, d, at, rest, ts):
            for ch in stream.push_gap(at, rest, ts):
                self._feed_chunk(conn, d, ch)
        if stream.waiting:
            self._holey.add(conn)

    def _skip_in_order(self, conn: Connection, d: int, off: int, size: int, ts: int) -> bool:
        """Bytes not copied on purpose, past the copy bound (agent/copy_bound.py): inside a
        body they only cut it (truncated). False when the stream is not at `off` (the
        caller declares them a gap)."""
        stream = conn.streams[d]
        if off != stream.next_offset or stream.waiting or conn.dead:
            return False
        stream.next_offset += size
        st = conn.stitcher
        wall = ts + self._mono_to_wall
        if d == conn.req_dir:
            exchanges = st.request_skip(size, wall)
        else:
            exchanges = st.response_skip(size, wall)
        for ex in exchanges:
            self._emit(conn, ex)
        return True
