/* conn_lifecycle.c: which connections exist, who opened them, and when they end.
 *
 * accept/accept4 (server side), connect (client side), close and dup2/dup3, plus the
 * sock:inet_sock_set_state tracepoint, which supplies the local address of a connection
 * (the syscalls only give the peer's) and proves a connect() is TCP.
 *
 * Their exits come from the syscall dispatch (syscall_dispatch.c). Their entries are
 * per-syscall tracepoints, paid only by these syscalls: accept and connect mark the
 * process so that the dispatch looks at their exits (common.h: tracked_tgids), connect
 * prepares what the SYN_SENT state change inside it fills in, and close must end the
 * connection before the fd is free for the process to reuse.
 */

/* ---- fork: `-p PID` follows the process's children (a master and the workers it
 * starts). The agent adds the descendants alive at start (agent/pid_tree.py); this adds
 * those forked later. Paid by every fork on the node: one config read, one lookup when
 * the pid filter is on. A new thread's id lands in filter_pids too: harmless, it is
 * never a tgid while the thread lives. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    if (!nt_cfg(NT_CFG_FILTER_PIDS))
        return 0;
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    if (!filter_pids.lookup(&parent))
        return 0;
    u32 child = args->child_pid;
    u8 one = 1;
    filter_pids.update(&child, &one);
    return 0;
}

/* ---- connect: the traced process is the client ---- */

/* connect(fd, uservaddr, addrlen) */
TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!nt_pid_wanted(id >> 32))
        return 0;
    nt_mark_tgid(id >> 32); /* its exit must be looked at */
    struct nt_pending_connect pc = {};
    pc.addr = (u64)args->uservaddr;
    pc.fd = args->fd;
    pending_connect.update(&id, &pc);
    return 0;
}

NT_EXIT(connect)
{
    long ret = (long)ctx->args[1];
    u64 id = bpf_get_current_pid_tgid();
    struct nt_pending_connect *pcp = pending_connect.lookup(&id);
    if (!pcp)
        return 0;
    struct nt_pending_connect pc = *pcp;
    pending_connect.delete(&id);
    /* non-blocking sockets return -EINPROGRESS while the handshake goes on */
    if ((ret != 0 && ret != -NT_EINPROGRESS) || !pc.tcp)
        return 0;
    struct nt_conn_event ev = {};
    ev.family = nt_read_sockaddr(pc.addr, &ev.rport, ev.raddr);
    if (!ev.family)
        return 0;
    struct nt_sk_info *info = sk_conn.lookup(&pc.sk);
    if (info && info->established) {
        /* blocking connect(): the handshake is done, the local address known */
        ev.lport = info->lport;
        __builtin_memcpy(ev.laddr, info->laddr, 16);
    }
    u32 tgid = id >> 32;
    if (!nt_wanted(tgid, ev.lport, ev.rport, 1)) {
        nt_count(NT_STAT_CONNS_FILTERED, 1);
        if (info)
            sk_conn.delete(&pc.sk);
        return 0;
    }
    u64 conn_id = nt_open(tgid, pc.fd, NT_ROLE_CLIENT, 0, &ev);
    if (info) {
        if (info->established || !conn_id)
            sk_conn.delete(&pc.sk);
        else
            info->conn_id = conn_id; /* ESTABLISHED will report the local address */
    }
    return 0;
}

/* ---- accept: the traced process is the server ---- */

/* accept(fd, upeer_sockaddr, upeer_addrlen) and accept4(..., flags): mark the process,
 * so that the dispatch looks at the exit */
static __always_inline int nt_accept_enter(void)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (nt_pid_wanted(tgid))
        nt_mark_tgid(tgid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept) { return nt_accept_enter(); }

TRACEPOINT_PROBE(syscalls, sys_enter_accept4) { return nt_accept_enter(); }

/* the exit of accept and accept4: the return value is the new fd. A server that was
 * already blocked in accept() when the capture started is marked by the agent. */
