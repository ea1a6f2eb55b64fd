/* common.h: maps and helpers shared by nodetap's syscall-capture programs.
 *
 * Everything here reads only tracepoint arguments, the syscall's saved user registers
 * and user memory whose layout is the stable user ABI (registers of the syscall calling
 * convention, sockaddr, iovec, msghdr): no internal kernel struct is read (README:
 * "How the syscall capture works"), so the kernel headers BCC compiles against may be of
 * another kernel version without changing what the programs read.
 *
 * The loader defines NT_RINGBUF_PAGES, NT_MAX_CONNS and NT_NCPUS (-D flags).
 */
#include "nodetap.h"

#define NT_AF_INET 2
#define NT_AF_INET6 10
#define NT_EINPROGRESS 115
#define NT_MSG_PEEK 2
#define NT_TCP_ESTABLISHED 1
#define NT_TCP_SYN_SENT 2
#define NT_TCP_SYN_RECV 3
#define NT_TCP_FIN_WAIT1 4
#define NT_TCP_CLOSE_WAIT 8
#define NT_TCP_LAST_ACK 9
#define NT_IPPROTO_TCP 6

/* One ring buffer for control and data records, so that an OPEN is always read before
 * the data of its connection and a CLOSE after it. Records are written without waking
 * the reader (BPF_RB_NO_WAKEUP): the agent drains on a short timer, in bulk, which is
 * what keeps the cost per captured request low (README: "How the syscall capture works").
 *
 * Control records (open, addr, close, gap) must never be lost to a flood of data: a lost
 * OPEN makes every later record of its connection an orphan that, once the connection is
 * gone from /proc (deferred decoding reads records late), cannot be attributed at all, so
 * the whole connection vanishes; a lost CLOSE hides its final offsets. So the last part
 * of the ring is reserved for them: a data record is written only while the ring holds
 * less than NT_RING_DATA_LIMIT bytes (the loader defines it: the ring's size less the
 * reserve; small data records may use half of it, see nt_ring_out_data), control records
 * may fill it to the end. Data refused this way is lost as if
 * the ring were full (NT_DROP_RINGBUF_DATA); its bytes still advance the stream offset,
 * so the agent sees the hole and flags the RRPair it belongs to (`gap`).
 *
 * Reserved room rather than a second ring for control records: with one ring, records
 * are read in the order they were reserved, so the agent needs no reordering between
 * rings (holding data of a connection whose OPEN sits in the other ring, holding a CLOSE
 * until the data before it is read), and the drain process, the spool and the reader
 * stay as they are. The check costs one bpf_ringbuf_query (two loads) per data record.
 * It races with other CPUs (each may pass it before any reserves), so the reserve is at
 * least twice a largest record per CPU (agent/ring_reserve.py).
 *
 * `events` must stay the first map declared: BCC has no method for bpf_ringbuf_query, so
 * NT_EVENTS_MAP names the map as BCC's rewriter does, by its placeholder fd (-1 for the
 * first map declared, BCC 0.26). Were it another map, the verifier would refuse the
 * program (bpf_ringbuf_query accepts only a ring buffer) rather than read another one. */
BPF_RINGBUF_OUTPUT(events, NT_RINGBUF_PAGES);
#define NT_EVENTS_MAP ((void *)bpf_pseudo_fd(1, -1))

/* Tracked connections by (tgid << 32 | fd). A plain hash (not LRU): a full table is
 * counted (NT_DROP_CONN_TABLE_FULL) instead of silently evicting a live connection;
 * the agent removes entries of processes that exited without close(). */
BPF_HASH(conns, u64, struct nt_conn, NT_MAX_CONNS);

/* What a data syscall moved, read at its exit (data_io.c): its conns key, where the bytes
 * are and which way they went. */
struct nt_io_args {
    u64 key;    /* conns key */
    u64 buf;    /* buffer, or iovec array when iovcnt > 0 */
    u32 iovcnt;
    u8 dir;
    u8 _pad;
    u16 sc;
};

/* connect() in flight, by thread; inet_sock_set_state(SYN_SENT) runs in the same task
 * inside connect() and fills in the local address (and proves the socket is TCP). */
struct nt_pending_connect {
    u64 addr; /* user sockaddr */
    u64 sk;   /* the socket, as an opaque id (never dereferenced) */
    u32 fd;
    u8 tcp;
    u8 _pad[3];
};
BPF_HASH(pending_connect, u64, struct nt_pending_connect, 4096);

