/* data_io.c: the bytes read and written on tracked connections.
 *
 * Everything happens at the syscall's exit (syscall_dispatch.c): one hash lookup is all
 * a read or write on an untracked fd costs, and a syscall that moved nothing (EAGAIN)
 * costs less. The bytes the syscall moved (its return value) are copied into
 * variable-size ring-buffer records, split into pieces of at most NT_MAX_CHUNK bytes,
 * each with its stream offset. Bytes that cannot be copied still advance the offset,
 * so the agent always sees where a gap is.
 */

/* Where a large syscall's copy stands, carried across tail calls (per CPU: a tail call
 * runs on the CPU of its caller, with nothing in between). */
struct nt_iov_cursor {
    struct nt_io_args a;
    u64 start; /* stream offset of the syscall's first byte */
    u64 total; /* bytes the syscall moved */
    u64 done;  /* bytes handled so far */
    u32 iov_idx;
    u32 _pad;
    u64 bound;    /* bytes to copy at most (NT_CFG_COPY_BOUND); the rest is an NT_GAP_BOUND gap */
    u64 iov_base; /* the current iovec (iovcnt > 0) */
    u64 iov_len;
    u64 iov_off;  /* bytes of it handled */
    u64 lost_before; /* this CPU's NT_DROP_RINGBUF_DATA before the syscall (nt_lost_since) */
};
BPF_PERCPU_ARRAY(iov_cursor, struct nt_iov_cursor, 1);

/* This CPU's count of data records lost to a full ring buffer (a syscall's records are all
 * written on its CPU: comparing the count before and after tells whether it lost any). */
static __always_inline u64 nt_lost_records(void)
{
    u32 idx = NT_DROP_RINGBUF_DATA;
    u64 *v = counters.lookup(&idx);
    return v ? *v : 0;
}

/* If data records were lost since the count was `before`, mark connection c (it lost
 * bytes to a full ring buffer) and count it, once per connection. The agent sees the hole
 * in the stream offsets; this count is what it is checked against. */
static __always_inline void nt_lost_since(struct nt_conn *c, u64 before)
{
    if (nt_lost_records() == before || (c->flags & NT_CONN_LOST))
        return;
    c->flags |= NT_CONN_LOST;
    nt_count(NT_DROP_RINGBUF_DATA_CONNECTIONS, 1);
}

/* After a tail-call chain's copy: mark the connection if it lost data records meanwhile. */
static __always_inline void nt_lost_in_chain(struct nt_iov_cursor *cur, u64 conn_id)
{
    if (nt_lost_records() == cur->lost_before)
        return;
    struct nt_conn *c = nt_conn_of(cur->a.key);
    if (c && c->id == conn_id)
        nt_lost_since(c, cur->lost_before);
}

/* nt_iov_step continues a copy that one program cannot finish: NT_MAX_PIECES pieces per
 * call, walking buffers and iovecs in one flat loop (a loop over iovecs nested around a
 * loop over pieces is more than the verifier can prove), then tail-calling itself. The
 * kernel allows 33 tail calls in a chain: about 35 MiB per syscall, any number of
 * iovecs; the copy also stops at the bound the agent sets from --max-body. The loader
 * puts nt_iov_step at index 0. */
BPF_PROG_ARRAY(iov_progs, 1);

/* Syscalls that moved at most this many bytes never look the bound up (the agent keeps
 * the bound above it). */
#define NT_BOUND_FLOOR 65536

/* Fill the parts of the staging record that are the same for every piece. */
static __always_inline struct nt_data_event *nt_stage(struct nt_io_args *a, u64 conn_id, u32 tgid)
{
    u32 zero = 0;
    struct nt_data_event *ev = scratch.lookup(&zero);
    if (!ev)
        return 0;
    ev->kind = NT_EV_DATA;
    ev->dir = a->dir;
    ev->syscall = a->sc;
    ev->conn_id = conn_id;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->tgid = tgid;
    ev->_pad = (u32)a->key; /* the fd, for an agent that missed the OPEN record */
    return ev;
}