NT_EXIT(accept)
{
    long ret = (long)ctx->args[1];
    if (ret < 0)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if (!nt_pid_wanted(id >> 32))
        return 0;
    NT_ARGS_OR_RETURN(s);
    u64 uaddr = s.a[1];
    struct nt_conn_event ev = {};
    u8 flags = 0;
    int ports_known = 0;
    if (uaddr) {
        ev.family = nt_read_sockaddr(uaddr, &ev.rport, ev.raddr);
        if (!ev.family)
            return 0; /* AF_UNIX and friends */
        struct nt_peer_key k = {};
        __builtin_memcpy(k.addr, ev.raddr, 16);
        k.port = ev.rport;
        struct nt_local_addr *local = accepted_peers.lookup(&k);
        if (local) {
            ev.lport = local->port;
            __builtin_memcpy(ev.laddr, local->addr, 16);
            accepted_peers.delete(&k);
            ports_known = 1;
        } else {
            flags |= NT_CONN_NOADDR;
        }
    } else {
        /* accept(fd, NULL, NULL): family and addresses unknown here */
        flags |= NT_CONN_NOADDR;
    }
    u32 tgid = id >> 32;
    if (!nt_wanted(tgid, ev.lport, ev.rport, ports_known)) {
        nt_count(NT_STAT_CONNS_FILTERED, 1);
        return 0;
    }
    if (nt_open(tgid, (u32)ret, NT_ROLE_SERVER, flags, &ev) && (flags & NT_CONN_NOADDR))
        nt_noaddr_pending_add(tgid, 1); /* its reads tell the addresses: conn_addr.c */
    return 0;
}

/* ---- TCP state changes: local addresses ---- */

/* An NT_EV_ADDR record: both addresses of connection conn_id (conns key `key`), from a
 * state change of its socket. */
/* The addresses a TCP state change reports, copied out of the tracepoint's arguments (BCC
 * declares their struct only at its TRACEPOINT_PROBE, and the verifier allows no pointer
 * into them to be passed around). */
struct nt_state_addrs {
    u16 family;
    u16 sport;
    u16 dport;
    u8 saddr[4];
    u8 daddr[4];
    u8 saddr_v6[16];
    u8 daddr_v6[16];
};

#define NT_STATE_ADDRS(a, args)                                   \
    do {                                                          \
        (a).family = (args)->family;                              \
        (a).sport = (args)->sport;                                \
        (a).dport = (args)->dport;                                \
        __builtin_memcpy((a).saddr, (args)->saddr, 4);            \
        __builtin_memcpy((a).daddr, (args)->daddr, 4);            \
        __builtin_memcpy((a).saddr_v6, (args)->saddr_v6, 16);     \
        __builtin_memcpy((a).daddr_v6, (args)->daddr_v6, 16);     \
    } while (0)

/* Returns 1 when the record was written, 0 when the ring buffer was full. */
static __always_inline int nt_emit_addr(struct nt_state_addrs *a, u64 key, u64 conn_id, u8 role)
{
    struct nt_conn_event ev = {};
    ev.kind = NT_EV_ADDR;
    ev.role = role;
    ev.family = a->family;
    ev.tgid = key >> 32;
    ev.fd = (u32)key;
    ev.conn_id = conn_id;
    ev.ts_ns = bpf_ktime_get_ns();
    ev.lport = a->sport;
    ev.rport = a->dport;
    if (a->family == NT_AF_INET) {
        nt_v4mapped(ev.laddr, a->saddr);
        nt_v4mapped(ev.raddr, a->daddr);
    } else {
        __builtin_memcpy(ev.laddr, a->saddr_v6, 16);
        __builtin_memcpy(ev.raddr, a->daddr_v6, 16);
    }
    if (nt_ring_out(&ev, sizeof(ev))) {
        nt_count(NT_DROP_RINGBUF_CONTROL, 1);
        return 0;
    }
    return 1;
}

/* The state change a close() causes runs in the closing task, in the syscall (or at its
 * return, the last fput): it is connection cl's only if this task's syscall is close(cl's
 * fd). Node.js calls shutdown() before close(): the change happens in the shutdown(), the
 * close() makes none, and the thread's next shutdown() of another connection makes the
 * same change on that one's socket, which would give cl the next connection's addresses
 * (seen: issue 18). So the change is believed only when the task's saved registers say
 * close(cl's fd) (common.h: nt_current_syscall); without them (kernels before 5.15, see
 * bpf/conn_addr.c) never: an address absent is better than a wrong one. */