/* Client sockets between connect() and ESTABLISHED, by the socket's address used as an
 * opaque id (never dereferenced). The source port is assigned after the SYN_SENT state
 * change, so the local address is only known at ESTABLISHED, which for a non-blocking
 * connect() happens after the syscall returned: then an NT_EV_ADDR record follows. */
struct nt_sk_info {
    u64 key;     /* conns key of the connecting fd */
    u64 conn_id; /* set by connect() exit once the connection is tracked */
    u8 laddr[16];
    u16 lport;
    u8 established;
    u8 _pad[5];
};
BPF_TABLE("lru_hash", u64, struct nt_sk_info, sk_conn, 16384);

/* close() in flight of a connection whose addresses the agent may not know (accepted
 * without a sockaddr), by thread: the state change that close() itself causes
 * (ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK) runs in this thread and carries both
 * addresses, which an NT_EV_ADDR record then reports. */
struct nt_closing {
    u64 key;
    u64 conn_id;
};
BPF_TABLE("lru_hash", u64, struct nt_closing, closing, 4096);

/* Local address of passively opened connections, by peer address, learnt when the
 * child socket becomes ESTABLISHED (softirq context, no fd yet) and picked up by the
 * accept() that returns it. LRU: entries of connections never accepted age out. */
struct nt_peer_key {
    u8 addr[16];
    u16 port;
    u16 _pad[3];
};
struct nt_local_addr {
    u8 addr[16];
    u16 port;
    u16 _pad[3];
};
BPF_TABLE("lru_hash", struct nt_peer_key, struct nt_local_addr, accepted_peers, 16384);

/* Processes whose syscalls the programs look at, by tgid modulo NT_TGID_SLOTS: those
 * that called accept() or connect() while wanted, those with a tracked connection, and
 * those that listened when the capture started (the agent marks them, and the
 * connections it adopts: a server may already be blocked in accept()). For every other
 * process, a syscall exit and the data and close handlers return after one array load,
 * before reading registers or looking up `conns` (most processes on a node are not
 * captured). Never cleared: a stale or shared slot only costs the work it would save. */
BPF_ARRAY(tracked_tgids, u8, NT_TGID_SLOTS);

static __always_inline int nt_tgid_tracked(u64 pid_tgid)
{
    u32 slot = (pid_tgid >> 32) & (NT_TGID_SLOTS - 1);
    u8 *v = tracked_tgids.lookup(&slot);
    return v && *v;
}

static __always_inline void nt_mark_tgid(u32 tgid)
{
    u32 slot = tgid & (NT_TGID_SLOTS - 1);
    u8 one = 1;
    tracked_tgids.update(&slot, &one);
}

/* Connections accepted without a sockaddr whose addresses are not known yet, per process
 * (tgid modulo NT_TGID_SLOTS): bpf/conn_addr.c looks further at the TCP reads of processes
 * with some only (its tracepoint fires for every TCP read on the node), so a Node.js
 * server's keep-alive reads cost one array load once their addresses are known. Added to
 * at accept, taken from when the addresses are reported or the connection ends. A shared
 * slot, or an entry the agent removed, only leaves the count too high: the work it would
 * save is done, nothing is missed. */
BPF_ARRAY(noaddr_pending, s64, NT_TGID_SLOTS);

static __always_inline void nt_noaddr_pending_add(u64 tgid, s64 n)
{
    u32 slot = tgid & (NT_TGID_SLOTS - 1);
    s64 *v = noaddr_pending.lookup(&slot);
    if (v)
        __sync_fetch_and_add(v, n);
}

BPF_PERCPU_ARRAY(counters, u64, NT_NCOUNTERS);

static __always_inline void nt_count(u32 idx, u64 n)
{
    u64 *v = counters.lookup(&idx);
    if (v)
        *v += n; /* per-CPU: no atomics needed */
}

/* Bytes of ring-buffer records committed so far (headers and padding included, as the
 * ring's producer position counts them). Every record goes through nt_ring_write, which
 * adds its size after the commit: when the count, read first, equals the producer
 * position, read second, every record below that position is committed, and the reader
 * copies the extent without walking its record headers (agent/ringbuf.py). One count per
 * CPU, each in its own cache line (NT_COMMITTED_STRIDE words), in an array the reader
 * maps into its memory: the two reads are then a few instructions apart, so that a
 * record committed between them seldom spoils the comparison. The loader defines
 * NT_NCPUS (possible CPUs). The add is atomic although the slot is the CPU's own: a
 * softirq's program (a TCP state change) can interrupt a syscall's between its load and
 * its store. */