/* Copy `total` bytes at user address `base` into records of at most NT_MAX_CHUNK bytes.
 * Returns the bytes handled (copied, or lost and counted); less than `total` only when
 * NT_MAX_PIECES was reached. */
static __always_inline u64 nt_emit_buffer(struct nt_data_event *ev, u64 base, u64 total, u64 start)
{
    u64 done = 0;
    for (int i = 0; i < NT_MAX_PIECES; i++) {
        if (done >= total)
            break;
        u64 n = total - done;
        if (n > NT_MAX_CHUNK)
            n = NT_MAX_CHUNK;
        /* Launder the length through map memory: the verifier then bounds it by the check
         * below alone, instead of tracking it back to `done`, which would keep every
         * iteration's states apart and make the loop too complex to verify. */
        ev->len = n;
        u32 len = *(volatile u32 *)&ev->len;
        if (len > NT_MAX_CHUNK)
            break;
        ev->offset = start + done;
        if (bpf_probe_read_user(ev->data, len, (void *)base)) {
            nt_count(NT_DROP_READ_FAULT, 1);
        } else if (nt_ring_out_data(ev, NT_DATA_HDR_SIZE + len, total <= NT_SMALL_DATA)) {
            nt_count(NT_DROP_RINGBUF_DATA, 1);
            nt_count(NT_DROP_RINGBUF_DATA_BYTES, len);
        } else {
            nt_count(NT_STAT_DATA_RECORDS, 1);
            nt_count(NT_STAT_DATA_BYTES, len);
        }
        done += len;
        base += len;
    }
    return done;
}

static __always_inline void nt_emit_gap(struct nt_io_args *a, u64 conn_id, u64 start, u64 n,
                                        u32 tgid);

/* Tail-call target: go on with the copy in iov_cursor. */
int nt_iov_step(void *ctx)
{
    u32 zero = 0;
    struct nt_iov_cursor *cur = iov_cursor.lookup(&zero);
    struct nt_data_event *ev = scratch.lookup(&zero);
    if (!cur || !ev)
        return 0;
    /* Every value is read back from the cursor (map memory) in each iteration: the
     * verifier then knows nothing carried over, and checks one iteration's shape. */
    for (int i = 0; i < NT_MAX_PIECES; i++) {
        if (cur->done >= cur->total || cur->done >= cur->bound)
            break;
        u64 src;
        u64 n = cur->total - cur->done;
        if (cur->a.iovcnt) {
            if (cur->iov_off >= cur->iov_len) {
                if (cur->iov_idx >= cur->a.iovcnt)
                    break; /* the iovecs hold less than the syscall moved (changed since) */
                struct nt_iovec iov = {};
                if (bpf_probe_read_user(&iov, sizeof(iov),
                                        (void *)(cur->a.buf + (u64)cur->iov_idx * sizeof(iov))))
                    break;
                cur->iov_idx++;
                cur->iov_base = iov.base;
                cur->iov_len = iov.len;
                cur->iov_off = 0;
                continue;
            }
            src = cur->iov_base + cur->iov_off;
            if (cur->iov_len - cur->iov_off < n)
                n = cur->iov_len - cur->iov_off;
        } else {
            src = cur->a.buf + cur->done;
        }
        if (cur->bound - cur->done < n)
            n = cur->bound - cur->done;
        if (n > NT_MAX_CHUNK)
            n = NT_MAX_CHUNK;
        ev->len = n; /* laundered, as in nt_emit_buffer */
        u32 len = *(volatile u32 *)&ev->len;
        if (len > NT_MAX_CHUNK) /* n > 0 here: every term of its minimum is */
            break;
        ev->offset = cur->start + cur->done;
        if (bpf_probe_read_user(ev->data, len, (void *)src)) {
            nt_count(NT_DROP_READ_FAULT, 1);
        } else if (nt_ring_out_data(ev, NT_DATA_HDR_SIZE + len, 0)) {
            nt_count(NT_DROP_RINGBUF_DATA, 1);
            nt_count(NT_DROP_RINGBUF_DATA_BYTES, len);
        } else {
            nt_count(NT_STAT_DATA_RECORDS, 1);
            nt_count(NT_STAT_DATA_BYTES, len);
        }
        cur->done += len;
        cur->iov_off += len;
    }
    if (cur->done >= cur->total) {
        nt_lost_in_chain(cur, ev->conn_id);
        return 0;
    }
    if (cur->done < cur->bound && (!cur->a.iovcnt || cur->iov_off < cur->iov_len ||
                                   cur->iov_idx < cur->a.iovcnt))
        iov_progs.call(ctx, 0);
    /* reached when the copy stops here: the bound, the iovecs, or the tail-call chain */
    u64 rest = cur->total - cur->done;
    if (cur->done >= cur->bound) {
        nt_count(NT_STAT_BOUND_SKIPPED_BYTES, rest);
        struct nt_io_args a = cur->a;
        a.sc |= NT_GAP_BOUND;
        nt_emit_gap(&a, ev->conn_id, cur->start + cur->done, rest, a.key >> 32);
    } else if (cur->a.iovcnt && cur->iov_off >= cur->iov_len && cur->iov_idx >= cur->a.iovcnt) {
        nt_count(NT_DROP_IOV_BYTES, rest);
    } else {
        nt_count(NT_DROP_TRUNCATED_BYTES, rest);
    }
    nt_lost_in_chain(cur, ev->conn_id);
    return 0;
}

