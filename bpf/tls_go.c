/* tls_go.c: TLS plaintext from Go's crypto/tls, through uprobes on (*Conn).Write and
 * (*Conn).Read in Go executables (issue 21, item 2).
 *
 * Go (1.17 on, amd64) passes arguments in registers (ABIInternal): the receiver *tls.Conn in
 * RAX, the slice b in RBX (pointer) and RCX (length); it returns n in RAX; R14 always holds
 * the running goroutine (g). Write's bytes are copied at its entry (see nt_go_enter). Read's
 * return is probed at each RET instruction of the function (the agent finds them:
 * agent/tls/go_rets.py), never with a uretprobe, which rewrites the return address on a
 * stack Go may move. A Read in flight is kept by goroutine (g, tgid), not by thread: a
 * goroutine can move between threads inside a call.
 *
 * The connection comes from the *tls.Conn itself: its first field is the net.Conn it wraps
 * (an interface: type word, data word), whose data is a *net.TCPConn, whose first word is its
 * *netFD, whose first field is a poll.FD: a 16-byte fdMutex, then Sysfd. These layouts have
 * been the same from Go 1.9 to 1.26 (verified here with 1.26); a net.Conn that is not a
 * TCPConn (a wrapper) yields an fd that is not a tracked connection: nothing is copied.
 */

#define NT_GO_R14 1  /* pt_regs: r15 r14 ... */
#define NT_GO_RBX 5
#define NT_GO_RAX 10
#define NT_GO_RCX 11

struct nt_go_key {
    u64 g;
    u32 tgid;
    u32 _pad;
};
BPF_TABLE("lru_hash", struct nt_go_key, struct nt_tls_call, go_tls_calls, 16384);

/* The fd of the TCP connection under a *tls.Conn (see above), or -1. */
static __always_inline long nt_go_conn_fd(u64 tls_conn)
{
    u64 tcp = 0, netfd = 0;
    long fd = -1;
    if (bpf_probe_read_user(&tcp, sizeof(tcp), (void *)(tls_conn + 8)) || !tcp)
        return -1;
    if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)tcp) || !netfd)
        return -1;
    if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + 16)))
        return -1;
    return fd;
}

static __always_inline int nt_go_enter(struct pt_regs *ctx, u8 dir, u8 fn)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!nt_tgid_tracked(id))
        return 0;
    u64 conn = NT_UREG(ctx, NT_GO_RAX);
    long fd = nt_go_conn_fd(conn);
    if (fd < 0 || fd > 0x7fffffff)
        return 0;
    u64 key = (id & 0xffffffff00000000ULL) | (u32)fd;
    struct nt_conn *c = nt_conn_of(key);
    if (!c)
        return 0;
    struct nt_go_key gk = {};
    gk.g = NT_UREG(ctx, NT_GO_R14);
    gk.tgid = id >> 32;
    struct nt_tls_call call = {};
    call.ssl = conn;
    call.buf = NT_UREG(ctx, NT_GO_RBX);
    call.key = key;
    call.conn_id = c->id;
    call.dir = dir;
    call.fn = fn;
    if (dir == NT_DIR_EGRESS) {
        /* Write: its bytes are copied now, before they reach the socket. At its return
         * they could come after the peer's answer, read by another goroutine on another
         * thread (an HTTP client's read loop), and the answer would precede its request. A
         * Write writes all of b or fails (then the connection is broken). */
        u64 len = NT_UREG(ctx, NT_GO_RCX);
        if (len && len < (1ULL << 31))
            nt_tls_emit(ctx, &call, len, gk.tgid, c);
        return 0;
    }
    go_tls_calls.update(&gk, &call);
    return 0;
}

int nt_go_read_enter(struct pt_regs *ctx)
{
    return nt_go_enter(ctx, NT_DIR_INGRESS, NT_TLS_FN_GO_READ);
}

int nt_go_write_enter(struct pt_regs *ctx)
{
    return nt_go_enter(ctx, NT_DIR_EGRESS, NT_TLS_FN_GO_WRITE);
}

/* At a RET of Read: n = RAX. */
int nt_go_return(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct nt_go_key gk = {};
    gk.g = NT_UREG(ctx, NT_GO_R14);
    gk.tgid = id >> 32;
    struct nt_tls_call *cp = go_tls_calls.lookup(&gk);
    if (!cp)
        return 0;
    struct nt_tls_call call = *cp;
    go_tls_calls.delete(&gk);
    long n = (long)NT_UREG(ctx, NT_GO_RAX);
    if (n <= 0)
        return 0;
    struct nt_conn *c = nt_conn_of(call.key);
    if (!c || c->id != call.conn_id)
        return 0;
    return nt_tls_emit(ctx, &call, (u64)n, gk.tgid, c);
}
