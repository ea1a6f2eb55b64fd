"""The embedded store: one SQLite database in WAL mode.

Why SQLite: one batch is one transaction (the ack follows the commit, so a stored batch and
its deduplication key appear together or not at all, even after kill -9), the time index
makes range queries and retention cheap, and snapshots are a table of row ids. The
benchmark (bench/forwarder_ingest.py) compares its ingest rate with a store-nothing ceiling.

Layout: ``pairs`` (serialized RRPair plus the indexed columns), ``batches`` (agent_id, seq:
the deduplication keys), ``snapshots`` and ``snapshot_pairs``.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from forwarder.filters import matches, method_of, range_ns, status_code, ts_ns
from nodetap.errors import ConfigError, StorageError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

DB_NAME = "nodetap-forwarder.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs(
    rowid INTEGER PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    pod TEXT NOT NULL,
    node TEXT NOT NULL,
    method TEXT NOT NULL,
    status INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS pairs_ts ON pairs(ts_ns);
CREATE TABLE IF NOT EXISTS batches(
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    PRIMARY KEY(agent_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_received ON batches(received_ns);
CREATE TABLE IF NOT EXISTS snapshots(
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    filter BLOB NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_pairs(
    snapshot_id TEXT NOT NULL,
    pair_rowid INTEGER NOT NULL,
    PRIMARY KEY(snapshot_id, pair_rowid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshot_pairs_pair ON snapshot_pairs(pair_rowid);
"""

_SNAP_HELD = "SELECT 1 FROM snapshot_pairs s WHERE s.pair_rowid = pairs.rowid"
_PAGE_ROWS = 512  # keys read per page of an Export
_PAGE_BYTES = 4 << 20  # RRPair bytes read per query of a page


def _disk_full(e: BaseException) -> bool:
    """True for SQLite's 'database or disk is full' (and an ENOSPC from the file system)."""
    if isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return True
    return "disk is full" in str(e)


def _private(directory: Path, db: Path) -> None:
    """The store is readable by its owner only: the folder 0700, the database 0600 (SQLite
    gives its -wal and -shm files the database's mode). Best effort on a folder this process
    does not own (a volume mounted for it)."""
    for path, mode in ((directory, 0o700), (db, 0o600)):
        try:
            if path == db and not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(path, mode)
        except PermissionError:
            log.debug("cannot make %s private (owner %s)", path, path.stat().st_uid)
        except OSError as e:
            raise StorageError(f"cannot prepare the store {path}: {e.strerror}") from None
    for suffix in ("-wal", "-shm"):
        other = Path(f"{db}{suffix}")
        if other.exists():
            os.chmod(other, 0o600)