/* Small iovec syscalls (a server writing a response's head and body as two iovecs) are
 * copied into one record, in one program: no tail call per iovec, one ring-buffer record
 * where there would be one per iovec, and one record less for the agent to decode.
 * Returns 0 when the syscall is not small enough (its bytes are not all in the first
 * NT_SMALL_IOVS iovecs): the caller then copies it iovec by iovec. */
#define NT_SMALL_IO 4096
#define NT_SMALL_IOVS 8

static __always_inline int nt_emit_small_iov(struct nt_data_event *ev, struct nt_io_args *a,
                                             u64 total, u64 start)
{
    u32 fill = 0;
    for (int i = 0; i < NT_SMALL_IOVS; i++) {
        if (fill >= total || i >= a->iovcnt)
            break;
        struct nt_iovec iov = {};
        if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(a->buf + (u64)i * sizeof(iov))))
            return 0;
        u64 n = total - fill;
        if (iov.len < n)
            n = iov.len;
        ev->len = n; /* laundered, as in nt_emit_buffer */
        u32 len = *(volatile u32 *)&ev->len;
        if (len > NT_SMALL_IO)
            return 0;
        /* fill < total <= NT_SMALL_IO: the mask only shows the verifier the bound */
        if (bpf_probe_read_user(ev->data + (fill & (NT_SMALL_IO - 1)), len, (void *)iov.base))
            return 0;
        fill += len;
    }
    if (fill != total)
        return 0;
    ev->len = fill;
    u32 len = *(volatile u32 *)&ev->len;
    if (len > NT_SMALL_IO)
        return 0;
    ev->offset = start;
    if (nt_ring_out_data(ev, NT_DATA_HDR_SIZE + len, 1)) {
        nt_count(NT_DROP_RINGBUF_DATA, 1);
        nt_count(NT_DROP_RINGBUF_DATA_BYTES, len);
    } else {
        nt_count(NT_STAT_DATA_RECORDS, 1);
        nt_count(NT_STAT_DATA_BYTES, len);
    }
    return 1;
}

static __always_inline void nt_emit_gap(struct nt_io_args *a, u64 conn_id, u64 start, u64 n,
                                        u32 tgid)
{
    u32 zero = 0;
    struct nt_data_event *ev = scratch.lookup(&zero); /* a header only: no stack for 16 KiB */
    if (!ev)
        return;
    ev->kind = NT_EV_GAP;
    ev->dir = a->dir;
    ev->syscall = a->sc;
    ev->len = n;
    ev->conn_id = conn_id;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->offset = start;
    ev->tgid = tgid;
    ev->_pad = (u32)a->key;
    if (nt_ring_out(ev, NT_DATA_HDR_SIZE))
        nt_count(NT_DROP_RINGBUF_CONTROL, 1);
}