BPF_F_TABLE("array", u32, u64, ring_committed, NT_NCPUS * NT_COMMITTED_STRIDE, BPF_F_MMAPABLE);

/* Write a record to the ring buffer (without waking the reader: it polls); 0 on
 * success, as bpf_ringbuf_output. */
static __always_inline long nt_ring_write(void *data, u64 size)
{
    long err = events.ringbuf_output(data, size, BPF_RB_NO_WAKEUP);
    if (!err) {
        u32 slot = bpf_get_smp_processor_id() * NT_COMMITTED_STRIDE;
        u64 *v = ring_committed.lookup(&slot);
        if (v)
            __sync_fetch_and_add(v, (size + 8 + 7) & ~7ULL); /* 8: the record header */
    }
    return err;
}

/* Whether a record of `size` bytes would take the ring past NT_RING_DATA_LIMIT (into the
 * room reserved for control records). */
static __always_inline int nt_ring_past_limit(u64 size)
{
    u64 used = bpf_ringbuf_query(NT_EVENTS_MAP, BPF_RB_AVAIL_DATA);
    return used + ((size + 8 + 7) & ~7ULL) > NT_RING_DATA_LIMIT;
}

/* A control record (open, addr, close, gap): may use the reserved room (counted when it
 * does: NT_STAT_RESERVED_ROOM_RECORDS); 0 on success. */
static __always_inline long nt_ring_out(void *data, u64 size)
{
    int reserved = nt_ring_past_limit(size);
    long err = nt_ring_write(data, size);
    if (!err && reserved)
        nt_count(NT_STAT_RESERVED_ROOM_RECORDS, 1);
    return err;
}

/* A data record: refused (nonzero) once the ring is filled to NT_RING_DATA_LIMIT, or, for
 * the record of a small write or read (`small`: a buffer of at most NT_SMALL_DATA bytes),
 * to NT_RING_SMALL_LIMIT: half of the reserve (the loader defines both). In a flood of
 * bulk bodies the small buffers are mostly requests and response heads (a server's head
 * is often an iovec of its own); keeping them is what lets the agent still see every
 * exchange (its request line, its status line) and flag the body it lost as a gap,
 * instead of losing whole exchanges with the body bytes around them. The last piece of a
 * large buffer is not small, however few bytes it holds. */
#define NT_SMALL_DATA 4096
static __always_inline long nt_ring_out_data(void *data, u64 size, int small)
{
    u64 used = bpf_ringbuf_query(NT_EVENTS_MAP, BPF_RB_AVAIL_DATA) + ((size + 8 + 7) & ~7ULL);
    if (used > NT_RING_DATA_LIMIT && (!small || used > NT_RING_SMALL_LIMIT))
        return -1;
    return nt_ring_write(data, size);
}

BPF_ARRAY(config, u64, NT_NCONFIG);
BPF_ARRAY(next_conn_id, u64, 1);
BPF_HASH(filter_pids, u32, u8, 4096);
BPF_HASH(filter_ports, u16, u8, 1024);
BPF_HASH(filter_cgroups, u64, u8, 16384);

/* Staging area for a data record: too large for the 512-byte BPF stack. */
BPF_PERCPU_ARRAY(scratch, struct nt_data_event, 1);

struct nt_iovec {
    u64 base;
    u64 len;
};

/* The user ABI's struct msghdr (as passed to sendmsg/recvmsg), up to msg_iovlen. */
struct nt_user_msghdr {
    u64 name;
    u32 namelen;
    u32 _pad;
    u64 iov;
    u64 iovlen;
};

struct nt_sockaddr_in {
    u16 family;
    u16 port; /* network byte order */
    u8 addr[4];
};

struct nt_sockaddr_in6 {
    u16 family;
    u16 port;
    u32 flowinfo;
    u8 addr[16];
};

static __always_inline u64 nt_cfg(u32 idx)
{
    u64 *v = config.lookup(&idx);
    return v ? *v : 0;
}

static __always_inline void nt_v4mapped(u8 *dst, const u8 *v4)
{
    __builtin_memset(dst, 0, 10);
    dst[10] = 0xff;
    dst[11] = 0xff;
    dst[12] = v4[0];
    dst[13] = v4[1];
    dst[14] = v4[2];
    dst[15] = v4[3];
}

