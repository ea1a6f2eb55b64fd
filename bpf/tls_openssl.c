/* tls_openssl.c: TLS plaintext from OpenSSL (1.1, 3.x) and BoringSSL, through uprobes on
 * SSL_read, SSL_write, SSL_read_ex and SSL_write_ex (issue 21).
 *
 * Entry: the SSL*, the buffer (and for the _ex functions where the byte count goes) are
 * kept per thread (tls_state.c: tls_calls). Inside the call, the read or write syscall on
 * the socket ties it to its tracked connection (tls_state.c: nt_tls_cipher). Return: the
 * bytes moved, copied from the buffer into NT_EV_TLS_DATA records with the connection's id,
 * the direction, and plaintext stream offsets (tls_conns). A call that made no syscall
 * (served from OpenSSL's buffer, or a write after a partial one) uses the connection its
 * SSL* was last tied to (tls_ssl_conn); a call never tied is counted
 * (NT_STAT_TLS_UNTIED_CALLS), never attributed by guess: a memory-BIO user (Node.js) moves
 * its ciphertext on another path, later, and stays uncovered.
 *
 * The probes are attached per library file (agent/tls/attach.py); the entry's first test
 * is the syscall programs' own: is this process tracked (common.h: tracked_tgids). So the
 * pid, cgroup and port filters apply as for syscalls: a call is copied only when it is
 * tied to a connection those filters let in.
 *
 * One program copies up to NT_MAX_PIECES pieces of NT_MAX_CHUNK bytes (1.1 MiB), tail calls
 * (nt_tls_step) the rest, up to the copy bound; what is left is an NT_EV_TLS_GAP record
 * (counted). The uretprobes are fine
 * for C code (never for Go: its stacks move).
 */

/* The function's arguments and return value, from the user registers the uprobe saw, at
 * the offsets of the architecture's user register layout (fixed by its ABI, as common.h's
 * syscall registers): no kernel header's struct pt_regs is needed. */
#if defined(__x86_64__)
/* r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di ...: the C calling convention passes
 * rdi, rsi, rdx, rcx, and returns in rax */
#define NT_UARG1 14
#define NT_UARG2 13
#define NT_UARG4 11
#define NT_URET 10
#elif defined(__aarch64__)
#define NT_UARG1 0
#define NT_UARG2 1
#define NT_UARG4 3
#define NT_URET 0
#endif
#define NT_UREG(ctx, i) (((u64 *)(ctx))[i])

/* A staging record of the uprobes' own: a syscall program on this CPU never shares it. */
BPF_PERCPU_ARRAY(tls_scratch, struct nt_data_event, 1);

static __always_inline int nt_tls_enter(struct pt_regs *ctx, u8 dir, u8 fn, int ex)
{
    u64 id = bpf_get_current_pid_tgid();
    if (!nt_tgid_tracked(id))
        return 0;
    struct nt_tls_call call = {};
    call.ssl = NT_UREG(ctx, NT_UARG1);
    call.buf = NT_UREG(ctx, NT_UARG2);
    call.nbytes_ptr = ex ? NT_UREG(ctx, NT_UARG4) : 0;
    call.dir = dir;
    call.fn = fn;
    tls_calls.update(&id, &call);
    return 0;
}

int nt_ssl_read_enter(struct pt_regs *ctx)
{
    return nt_tls_enter(ctx, NT_DIR_INGRESS, NT_TLS_FN_SSL_READ, 0);
}

int nt_ssl_write_enter(struct pt_regs *ctx)
{
    return nt_tls_enter(ctx, NT_DIR_EGRESS, NT_TLS_FN_SSL_WRITE, 0);
}

int nt_ssl_read_ex_enter(struct pt_regs *ctx)
{
    return nt_tls_enter(ctx, NT_DIR_INGRESS, NT_TLS_FN_SSL_READ_EX, 1);
}

int nt_ssl_write_ex_enter(struct pt_regs *ctx)
{
    return nt_tls_enter(ctx, NT_DIR_EGRESS, NT_TLS_FN_SSL_WRITE_EX, 1);
}

/* A plaintext copy longer than one program's NT_MAX_PIECES pieces goes on in nt_tls_step,
 * by tail calls (the loader puts it at index 0 of tls_progs; per CPU: a tail call runs on
 * its caller's CPU at once). 33 tail calls: about 38 MiB per SSL call. */
struct nt_tls_cursor {
    u64 buf;
    u64 start; /* plaintext offset of the call's first byte */
    u64 total; /* bytes the call moved */
    u64 first; /* bytes to copy (the copy bound) */
    u64 done;  /* bytes handled */
    u64 key;   /* conns key */
    u64 lost_before;
};
BPF_PERCPU_ARRAY(tls_cursor, struct nt_tls_cursor, 1);
BPF_PROG_ARRAY(tls_progs, 1);

/* The NT_EV_TLS_GAP record of n plaintext bytes at offset start not copied. */
static __always_inline void nt_tls_gap(struct nt_data_event *ev, u64 start, u64 n, int bound)
{
    ev->kind = NT_EV_TLS_GAP;
    ev->len = n;
    ev->offset = start;
    if (bound)
        ev->syscall |= NT_GAP_BOUND;
    if (nt_ring_out(ev, NT_DATA_HDR_SIZE))
        nt_count(NT_DROP_RINGBUF_CONTROL, 1);
}

/* After a call's copy: the bytes not copied (past the bound, or past what the tail calls
 * could copy) as one NT_EV_TLS_GAP record, counted. */
static __always_inline void nt_tls_rest(struct nt_data_event *ev, u64 start, u64 n, u64 first,
                                        u64 done)
{
    if (done >= n)
        return;
    if (done < first)
        nt_count(NT_DROP_TLS_TRUNCATED_BYTES, first - done);
    if (first < n)
        nt_count(NT_STAT_BOUND_SKIPPED_BYTES, n - first);
    nt_tls_gap(ev, start + done, n - done, done >= first);
}