/* Copy the `ret` bytes a data syscall moved on connection c (its arguments in a). */
static __always_inline int nt_io(void *ctx, long ret, struct nt_conn *c, struct nt_io_args *a)
{
    u32 tgid = a->key >> 32;
    u64 start = __sync_fetch_and_add(&c->off[a->dir & 1], (u64)ret);
#ifdef NT_TLS
    if (nt_tls_cipher(c, a, ret, start)) /* bpf/tls_state.c: its plaintext comes instead */
        return 0;
#endif
    if (c->flags & NT_CONN_MUTED) {
        nt_count(NT_STAT_MUTED_BYTES, ret);
        return 0;
    }
    struct nt_data_event *ev = nt_stage(a, c->id, tgid);
    if (!ev)
        return 0;
    u64 lost_before = nt_lost_records();
    if ((u64)ret <= NT_BOUND_FLOOR) {
        if (!a->iovcnt) {
            nt_emit_buffer(ev, a->buf, ret, start); /* 4 pieces at most: all of it */
            nt_lost_since(c, lost_before);
            return 0;
        }
        if ((u64)ret <= NT_SMALL_IO && nt_emit_small_iov(ev, a, ret, start)) {
            nt_lost_since(c, lost_before);
            return 0;
        }
    }
    u32 zero = 0;
    struct nt_iov_cursor *cur = iov_cursor.lookup(&zero);
    if (!cur)
        return 0;
    u64 bound = nt_cfg(NT_CFG_COPY_BOUND);
    cur->a = *a;
    cur->start = start;
    cur->total = ret;
    cur->done = 0;
    cur->bound = bound ? bound : ~0ULL;
    cur->iov_idx = 0;
    cur->iov_base = 0;
    cur->iov_len = 0;
    cur->iov_off = 0;
    cur->lost_before = lost_before;
    if (!a->iovcnt) {
        /* the first pieces here, without a tail call (a response of up to 1.1 MiB) */
        u64 first = ret;
        if (first > cur->bound)
            first = cur->bound;
        cur->done = nt_emit_buffer(ev, a->buf, first, start);
        if (cur->done >= (u64)ret) {
            nt_lost_since(c, lost_before);
            return 0;
        }
    }
    iov_progs.call(ctx, 0);
    nt_count(NT_DROP_IOV_BYTES, ret - cur->done); /* the tail call failed: not copied */
    return 0;
}

/* A data syscall with a buffer or an iovec array (iovcnt > 0) on fd. */
static __always_inline int nt_io_fd(void *ctx, long ret, u64 fd, u64 buf, u32 iovcnt, u8 dir,
                                    u16 sc)
{
    struct nt_io_args a = {};
    struct nt_conn *c = nt_conn_of_fd(fd, &a.key);
    if (!c)
        return 0;
    if (dir == NT_DIR_INGRESS && (c->flags & NT_CONN_NOADDR))
        nt_addr_at_read(a.key, c); /* bpf/conn_addr.c: before the data records */
    a.buf = buf;
    a.iovcnt = iovcnt;
    a.dir = dir;
    a.sc = sc;
    return nt_io(ctx, ret, c, &a);
}

/* The start of an exit handler of a syscall that returns a byte count: nothing to do
 * when it moved nothing (EAGAIN on a non-blocking socket is the common case). */
#define NT_MOVED_OR_RETURN(ret)                                                                \
    long ret = (long)ctx->args[1];                                                             \
    if (ret <= 0)                                                                              \
        return 0;

/* ---- exit handlers, by syscall (syscall_dispatch.c calls them by number) ---- */