static __always_inline int nt_closing_matches(struct nt_closing *cl)
{
#ifdef NT_ADDR_AT_READ
    long nr = -1;
    u64 fd = 0;
    return nt_current_syscall(&nr, &fd) && nr == NT_NR_CLOSE && (u32)fd == (u32)cl->key;
#else
    return 0;
#endif
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != NT_IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr; /* an opaque id: never dereferenced */
    if (args->newstate == NT_TCP_SYN_SENT) {
        /* active open, inside connect() of the current task; the source port is not
         * assigned yet */
        u64 id = bpf_get_current_pid_tgid();
        struct nt_pending_connect *pc = pending_connect.lookup(&id);
        if (!pc)
            return 0;
        pc->tcp = 1;
        pc->sk = sk;
        struct nt_sk_info info = {};
        info.key = (id & 0xffffffff00000000ULL) | pc->fd;
        sk_conn.update(&sk, &info);
        return 0;
    }
    if (args->oldstate == NT_TCP_SYN_SENT && args->newstate == NT_TCP_ESTABLISHED) {
        struct nt_sk_info *info = sk_conn.lookup(&sk);
        if (!info)
            return 0;
        info->lport = args->sport;
        if (args->family == NT_AF_INET)
            nt_v4mapped(info->laddr, args->saddr);
        else
            __builtin_memcpy(info->laddr, args->saddr_v6, 16);
        info->established = 1;
        if (!info->conn_id)
            return 0; /* connect() is still in progress and will pick it up */
        struct nt_state_addrs addrs = {};
        NT_STATE_ADDRS(addrs, args);
        nt_emit_addr(&addrs, info->key, info->conn_id, NT_ROLE_CLIENT);
        sk_conn.delete(&sk);
        return 0;
    }
    if ((args->oldstate == NT_TCP_ESTABLISHED && args->newstate == NT_TCP_FIN_WAIT1) ||
        (args->oldstate == NT_TCP_CLOSE_WAIT && args->newstate == NT_TCP_LAST_ACK)) {
        /* only close() and shutdown() make these changes, in the closing thread */
        u64 id = bpf_get_current_pid_tgid();
        struct nt_closing *cl = closing.lookup(&id);
        if (!cl || !nt_closing_matches(cl))
            return 0;
        struct nt_state_addrs addrs = {};
        NT_STATE_ADDRS(addrs, args);
        nt_emit_addr(&addrs, cl->key, cl->conn_id, NT_ROLE_SERVER);
        closing.delete(&id);
        return 0;
    }
    if (args->oldstate == NT_TCP_SYN_RECV && args->newstate == NT_TCP_ESTABLISHED) {
        /* passive open completed; accept() will look this up by the peer's address */
        struct nt_peer_key k = {};
        struct nt_local_addr v = {};
        k.port = args->dport;
        v.port = args->sport;
        if (args->family == NT_AF_INET) {
            nt_v4mapped(k.addr, args->daddr);
            nt_v4mapped(v.addr, args->saddr);
        } else {
            __builtin_memcpy(k.addr, args->daddr_v6, 16);
            __builtin_memcpy(v.addr, args->saddr_v6, 16);
        }
        accepted_peers.update(&k, &v);
    }
    return 0;
}

/* ---- close ---- */

/* End connection c of conns key `key`: a CLOSE record, then the entry goes. */
static __always_inline void nt_end_conn(u64 key, struct nt_conn *c)
{
    if (c->flags & NT_CONN_NOADDR)
        nt_noaddr_pending_add(key >> 32, -1);
    if (nt_emit_close(key, c))
        conns.delete(&key);
    else
        c->flags |= NT_CONN_CLOSED; /* the agent reads the final offsets from here */
}

/* close(fd), at entry: the connection ends before the fd is free to be reused */
TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    NT_TRACKED_OR_RETURN();
    u64 id = bpf_get_current_pid_tgid();
    u64 key = (id & 0xffffffff00000000ULL) | (u32)args->fd;
#ifdef NT_ADDR_AT_READ
    /* an entry of an earlier close() whose state change never came (a shutdown() made
     * it): never left for a later close(fd) of the same number to take */
    if (closing.lookup(&id))
        closing.delete(&id);
#endif
    struct nt_conn *c = nt_conn_of(key);
    if (!c) {
        nt_file_forget(key); /* sendfile_source.c */
        return 0;
    }
#ifdef NT_ADDR_AT_READ
    if (c->flags & NT_CONN_NOADDR) {
        struct nt_closing cl = {};
        cl.key = key;
        cl.conn_id = c->id;
        closing.update(&id, &cl);
    }
#endif
    nt_end_conn(key, c);
    return 0;
}

/* dup2(oldfd, newfd) and dup3(oldfd, newfd, flags), at exit: a successful call closed
 * what newfd named, without a close(). A connection tracked there has ended, and newfd
 * now names another file: ended here, its streams never take that file's bytes. The exit
 * is early enough (only another thread's I/O on newfd between the implicit close and this
 * exit could be misattributed) and costs nothing at entry; a connection without
 * addresses ended this way keeps them unknown (its TCP state change, if any, has passed).
 * The file newfd names from now on is not followed (README: limits, dup). */
NT_EXIT(dup)
{
    long ret = (long)ctx->args[1];
    if (ret < 0)
        return 0;
    NT_ARGS_OR_RETURN(s);
    if (s.a[0] == s.a[1])
        return 0; /* dup2(fd, fd) closes nothing */
    u64 key;
    struct nt_conn *c = nt_conn_of_fd(ret, &key);
    if (c)
        nt_end_conn(key, c);
    else
        nt_file_forget(key); /* sendfile_source.c: newfd names another file now */
    return 0;
}