/* Read a user sockaddr into (family, port, addr); 0 if it is not IPv4/IPv6. */
static __always_inline u16 nt_read_sockaddr(u64 uaddr, u16 *port, u8 *addr)
{
    u16 family = 0;
    if (!uaddr || bpf_probe_read_user(&family, sizeof(family), (void *)uaddr))
        return 0;
    if (family == NT_AF_INET) {
        struct nt_sockaddr_in sin = {};
        bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr);
        *port = bpf_ntohs(sin.port);
        nt_v4mapped(addr, sin.addr);
        return family;
    }
    if (family == NT_AF_INET6) {
        struct nt_sockaddr_in6 sin6 = {};
        bpf_probe_read_user(&sin6, sizeof(sin6), (void *)uaddr);
        *port = bpf_ntohs(sin6.port);
        __builtin_memcpy(addr, sin6.addr, 16);
        return family;
    }
    return 0;
}

/* The pid, cgroup and port filters, applied once per connection (at accept/connect),
 * so that a connection nobody asked for never enters `conns` and its reads and writes
 * cost one failed hash lookup. ports_known is 0 when the ports are not known yet (the
 * agent applies the port filter after learning them from /proc). */
static __always_inline int nt_wanted(u32 tgid, u16 lport, u16 rport, int ports_known)
{
    if (!nt_cfg(NT_CFG_ARMED))
        return 0;
    if (tgid == (u32)nt_cfg(NT_CFG_SELF_TGID))
        return 0;
    if (nt_cfg(NT_CFG_FILTER_PIDS) && !filter_pids.lookup(&tgid))
        return 0;
    if (nt_cfg(NT_CFG_FILTER_CGROUPS)) {
        u64 cg = bpf_get_current_cgroup_id();
        if (!filter_cgroups.lookup(&cg))
            return 0;
    }
    if (ports_known && nt_cfg(NT_CFG_FILTER_PORTS)) {
        if (!filter_ports.lookup(&lport) && !filter_ports.lookup(&rport))
            return 0;
    }
    return 1;
}

/* Cheap pre-check, before a connection's ports are known: is this process possibly of
 * interest? */
static __always_inline int nt_pid_wanted(u32 tgid)
{
    if (!nt_cfg(NT_CFG_ARMED))
        return 0;
    if (tgid == (u32)nt_cfg(NT_CFG_SELF_TGID))
        return 0;
    if (nt_cfg(NT_CFG_FILTER_PIDS) && !filter_pids.lookup(&tgid))
        return 0;
    return 1;
}

/* Returns 1 when the CLOSE record was written, 0 when the ring buffer was full. */
static __always_inline int nt_emit_close(u64 key, struct nt_conn *c)
{
    struct nt_conn_event ev = {};
    ev.kind = NT_EV_CLOSE;
    ev.role = c->role;
    ev.family = c->family;
    ev.tgid = key >> 32;
    ev.fd = (u32)key;
    ev.conn_id = c->id;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.off[0] = c->off[0];
    ev.off[1] = c->off[1];
    if (nt_ring_out(&ev, sizeof(ev))) {
        nt_count(NT_DROP_RINGBUF_CONTROL, 1);
        return 0;
    }
    return 1;
}

/* The tracked connection of (tgid, fd), or 0; closed entries kept for the agent are
 * not connections any more (the fd may already name a file). */
static __always_inline struct nt_conn *nt_conn_of(u64 key)
{
    struct nt_conn *c = conns.lookup(&key);
    if (!c || (c->flags & NT_CONN_CLOSED))
        return 0;
    return c;
}

/* The tracked connection that (this process's) fd names, and its conns key; 0 if none. */
static __always_inline struct nt_conn *nt_conn_of_fd(u64 fd, u64 *key)
{
    *key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (u32)fd;
    return nt_conn_of(*key);
}