class SqliteStore:
    """Store RRPairs in ``<data_dir>/nodetap-forwarder.sqlite``.

    sync="full" fsyncs each batch before its ack (survives power loss); "normal" survives a
    crash of the forwarder process but not of the machine.
    """

    def __init__(self, data_dir: str, sync: str = "full") -> None:
        if sync not in ("full", "normal"):
            raise ConfigError(f"bad sync mode {sync!r}; use full or normal")
        self.dir = Path(data_dir)
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create data dir {data_dir}: {e.strerror}") from None
        self.path = self.dir / DB_NAME
        _private(self.dir, self.path)
        self._sync = sync.upper()
        self._lock = threading.Lock()
        try:
            self._db = self._connect()
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StorageError(f"cannot open the store {self.path}: {e}; move it away") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._sync}")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    # -- writing ----------------------------------------------------------------------------
    def append(self, agent_id: str, seq: int, pairs: Sequence[pb.RRPair]) -> int | None:
        rows = []
        for p in pairs:
            data = p.SerializeToString()
            m = p.meta
            status, method = status_code(p), method_of(p)
            rows.append((ts_ns(p), len(data), m.namespace, m.pod, m.node, method, status, data))
        now = time.time_ns()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT OR IGNORE INTO batches(agent_id, seq, received_ns) VALUES (?, ?, ?)",
                    (agent_id, seq, now),
                )
                if cur.rowcount == 0:
                    db.execute("ROLLBACK")
                    return None
                db.executemany(
                    "INSERT INTO pairs(ts_ns, size, namespace, pod, node, method, status, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.execute("COMMIT")
            except BaseException as e:
                if db.in_transaction:  # SQLite has already rolled back after some errors
                    db.execute("ROLLBACK")
                if _disk_full(e):
                    raise StorageError(
                        f"disk full: cannot store the batch in {self.dir}; free space there or "
                        "lower --retention-size (agents keep their batches and resend)"
                    ) from None
                raise
        return len(rows)

    # -- reading ----------------------------------------------------------------------------
    def _pages(self, sql: str, params: Sequence[object]) -> Iterator[tuple[int, bytes]]:
        """(rowid, data) of the rows sql selects, in (ts_ns, rowid) order, a page at a time.

        Each page is its own short read (keys first, then the data of at most _PAGE_BYTES):
        a client that stops reading an Export holds no read transaction, so SQLite's WAL
        checkpoints go on and the WAL stays small. sql selects (rowid, ts_ns, size) and ends
        with a WHERE clause that the page's key condition extends."""
        db = self._connect()
        try:
            after: tuple[int, int] | None = None
            while True:
                keyset = (
                    "" if after is None else " AND (p.ts_ns > ? OR (p.ts_ns = ? AND p.rowid > ?))"
                )
                more = () if after is None else (after[0], after[0], after[1])
                keys = db.execute(
                    f"{sql}{keyset} ORDER BY p.ts_ns, p.rowid LIMIT {_PAGE_ROWS}", (*params, *more)
                ).fetchall()
                if not keys:
                    return
                after = (keys[-1][1], keys[-1][0])
                start = 0
                while start < len(keys):
                    end, size = start, 0
                    while end < len(keys) and (end == start or size + keys[end][2] <= _PAGE_BYTES):
                        size += keys[end][2]
                        end += 1
                    ids = [k[0] for k in keys[start:end]]
                    marks = ",".join("?" * len(ids))
                    data = dict(
                        db.execute(
                            f"SELECT rowid, data FROM pairs WHERE rowid IN ({marks})", ids
                        ).fetchall()
                    )
                    for rowid in ids:
                        if rowid in data:  # retention may have removed it since
                            yield rowid, data.pop(rowid)
                    start = end
                if len(keys) < _PAGE_ROWS:
                    return
        finally:
            db.close()

    @staticmethod
    def _where(flt: fpb.Filter) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        since, until = range_ns(flt)
        if since is not None:
            clauses.append("p.ts_ns >= ?")
            params.append(since)
        if until is not None:
            clauses.append("p.ts_ns < ?")
            params.append(until)
        for col, values in (("namespace", flt.namespaces), ("pod", flt.pods), ("node", flt.nodes)):
            if values:
                clauses.append(f"p.{col} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if flt.status_min:
            clauses.append("p.status >= ?")
            params.append(flt.status_min)
        if flt.status_max:
            clauses.append("p.status <= ?")
            params.append(flt.status_max)
        return (" AND ".join(clauses) or "1"), params

    def _select(
        self, flt: fpb.Filter, limit: int, snapshot_id: str | None = None
    ) -> Iterator[tuple[int, pb.RRPair]]:
        where, params = self._where(flt)
        if snapshot_id is None:
            sql = f"SELECT p.rowid, p.ts_ns, p.size FROM pairs p WHERE {where}"
        else:
            sql = (
                "SELECT p.rowid, p.ts_ns, p.size FROM snapshot_pairs s"
                " JOIN pairs p ON p.rowid = s.pair_rowid"
                f" WHERE s.snapshot_id = ? AND {where}"
            )
            params = [snapshot_id, *params]
        n = 0
        for rowid, data in self._pages(sql, params):
            pair = pb.RRPair.FromString(data)
            if matches(flt, pair, check_time=False):
                yield rowid, pair
                n += 1
                if limit and n >= limit:
                    return

    def query(self, flt: fpb.Filter, limit: int = 0) -> Iterator[pb.RRPair]:
        for _, pair in self._select(flt, limit):
            yield pair

    # -- snapshots --------------------------------------------------------------------------
    def _snapshot(self, row: tuple[str, str, int, bytes, int]) -> fpb.Snapshot:
        sid, name, created_ns, flt, count = row
        snap = fpb.Snapshot(id=sid, name=name, count=count)
        snap.filter.ParseFromString(flt)
        snap.created.FromNanoseconds(created_ns)
        return snap

    def create_snapshot(self, name: str, flt: fpb.Filter) -> fpb.Snapshot:
        sid = "snap-" + secrets.token_hex(6)
        created = time.time_ns()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                count = 0
                batch: list[tuple[str, int]] = []
                for rowid, _ in self._select(flt, 0):
                    batch.append((sid, rowid))
                    count += 1
                    if len(batch) >= 1000:
                        db.executemany("INSERT INTO snapshot_pairs VALUES (?, ?)", batch)
                        batch.clear()
                if batch:
                    db.executemany("INSERT INTO snapshot_pairs VALUES (?, ?)", batch)
                db.execute(
                    "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)",
                    (sid, name, created, flt.SerializeToString(), count),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self._snapshot((sid, name, created, flt.SerializeToString(), count))

    def list_snapshots(self) -> list[fpb.Snapshot]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, created_ns, filter, count FROM snapshots ORDER BY created_ns DESC"
            ).fetchall()
        return [self._snapshot(r) for r in rows]

    def get_snapshot(self, snapshot_id: str) -> fpb.Snapshot | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, created_ns, filter, count FROM snapshots WHERE id = ?",
                (snapshot_id,),
            ).fetchone()
        return self._snapshot(row) if row else None

    def snapshot_pairs(
        self, snapshot_id: str, flt: fpb.Filter, limit: int = 0
    ) -> Iterator[pb.RRPair]:
        for _, pair in self._select(flt, limit, snapshot_id):
            yield pair

    def delete_snapshot(self, snapshot_id: str) -> bool:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
                db.execute("DELETE FROM snapshot_pairs WHERE snapshot_id = ?", (snapshot_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return cur.rowcount > 0

    # -- retention --------------------------------------------------------------------------
    def enforce_retention(
        self, max_age_s: float | None, max_bytes: int | None, now_ns: int | None = None
    ) -> int:
        now_ns = time.time_ns() if now_ns is None else now_ns
        deleted = 0
        with self._lock:
            db = self._db
            if max_age_s is not None:
                cutoff = now_ns - int(max_age_s * 1e9)
                cur = db.execute(
                    f"DELETE FROM pairs WHERE ts_ns < ? AND NOT EXISTS ({_SNAP_HELD})", (cutoff,)
                )
                deleted += cur.rowcount
                # Deduplication keys live as long as the data they protect.
                db.execute("DELETE FROM batches WHERE received_ns < ?", (cutoff,))
            if max_bytes is not None:
                total = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM pairs").fetchone()[0])
                while total > max_bytes:
                    rows = db.execute(
                        f"SELECT rowid, size FROM pairs WHERE NOT EXISTS ({_SNAP_HELD})"
                        " ORDER BY ts_ns, rowid LIMIT 500"
                    ).fetchall()
                    if not rows:
                        break
                    victims = []
                    for rowid, size in rows:
                        if total <= max_bytes:
                            break
                        victims.append((rowid,))
                        total -= size
                    db.executemany("DELETE FROM pairs WHERE rowid = ?", victims)
                    deleted += len(victims)
            if deleted:
                db.execute("PRAGMA incremental_vacuum")
        if deleted:
            log.info("retention removed %d RRPairs", deleted)
        return deleted

    def stats(self) -> fpb.StatsResponse:
        with self._lock:
            db = self._db
            pairs, lo, hi = db.execute(
                "SELECT COUNT(*), MIN(ts_ns), MAX(ts_ns) FROM pairs"
            ).fetchone()
            batches = db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            snaps = db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
        size = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p)
        )
        resp = fpb.StatsResponse(pairs=pairs, batches=batches, bytes=size, snapshots=snaps)
        if lo is not None:
            resp.oldest.FromNanoseconds(lo)
            resp.newest.FromNanoseconds(hi)
        return resp

    def close(self) -> None:
        with self._lock:
            self._db.close()