/* The tracked connection (and its conns key) a returning call moved bytes on: the one its
 * syscall touched, else the one its SSL* was tied to before; 0 if none. */
static __always_inline struct nt_conn *nt_tls_conn_of(struct nt_tls_call *call, u32 tgid)
{
    struct nt_tls_ssl_key sk = {};
    sk.ssl = call->ssl;
    sk.tgid = tgid;
    if (call->key) {
        struct nt_tls_ssl tie = {};
        tie.key = call->key;
        tie.conn_id = call->conn_id;
        tls_ssl_conn.update(&sk, &tie);
    } else {
        struct nt_tls_ssl *tie = tls_ssl_conn.lookup(&sk);
        if (!tie)
            return 0;
        call->key = tie->key;
        call->conn_id = tie->conn_id;
    }
    struct nt_conn *c = nt_conn_of(call->key);
    if (!c || c->id != call->conn_id) {
        tls_ssl_conn.delete(&sk); /* that connection is gone */
        return 0;
    }
    return c;
}

static __always_inline int nt_tls_emit(struct pt_regs *ctx, struct nt_tls_call *cp, u64 n,
                                       u32 tgid, struct nt_conn *c);

static __always_inline int nt_tls_return(struct pt_regs *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    struct nt_tls_call *cp = tls_calls.lookup(&id);
    if (!cp)
        return 0;
    struct nt_tls_call call = *cp;
    tls_calls.delete(&id);
    long rc = NT_UREG(ctx, NT_URET);
    u64 n = 0;
    if (call.nbytes_ptr) {
        if ((int)rc != 1 || bpf_probe_read_user(&n, sizeof(n), (void *)call.nbytes_ptr))
            return 0;
    } else {
        if ((int)rc <= 0)
            return 0;
        n = (u32)rc;
    }
    if (!n)
        return 0;
    u32 tgid = id >> 32;
    struct nt_conn *c = nt_tls_conn_of(&call, tgid);
    if (!c) {
        nt_count(NT_STAT_TLS_UNTIED_CALLS, 1);
        return 0;
    }
    return nt_tls_emit(ctx, &call, n, tgid, c);
}

/* Copy the n plaintext bytes a call moved (call->buf, call->dir) on tracked connection c
 * (conns key call->key) into NT_EV_TLS_DATA records; shared with bpf/tls_go.c. */
static __always_inline int nt_tls_emit(struct pt_regs *ctx, struct nt_tls_call *cp, u64 n,
                                       u32 tgid, struct nt_conn *c)
{
    struct nt_tls_call call = *cp;
    nt_tls_mark(c);
    nt_count(NT_STAT_TLS_CALLS, 1);
    nt_count(NT_STAT_TLS_PLAIN_BYTES, n);
    struct nt_tls_conn *tc = tls_conns.lookup(&call.key);
    if (!tc || tc->conn_id != c->id) {
        struct nt_tls_conn fresh = {};
        fresh.conn_id = c->id;
        tls_conns.update(&call.key, &fresh);
        tc = tls_conns.lookup(&call.key);
        if (!tc)
            return 0;
    }
    u64 start = __sync_fetch_and_add(&tc->off[call.dir & 1], n);
    if (c->flags & NT_CONN_MUTED) {
        nt_count(NT_STAT_MUTED_BYTES, n);
        return 0;
    }
    u32 zero = 0;
    struct nt_data_event *ev = tls_scratch.lookup(&zero);
    if (!ev)
        return 0;
    ev->kind = NT_EV_TLS_DATA;
    ev->dir = call.dir;
    ev->syscall = call.fn;
    ev->conn_id = c->id;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->tgid = tgid;
    ev->_pad = (u32)call.key; /* the fd */
    u64 first = n;
    u64 bound = nt_cfg(NT_CFG_COPY_BOUND);
    if (bound && first > bound)
        first = bound;
    u64 lost_before = nt_lost_records();
    u64 done = nt_emit_buffer(ev, call.buf, first, start);
    if (done < first) {
        struct nt_tls_cursor *cur = tls_cursor.lookup(&zero);
        if (cur) {
            cur->buf = call.buf;
            cur->start = start;
            cur->total = n;
            cur->first = first;
            cur->done = done;
            cur->key = call.key;
            cur->lost_before = lost_before;
            tls_progs.call(ctx, 0); /* returns only if the tail call failed */
        }
    }
    nt_lost_since(c, lost_before);
    nt_tls_rest(ev, start, n, first, done);
    return 0;
}

/* Tail-call target: go on with the copy in tls_cursor. */
int nt_tls_step(struct pt_regs *ctx)
{
    u32 zero = 0;
    struct nt_tls_cursor *cur = tls_cursor.lookup(&zero);
    struct nt_data_event *ev = tls_scratch.lookup(&zero);
    if (!cur || !ev || cur->done >= cur->first)
        return 0;
    cur->done += nt_emit_buffer(ev, cur->buf + cur->done, cur->first - cur->done,
                                cur->start + cur->done);
    if (cur->done < cur->first)
        tls_progs.call(ctx, 0);
    /* the copy ends here: all of it, the bound, or the end of the tail-call chain */
    struct nt_conn *c = nt_conn_of(cur->key);
    if (c && c->id == ev->conn_id)
        nt_lost_since(c, cur->lost_before);
    nt_tls_rest(ev, cur->start, cur->total, cur->first, cur->done);
    return 0;
}

int nt_ssl_return(struct pt_regs *ctx)
{
    return nt_tls_return(ctx);
}