/* A read or readv: on a tracked connection, its bytes; on another fd, the file position
 * it moved (sendfile_source.c). */
static __always_inline int nt_read_fd(void *ctx, long ret, u64 fd, u64 buf, u32 iovcnt, u16 sc)
{
    struct nt_io_args a = {};
    struct nt_conn *c = nt_conn_of_fd(fd, &a.key);
    if (!c) {
        nt_file_advance(a.key, ret);
        return 0;
    }
    if (c->flags & NT_CONN_NOADDR)
        nt_addr_at_read(a.key, c); /* bpf/conn_addr.c: before the data records */
    a.buf = buf;
    a.iovcnt = iovcnt;
    a.dir = NT_DIR_INGRESS;
    a.sc = sc;
    return nt_io(ctx, ret, c, &a);
}

/* read(fd, buf, count), write(fd, buf, count) */
NT_EXIT(read)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_read_fd(ctx, ret, s.a[0], s.a[1], 0, NT_SC_READ);
}

NT_EXIT(write)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_io_fd(ctx, ret, s.a[0], s.a[1], 0, NT_DIR_EGRESS, NT_SC_WRITE);
}

/* recvfrom(fd, ubuf, size, flags, addr, addrlen) */
NT_EXIT(recvfrom)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    if (s.a[3] & NT_MSG_PEEK) {
        /* the same bytes are read again later: copying them now would duplicate them */
        u64 key;
        if (nt_conn_of_fd(s.a[0], &key))
            nt_count(NT_STAT_PEEK_CALLS, 1);
        return 0;
    }
    return nt_io_fd(ctx, ret, s.a[0], s.a[1], 0, NT_DIR_INGRESS, NT_SC_RECVFROM);
}

/* sendto(fd, buff, len, flags, addr, addrlen) */
NT_EXIT(sendto)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_io_fd(ctx, ret, s.a[0], s.a[1], 0, NT_DIR_EGRESS, NT_SC_SENDTO);
}

/* readv(fd, vec, vlen), writev(fd, vec, vlen) */
NT_EXIT(readv)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_read_fd(ctx, ret, s.a[0], s.a[1], s.a[2] ? (u32)s.a[2] : 1, NT_SC_READV);
}

NT_EXIT(writev)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_io_fd(ctx, ret, s.a[0], s.a[1], s.a[2] ? (u32)s.a[2] : 1, NT_DIR_EGRESS,
                    NT_SC_WRITEV);
}

static __always_inline int nt_msg(void *ctx, long ret, u64 fd, u64 umsg, u32 flags, u8 dir,
                                  u16 sc)
{
    struct nt_io_args a = {};
    struct nt_conn *c = nt_conn_of_fd(fd, &a.key);
    if (!c)
        return 0;
    if (dir == NT_DIR_INGRESS && (flags & NT_MSG_PEEK)) {
        nt_count(NT_STAT_PEEK_CALLS, 1);
        return 0;
    }
    if (dir == NT_DIR_INGRESS && (c->flags & NT_CONN_NOADDR))
        nt_addr_at_read(a.key, c); /* bpf/conn_addr.c: before the data records */
    /* the kernel writes back msg_namelen, msg_controllen and msg_flags, never the iovecs */
    struct nt_user_msghdr m = {};
    if (bpf_probe_read_user(&m, sizeof(m), (void *)umsg))
        return 0;
    a.buf = m.iov;
    a.iovcnt = m.iovlen ? (u32)m.iovlen : 1;
    a.dir = dir;
    a.sc = sc;
    return nt_io(ctx, ret, c, &a);
}

/* recvmsg(fd, msg, flags), sendmsg(fd, msg, flags) */
NT_EXIT(recvmsg)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_msg(ctx, ret, s.a[0], s.a[1], s.a[2], NT_DIR_INGRESS, NT_SC_RECVMSG);
}

NT_EXIT(sendmsg)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_msg(ctx, ret, s.a[0], s.a[1], s.a[2], NT_DIR_EGRESS, NT_SC_SENDMSG);
}