/* Start tracking (tgid, fd). ev carries the addresses; the rest is filled in here. */
static __always_inline u64 nt_open(u32 tgid, u32 fd, u8 role, u8 flags, struct nt_conn_event *ev)
{
    u64 key = ((u64)tgid << 32) | fd;
    u32 zero = 0;
    u64 *ctr = next_conn_id.lookup(&zero);
    if (!ctr)
        return 0;
    struct nt_conn c = {};
    c.id = __sync_fetch_and_add(ctr, 1) + 1;
    c.role = role;
    c.flags = flags;
    c.family = ev->family;
    /* An entry still there means its close() was missed (close_range()) or its CLOSE
     * record was lost to a full ring buffer: end that connection first, so fd reuse never
     * mixes two connections. */
    struct nt_conn *old = conns.lookup(&key);
    if (old)
        nt_emit_close(key, old);
    nt_mark_tgid(tgid);
    if (conns.update(&key, &c)) {
        nt_count(NT_DROP_CONN_TABLE_FULL, 1);
        return 0;
    }
    ev->kind = NT_EV_OPEN;
    ev->role = role;
    ev->tgid = tgid;
    ev->fd = fd;
    ev->conn_id = c.id;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
    if (nt_ring_out(ev, sizeof(*ev)))
        nt_count(NT_DROP_RINGBUF_CONTROL, 1);
    nt_count(NT_STAT_CONNS_OPENED, 1);
    return c.id;
}

/* ---- syscall arguments (see syscall_dispatch.c) ----
 *
 * The raw sys_exit tracepoint passes the task's saved user registers (ctx->args[0]) and
 * the return value (ctx->args[1]). The registers still hold the syscall's arguments
 * there: x86-64 saves rdi, rsi, rdx, r10, r8 and r9 at entry and puts only the return
 * value in rax; arm64 puts it in x0 but keeps the first argument in orig_x0. They are
 * read at the offsets of the architecture's user register layout (what ptrace exposes,
 * fixed by the ABI), through nodetap's own struct rather than the kernel headers' struct
 * pt_regs. A syscall made through a 32-bit compat entry uses another numbering: it is
 * skipped, as the per-syscall tracepoints skip it.
 *
 * How the words are read depends on how the loader loaded the programs: as BTF-typed
 * raw tracepoints (NT_TYPED_REGS, agent/btf_tracepoint.py), the verifier knows args[0]
 * is a struct pt_regs pointer and allows plain loads from it (each checked against the
 * kernel's BTF: a word at an offset where the kernel's struct has no 8-byte member is
 * refused at load time, never misread); otherwise bpf_probe_read_kernel copies them,
 * which costs ~50 ns a call and is paid by every syscall exit of a traced process. */
struct nt_sys {
    u64 a[6];
};

#if defined(__x86_64__)
/* x86-64 pt_regs: r15 r14 r13 r12 bp bx r11 | r10 r9 r8 ax cx dx si di orig_ax ip cs ... */
struct nt_regs_args {
    u64 r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs;
};
#define NT_REGS_ARGS_OFF (7 * 8)
#define NT_REGS_NR_OFF (15 * 8) /* orig_ax, then ip, cs */
#define NT_USER_CS_64 0x33

#ifdef NT_TYPED_REGS
/* the word of struct nt_regs_args `field`, by a plain load (only those needed: each typed
 * load is a checked load, ~10 times cheaper than a probe read but not free) */
#define NT_REG(ctx, field)                                                                     \
    (*(u64 *)((ctx)->args[0] + NT_REGS_ARGS_OFF + __builtin_offsetof(struct nt_regs_args, field)))

static __always_inline int nt_sys_args(struct bpf_raw_tracepoint_args *ctx, struct nt_sys *s)
{
    if ((NT_REG(ctx, cs) & 0xffff) != NT_USER_CS_64)
        return 0;
    /* the syscall convention: rdi, rsi, rdx, r10, r8, r9 */
    s->a[0] = NT_REG(ctx, di);
    s->a[1] = NT_REG(ctx, si);
    s->a[2] = NT_REG(ctx, dx);
    s->a[3] = NT_REG(ctx, r10);
    s->a[4] = NT_REG(ctx, r8);
    s->a[5] = NT_REG(ctx, r9);
    return 1;
}

static __always_inline long nt_sys_nr_at_exit(struct bpf_raw_tracepoint_args *ctx)
{
    if ((NT_REG(ctx, cs) & 0xffff) != NT_USER_CS_64)
        return -1;
    return (long)NT_REG(ctx, orig_ax);
}
#else
static __always_inline int nt_sys_args(struct bpf_raw_tracepoint_args *ctx, struct nt_sys *s)
{
    struct nt_regs_args r = {};
    if (bpf_probe_read_kernel(&r, sizeof(r), (void *)(ctx->args[0] + NT_REGS_ARGS_OFF)))
        return 0;
    if ((r.cs & 0xffff) != NT_USER_CS_64)
        return 0;
    /* the syscall convention: rdi, rsi, rdx, r10, r8, r9 */
    s->a[0] = r.di;
    s->a[1] = r.si;
    s->a[2] = r.dx;
    s->a[3] = r.r10;
    s->a[4] = r.r8;
    s->a[5] = r.r9;
    return 1;
}

