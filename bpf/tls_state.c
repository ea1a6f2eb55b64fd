/* tls_state.c: what the syscall programs and the TLS uprobes share (issue 21).
 *
 * The uprobes on SSL_read/SSL_write (bpf/tls_openssl.c) know the plaintext and the SSL*,
 * never the socket. The socket is learnt from the read or write syscall the same thread
 * makes on a tracked connection while inside the SSL call: data_io.c's nt_io calls
 * nt_tls_cipher for every syscall on a tracked connection, which ties the call (and its
 * SSL*, for later calls served from OpenSSL's buffers without a syscall) to the connection
 * and marks the connection TLS. From then on its ciphertext is counted, not copied.
 *
 * A connection whose first bytes (either direction, stream offset 0) are a TLS handshake
 * record is marked TLS too: the handshake runs in SSL_do_handshake/SSL_accept/SSL_connect,
 * which are not probed, and its ciphertext must not reach the HTTP parser, which would
 * give the connection up as "not HTTP" before its first SSL_read.
 *
 * Loaded only with TLS capture on (the loader defines NT_TLS); nothing here reads a
 * kernel struct.
 */

/* An SSL_read/SSL_write call in flight, by thread (pid_tgid). LRU: a thread that dies
 * inside a call leaves an entry that ages out. */
struct nt_tls_call {
    u64 ssl;        /* the SSL*, as an opaque id */
    u64 buf;        /* the plaintext buffer */
    u64 nbytes_ptr; /* _ex functions: where the byte count is written (size_t *) */
    u64 key;        /* conns key of the tracked connection the call read or wrote (0: none) */
    u64 conn_id;    /* its id then */
    u8 dir;         /* NT_DIR_* */
    u8 fn;          /* NT_TLS_FN_* */
    u8 _pad[6];
};
BPF_TABLE("lru_hash", u64, struct nt_tls_call, tls_calls, 16384);

/* The connection an SSL* was last tied to, for calls that make no syscall (a short
 * SSL_read served from a record already read). Keyed by process and SSL*. */
struct nt_tls_ssl_key {
    u64 ssl;
    u32 tgid;
    u32 _pad;
};
struct nt_tls_ssl {
    u64 key;
    u64 conn_id;
};
BPF_TABLE("lru_hash", struct nt_tls_ssl_key, struct nt_tls_ssl, tls_ssl_conn, 65536);

/* Plaintext stream offsets of TLS connections, by conns key (a connection's ciphertext
 * offsets stay in struct nt_conn). */
struct nt_tls_conn {
    u64 conn_id;
    u64 off[2];
};
BPF_TABLE("lru_hash", u64, struct nt_tls_conn, tls_conns, 65536);

static __always_inline void nt_tls_mark(struct nt_conn *c)
{
    if (c->flags & NT_CONN_TLS)
        return;
    c->flags |= NT_CONN_TLS;
    nt_count(NT_STAT_TLS_CONNS, 1);
}

/* Whether the syscall's first bytes (a->buf, or its first iovec) are a TLS handshake
 * record header: content type 22, version 3.x. */
static __always_inline int nt_tls_hello(struct nt_io_args *a, long ret)
{
    if (ret < 3)
        return 0;
    u64 base = a->buf;
    if (a->iovcnt) {
        struct nt_iovec iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), (void *)a->buf) || iov.len < 3)
            return 0;
        base = iov.base;
    }
    u8 h[3] = {};
    if (bpf_probe_read_user(h, sizeof(h), (void *)base))
        return 0;
    return h[0] == 22 && h[1] == 3 && h[2] <= 4;
}

/* Called by nt_io for every syscall that moved bytes on tracked connection c (its stream
 * offset already advanced to past them): ties a running SSL call of this thread to c, and
 * returns 1 when c is TLS (its ciphertext is then not copied). */
static __always_inline int nt_tls_cipher(struct nt_conn *c, struct nt_io_args *a, long ret,
                                         u64 start)
{
    u64 id = bpf_get_current_pid_tgid();
    struct nt_tls_call *call = tls_calls.lookup(&id);
    if (call) {
        call->key = a->key;
        call->conn_id = c->id;
        nt_tls_mark(c);
    } else if (!(c->flags & NT_CONN_TLS) && start == 0 && nt_tls_hello(a, ret)) {
        nt_tls_mark(c);
    }
    if (!(c->flags & NT_CONN_TLS))
        return 0;
    nt_count(NT_STAT_TLS_CIPHER_BYTES, ret);
    return 1;
}

/* Processes that exec'd a program since the agent last looked (tgid -> 1), when the pid and
 * cgroup filters let them in: the TLS coverage (agent/tls/coverage.py) looks at them at
 * once, and again as their libraries are mapped, instead of at its next /proc rescan, so
 * that a program started after the capture has its TLS library probed before its first
 * calls (a library another targeted process uses is probed already: one attachment per
 * file serves every process that maps it). Paid by every exec on the node: one config
 * read, one hash update for the processes the filters let in. */
BPF_HASH(tls_execs, u32, u8, 4096);

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!nt_wanted(tgid, 0, 0, 0))
        return 0;
    u8 one = 1;
    tls_execs.update(&tgid, &one);
    return 0;
}
