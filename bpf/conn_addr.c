/* conn_addr.c: the addresses of connections accepted without a sockaddr, taken from the
 * kernel while the process reads them, keyed so that they cannot be another socket's.
 *
 * Why: libuv (every Node.js server, uvloop) calls accept(fd, NULL, NULL). The accept()
 * exit then knows the new fd but neither address, and nothing the syscalls pass says which
 * socket the fd names. Reading /proc/PID/fd/N later races with the process: by then N may
 * name the next accepted socket (each RRPair of five sequential requests carried the next
 * connection's client). The tracepoint tcp:tcp_rcv_space_adjust carries both addresses
 * (tracepoint arguments, a stable ABI: no kernel struct is read) and fires inside
 * tcp_recvmsg, in the reading task, once per socket buffer the read copies out: on the
 * first read of a connection too (checked on 6.18 for read, recv/recvfrom, readv, recvmsg:
 * tests/fidelity/test_addr.py). Its socket is the one the syscall reads, and the syscall
 * and its fd are in the task's saved user registers (bpf_task_pt_regs: the user ABI's
 * registers, as the syscall exits read them, common.h), so (tgid, fd) → conns entry → this
 * socket's addresses, with no guess involved.
 *
 * Why not at the tracepoint alone: a softirq (or bottom halves run when a task re-enables
 * them) can process another socket (sockmap, kTLS strparsers call tcp_read_sock there) in
 * the reading task's context. So the tracepoint only notes what it saw, per thread; the
 * read's exit (data_io.c, which knows the connection) reports the addresses when exactly
 * one socket was seen for that connection, and nothing when two were (counted: the next
 * read tries again). The NT_EV_ADDR record is written before the read's data records, so
 * the agent knows the addresses before the first request byte.
 *
 * Kernels without this tracepoint or without bpf_task_pt_regs (before 5.15): the loader
 * compiles without NT_ADDR_AT_READ and says so; the agent then reads /proc and trusts what
 * it read only if the programs' conns entry named the same connection before and after
 * (agent/addr_lookup.py), and the close path below still reports the addresses.
 *
 * The loader defines NT_NR_READ, NT_NR_READV, NT_NR_RECVFROM, NT_NR_RECVMSG and NT_NR_CLOSE
 * (this architecture's syscall numbers, agent/syscalls.py).
 */

#ifdef NT_ADDR_AT_READ
/* What the tracepoint saw during a thread's read on a connection without addresses, by
 * thread (LRU: an entry whose read never exits is dropped in time). */
struct nt_addr_seen {
    u64 key;     /* conns key of the fd the syscall reads */
    u64 conn_id; /* the connection that key named when the tracepoint fired */
    u64 sk;      /* the socket the tracepoint fired for, as an opaque id (never dereferenced) */
    u8 conflict; /* another socket fired in the same read: report nothing */
    u8 _pad[7];
    struct nt_state_addrs addrs;
};
BPF_TABLE("lru_hash", u64, struct nt_addr_seen, addr_seen, 4096);

TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 slot = (id >> 32) & (NT_TGID_SLOTS - 1);
    s64 *pending = noaddr_pending.lookup(&slot);
    if (!pending || *pending <= 0)
        return 0; /* one array load for every other process's TCP reads (common.h) */
    long nr = -1;
    u64 fd = 0;
    if (!nt_current_syscall(&nr, &fd))
        return 0;
    if (nr != NT_NR_READ && nr != NT_NR_READV && nr != NT_NR_RECVFROM && nr != NT_NR_RECVMSG)
        return 0; /* splice, io_uring workers, ...: not a read data_io.c follows */
    u64 key = (id & 0xffffffff00000000ULL) | (u32)fd;
    struct nt_conn *c = nt_conn_of(key);
    if (!c || !(c->flags & NT_CONN_NOADDR))
        return 0;
    u64 sk = (u64)args->skaddr;
    struct nt_addr_seen *seen = addr_seen.lookup(&id);
    if (seen && seen->key == key && seen->conn_id == c->id) {
        if (seen->sk != sk)
            seen->conflict = 1; /* two sockets in one read: which is which is unknown */
        return 0;
    }
    struct nt_addr_seen s = {};
    s.key = key;
    s.conn_id = c->id;
    s.sk = sk;
    NT_STATE_ADDRS(s.addrs, args);
    addr_seen.update(&id, &s);
    return 0;
}

/* At the exit of a read that moved bytes on connection c (conns key `key`), still without
 * addresses: report what the tracepoint saw during this read, if it saw this connection's
 * socket and no other. Called by data_io.c before it copies the bytes. */
static __always_inline void nt_addr_at_read(u64 key, struct nt_conn *c)
{
    u64 id = bpf_get_current_pid_tgid();
    struct nt_addr_seen *seen = addr_seen.lookup(&id);
    if (!seen)
        return;
    if (seen->key == key && seen->conn_id == c->id) {
        if (seen->conflict) {
            nt_count(NT_STAT_ADDR_CONFLICTS, 1);
        } else {
            struct nt_state_addrs addrs = seen->addrs;
            if (nt_emit_addr(&addrs, key, c->id, NT_ROLE_SERVER)) {
                c->flags &= ~NT_CONN_NOADDR; /* known: later reads skip all this */
                nt_noaddr_pending_add(key >> 32, -1);
                nt_count(NT_STAT_ADDR_AT_READ, 1);
            }
        }
    }
    addr_seen.delete(&id);
}

#else
static __always_inline void nt_addr_at_read(u64 key, struct nt_conn *c) {}
#endif