/* The syscall number at sys_exit (its tracepoint gives only the return value), or -1
 * for a compat syscall. */
static __always_inline long nt_sys_nr_at_exit(struct bpf_raw_tracepoint_args *ctx)
{
    u64 r[3] = {}; /* orig_ax, ip, cs */
    if (bpf_probe_read_kernel(&r, sizeof(r), (void *)(ctx->args[0] + NT_REGS_NR_OFF)))
        return -1;
    if ((r[2] & 0xffff) != NT_USER_CS_64)
        return -1;
    return (long)r[0];
}
#endif
#elif defined(__aarch64__)
#ifdef NT_TYPED_REGS
#error "nodetap: typed register reads are written for x86-64 only (agent/loader.py)"
#endif
/* arm64 pt_regs: regs[31] sp pc pstate orig_x0 syscallno ... (user_pt_regs first) */
#define NT_REGS_PSTATE_OFF (33 * 8)
#define NT_REGS_NR_OFF (35 * 8)
#define NT_PSR_MODE32 0x10

static __always_inline int nt_sys_args(struct bpf_raw_tracepoint_args *ctx, struct nt_sys *s)
{
    u64 tail[2] = {}; /* pstate, orig_x0 */
    if (bpf_probe_read_kernel(tail, sizeof(tail), (void *)(ctx->args[0] + NT_REGS_PSTATE_OFF)) ||
        (tail[0] & NT_PSR_MODE32))
        return 0;
    if (bpf_probe_read_kernel(s, sizeof(*s), (void *)ctx->args[0])) /* x0..x5 */
        return 0;
    s->a[0] = tail[1]; /* x0 holds the return value by now */
    return 1;
}

static __always_inline long nt_sys_nr_at_exit(struct bpf_raw_tracepoint_args *ctx)
{
    int nr = -1;
    bpf_probe_read_kernel(&nr, sizeof(nr), (void *)(ctx->args[0] + NT_REGS_NR_OFF));
    return nr;
}
#else
#error "nodetap: syscall argument offsets are defined for x86-64 and arm64 only"
#endif

/* An exit handler (syscall_dispatch.c calls it by syscall number), the start of one that
 * reads its arguments, and the start of one that only matters for processes with
 * tracked connections. */
#define NT_EXIT(name) int nt_exit_##name(struct bpf_raw_tracepoint_args *ctx)
#define NT_TRACKED_OR_RETURN()                                                                 \
    if (!nt_tgid_tracked(bpf_get_current_pid_tgid()))                                          \
        return 0;
#define NT_ARGS_OR_RETURN(s)                                                                   \
    struct nt_sys s;                                                                           \
    if (!nt_sys_args(ctx, &s))                                                                 \
        return 0;

#ifdef NT_ADDR_AT_READ
/* The current task's syscall number and first argument, read in a tracepoint that fires
 * inside a syscall (bpf/conn_addr.c): the same saved user registers as above, found with
 * bpf_task_pt_regs (kernel 5.15 on), which does the arithmetic in the kernel, so no
 * task_struct field is read here. 0 for a compat syscall (other numbers). The loader
 * defines NT_ADDR_AT_READ only where the kernel has the helper and the tracepoint. */
static __always_inline int nt_current_syscall(long *nr, u64 *arg0)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    u64 regs = (u64)bpf_task_pt_regs(task);
#if defined(__x86_64__)
    u64 r[4] = {}; /* di, orig_ax, ip, cs: struct nt_regs_args from di on */
    if (bpf_probe_read_kernel(r, sizeof(r),
                              (void *)(regs + NT_REGS_ARGS_OFF +
                                       __builtin_offsetof(struct nt_regs_args, di))))
        return 0;
    if ((r[3] & 0xffff) != NT_USER_CS_64)
        return 0;
    *arg0 = r[0];
    *nr = (long)r[1];
#elif defined(__aarch64__)
    u64 r[3] = {}; /* pstate, orig_x0, syscallno (an int in the low half) */
    if (bpf_probe_read_kernel(r, sizeof(r), (void *)(regs + NT_REGS_PSTATE_OFF)))
        return 0;
    if (r[0] & NT_PSR_MODE32)
        return 0;
    *arg0 = r[1];
    *nr = (int)r[2];
#endif
    return 1;
}
#endif
