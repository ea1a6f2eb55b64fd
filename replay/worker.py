"""One replay process: reads its share of the capture, runs virtual users on an asyncio loop,
and returns a JSON-able result (counters, histograms, per-second buckets, mismatch samples).

Shared with the coordinating process: ``budget`` (new connections it may still open before the
conntrack table reaches the threshold), ``pressure`` (prefer reusing connections), ``stop``,
``progress`` (sent, errors, mismatches per worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import queue
import signal
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from netsetup.netns import enter_netns
from nodetap.errors import NodetapError, PeerError
from nodetap.grpc_json import Renderer
from replay.capture_file import item_from_line, iter_items
from replay.client import Pool, classify, tls_context, tls_failure
from replay.compare import DEFAULT_IGNORE_HEADERS, Comparer
from replay.h2_client import H2Target
from replay.model import Item, UnsafeRequest, encode_request
from replay.plan import Plan
from replay.stats import Histogram, bucket, peak_rss_kb

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
UNLIMITED = 1 << 62
CACHE_CAPTURE_BYTES = 32 << 20  # captures up to this size are parsed once per run


@dataclass
class Shared:
    """Objects shared between the coordinator and its workers (multiprocessing primitives)."""

    budget: Any  # mp.Value('q')
    pressure: Any  # mp.Value('b')
    stop: Any  # mp.Value('b'): set to 1 to stop (a plain flag: cheap to read per request)
    go: Any  # mp.Event
    start_at: Any  # mp.Value('d'), time.monotonic() of t=0
    progress: Any  # mp.Array('q', 3 * workers)


@dataclass
class Result:
    sent: int = 0
    responses: int = 0
    compared: int = 0
    mismatched: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_secs: Counter[str] = field(default_factory=Counter)  # "sec:kind"
    secs: Counter[int] = field(default_factory=Counter)  # requests sent per second
    statuses: Counter[int] = field(default_factory=Counter)
    mismatch_kinds: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    latency: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)
    latency_secs: dict[int, Histogram] = field(default_factory=dict)
    pool: dict[str, Any] = field(default_factory=dict)
    maxrss_kb: int = 0
    cpu_s: float = 0.0
    first_send: float = 0.0
    last_send: float = 0.0
    unsent: int = 0
    unsafe: Counter[str] = field(default_factory=Counter)  # not sent: why (replay/model.py)

    def to_wire(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "responses": self.responses,
            "compared": self.compared,
            "mismatched": self.mismatched,
            "errors": dict(self.errors),
            "error_secs": dict(self.error_secs),
            "secs": {str(k): v for k, v in self.secs.items()},
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "mismatch_kinds": dict(self.mismatch_kinds),
            "samples": self.samples,
            "latency": self.latency.to_wire(),
            "lag": self.lag.to_wire(),
            "latency_secs": {str(k): h.to_wire() for k, h in self.latency_secs.items()},
            "pool": self.pool,
            "maxrss_kb": self.maxrss_kb,
            "cpu_s": self.cpu_s,
            "first_send": self.first_send,
            "last_send": self.last_send,
            "unsent": self.unsent,
            "unsafe": dict(self.unsafe),
        }


def _mismatch_kind(diff: str) -> str:
    return diff.split(":", 1)[0].split(" ", 1)[0]


class _Runner:
    def __init__(
        self, plan: Plan, share: int, shares: int, shared: Shared, feed: Any = None
    ) -> None:
        self.plan, self.share, self.shares, self.sh = plan, share, shares, shared
        self.feed = feed  # a streamed input's queue of (index, line); None: read the file
        self.res = Result()
        self.cmp = Comparer(
            ignore_headers=DEFAULT_IGNORE_HEADERS | {h.lower() for h in plan.ignore_headers},
            ignore_json_paths=list(plan.ignore_json_paths),
            compare_headers=plan.compare_headers,
            render=Renderer(plan.proto_descriptors) if plan.proto_descriptors else None,
        )
        self.pool = Pool(
            plan.host,
            plan.port,
            plan.timeout,
            plan.keep_body_limit,
            self._gate,
            tls_context(plan.target_ca, "http/1.1") if plan.tls else None,
        )
        self.h2 = H2Target(
            plan.host, plan.port, plan.tls, plan.target_ca, plan.timeout, plan.keep_body_limit
        )
        self.start = 0.0
        self.deadline = float("inf")
        self.ts0 = plan.ts0_ns
        self.count = plan.count_hint
        self.span = plan.span_hint_s
        self.source = self._schedule()
        self.prog = share * 3
        self.kept_open = 0

    async def _gate(self) -> float:
        budget = self.sh.budget
        t0 = 0.0
        while True:
            with budget.get_lock():
                if budget.value > 0:
                    budget.value -= 1
                    break
            if not t0:
                t0 = time.monotonic()
            if self.sh.stop.value:
                break
            await asyncio.sleep(0.005)
        return time.monotonic() - t0 if t0 else 0.0

    def _streamed(self) -> Iterator[Item | None]:
        """The items of a streamed input as they come; None when none is waiting."""
        p = self.plan
        while True:
            try:
                got = self.feed.get_nowait()
            except queue.Empty:
                yield None
                continue
            if got is None:
                return
            index, line = got
            item = item_from_line(
                line, index, f"stdin pair {index + 1}", p.keep_body_limit, p.summary_only
            )
            if item is not None:
                yield item

    def _items(self) -> Iterator[Iterator[Item | None]]:
        """The items of each pass: read from the file, or (for a small capture replayed more
        than once) kept from the first pass with their encoded requests."""
        p = self.plan
        if self.feed is not None:
            yield self._streamed()
            return
        loops = p.loops or 1_000_000_000
        small = os.path.getsize(p.capture) <= CACHE_CAPTURE_BYTES
        cached: list[Item] | None = None
        for n in range(loops):
            if cached is not None:
                yield iter(cached)
                continue
            it = iter_items(p.capture, self.share, self.shares, p.keep_body_limit, p.summary_only)
            if loops > 1 and small and n == 0:
                cached = list(it)
                yield iter(cached)
            else:
                yield it

    def _schedule(self) -> Iterator[tuple[Item | None, float]]:
        """(item, due offset in seconds from the start), every pass over the capture;
        (None, 0) while a streamed input has nothing waiting."""
        p = self.plan
        pass_len = self.span / p.speed + (1.0 / p.rate if p.rate else 0.01)
        for n, items in enumerate(self._items()):
            empty = True
            for item in items:
                empty = False
                if item is None:
                    yield None, 0.0
                elif p.rate:
                    due = (n * self.count + item.index) / p.rate
                elif p.timing == "original" and item.ts_ns and self.ts0:
                    due = n * pass_len + (item.ts_ns - self.ts0) / 1e9 / p.speed
                else:
                    due = 0.0
                yield item, due
            if empty:
                # This process's share holds nothing to send (fewer pairs than processes):
                # more passes would spin without ever reaching the deadline.
                return

    async def vuser(self) -> None:
        p, res, sh = self.plan, self.res, self.sh
        rules = p.rules
        pool = self.pool
        progress = sh.progress
        keep_mode = p.connection
        timed = bool(p.rate) or p.timing == "original"
        stop = sh.stop
        while not stop.value:
            try:
                item, due = next(self.source)
            except StopIteration:
                return
            if item is None:
                await asyncio.sleep(0.005)
                continue
            now = time.monotonic() - self.start
            if due > now:
                if self.start + due >= self.deadline:
                    res.unsent += 1
                    return
                await asyncio.sleep(due - now)
                now = time.monotonic() - self.start
            if self.start + now >= self.deadline:
                res.unsent += 1
                return
            if timed:
                res.lag.add(max(0.0, now - due))
            wire = item.wire
            if wire is None:  # first time this item is sent: rewrite it once
                rules.apply(item)
                wire = item.wire = {}
            if keep_mode == "keepalive":
                reuse = True
            elif keep_mode == "close":
                reuse = False
            elif not item.recorded_close:
                reuse = True
            else:
                # Under conntrack pressure, keep recorded-close connections open for reuse.
                reuse = bool(sh.pressure.value)
                self.kept_open += reuse
            data = wire.get(reuse) if item.proto == "http1" else b""
            if data is None:
                host = rules.host_for(_host_of(item), p.authority)
                try:
                    data = wire[reuse] = encode_request(item, host, reuse)
                except UnsafeRequest as e:  # never sent: it would smuggle bytes into the target
                    res.unsafe[e.reason] += 1
                    if len(res.samples) < p.max_diffs and res.unsafe[e.reason] <= 3:
                        res.samples.append(
                            {
                                "index": item.index,
                                "id": item.id,
                                "method": item.method[:64],
                                "target": item.target[:256],
                                "error": f"not sent: {e}",
                            }
                        )
                    continue
            sec = int(now)
            res.sent += 1
            res.secs[sec] += 1
            progress[self.prog] += 1
            if not res.first_send:
                res.first_send = now
            res.last_send = now
            t0 = time.perf_counter()
            conn = None
            held = 0.0
            try:
                if item.proto == "http1":
                    try:
                        conn, held = await pool.acquire()
                    except ssl.SSLError as e:  # not TLS, or not trusted: every request would fail
                        raise PeerError(tls_failure(p.target, e, p.target_ca)) from None
                    actual = await conn.request(data, item.method == "HEAD", p.timeout)
                else:
                    h2host = rules.host_for(item.authority, self.h2.authority)
                    actual = await self.h2.send(item, h2host)
            except PeerError:
                raise
            except Exception as e:  # every failure is counted by kind
                kind = classify(e)
                res.errors[kind] += 1
                res.error_secs[f"{sec}:{kind}"] += 1
                progress[self.prog + 1] += 1
                if conn is not None:
                    conn.close()
                if len(res.samples) < p.max_diffs and res.errors[kind] <= 3:
                    res.samples.append(
                        {
                            "index": item.index,
                            "id": item.id,
                            "method": item.method,
                            "target": item.target,
                            "error": f"{kind}: {e}",
                        }
                    )
                continue
            # The time the throttle held the request back is the agent's, not the server's.
            lat = time.perf_counter() - t0 - held
            if conn is not None:
                pool.release(conn, reuse)
            res.responses += 1
            b = bucket(lat)
            res.latency.add_in(b, lat)
            h = res.latency_secs.get(sec)
            if h is None:
                h = res.latency_secs[sec] = Histogram()
            h.add_in(b, lat)
            res.statuses[actual.status] += 1
            if item.expected is not None:
                res.compared += 1
                diffs = self.cmp.compare(item.expected, actual)
                if diffs:
                    res.mismatched += 1
                    progress[self.prog + 2] += 1
                    for d in diffs:
                        res.mismatch_kinds[_mismatch_kind(d)] += 1
                    if len(res.samples) < p.max_diffs:
                        res.samples.append(
                            {
                                "index": item.index,
                                "id": item.id,
                                "method": item.method,
                                "target": item.target,
                                "diffs": diffs,
                            }
                        )

    async def run(self) -> Result:
        self.start = self.sh.start_at.value
        if self.plan.duration:
            self.deadline = self.start + self.plan.duration
        now = time.monotonic()
        if self.start > now:
            await asyncio.sleep(self.start - now)
        users = max(
            1, self.plan.vusers // self.shares + (self.share < self.plan.vusers % self.shares)
        )
        try:
            await asyncio.gather(*(self.vuser() for _ in range(users)))
        finally:
            self.pool.close()
            await self.h2.close()
        self.res.pool = asdict(self.pool.stats)
        self.res.pool["kept_open_under_pressure"] = self.kept_open
        return self.res


def _host_of(item: Item) -> str | None:
    for n, v in item.headers:
        if n.lower() == "host":
            return v
    return None


def _run_loop(coro: Any) -> Result:
    """Run on uvloop when it is installed (about twice the requests per CPU second)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[no-any-return]
    return uvloop.run(coro)  # type: ignore[no-any-return]


def worker_main(
    plan_json: str, share: int, shares: int, shared: Shared, out: Any, feed: Any = None
) -> None:
    """Entry point of a replay process (multiprocessing target)."""
    plan = Plan.from_json(plan_json)
    try:
        # Die with the coordinator, even when it is killed with SIGKILL.
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if plan.netns:
            enter_netns(plan.netns)
        out.put(("ready", share, None))
        shared.go.wait()
        runner = _Runner(plan, share, shares, shared, feed)
        res = _run_loop(runner.run())
        t = os.times()
        res.cpu_s = t.user + t.system
        res.maxrss_kb = peak_rss_kb()
        out.put(("result", share, res.to_wire()))
    except PeerError as e:  # the target cannot be spoken to as asked (TLS): the run stops
        with contextlib.suppress(Exception):
            out.put(("peer", share, str(e)))
    except NodetapError as e:  # a bad capture line, a namespace gone: one line, no traceback
        with contextlib.suppress(Exception):
            out.put(("input", share, str(e)))
    except BaseException as e:
        with contextlib.suppress(Exception):
            out.put(("error", share, f"{type(e).__name__}: {e}"))
        raise
