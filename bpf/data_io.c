/* data_io.c: the bytes read and written on tracked connections.
 *
 * Everything happens at the syscall's exit (syscall_dispatch.c): one hash lookup is all
 * a read or write on an untracked fd costs, and a syscall that moved nothing (EAGAIN)
 * costs less. The bytes the syscall moved (its return value) are copied into
 * variable-size ring-buffer records, split into pieces of at most NT_MAX_CHUNK bytes,
 * each with its stream offset. Bytes that cannot be copied still advance the offset,
 * so the agent always sees where a gap is.
 */

/* Where an iovec syscall's copy stands, carried across tail calls (per CPU: a tail
 * call runs on the CPU of its caller, with nothing in between). */
struct nt_iov_cursor {
    struct nt_io_args a;
    u64 start; /* stream offset of the syscall's first byte */
    u64 total; /* bytes the syscall moved */
    u64 done;  /* bytes handled so far */
    u32 iov_idx;
    u32 _pad;
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
/* nt_iov_step, one iovec per call: a loop over iovecs nested around the loop over
 * pieces is more than the verifier can prove; a tail call per iovec keeps each program
 * to one loop. The loader puts nt_iov_step at index 0. */
BPF_PROG_ARRAY(iov_progs, 1);

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

/* Tail-call target: copy the next iovec of the syscall in iov_cursor. */
int nt_iov_step(void *ctx)
{
    u32 zero = 0;
    struct nt_iov_cursor *cur = iov_cursor.lookup(&zero);
    struct nt_data_event *ev = scratch.lookup(&zero);
    if (!cur || !ev)
        return 0;
    struct nt_iovec iov = {};
    bpf_probe_read_user(&iov, sizeof(iov), (void *)(cur->a.buf + (u64)cur->iov_idx * sizeof(iov)));
    u64 want = cur->total - cur->done;
    if (iov.len < want)
        want = iov.len;
    u64 done = nt_emit_buffer(ev, iov.base, want, cur->start + cur->done);
    if (done < want)
        nt_count(NT_DROP_TRUNCATED_BYTES, want - done);
    cur->done += want;
    cur->iov_idx++;
    if (cur->done < cur->total && cur->iov_idx < cur->a.iovcnt && cur->iov_idx < NT_MAX_IOV)
        iov_progs.call(ctx, 0);
    /* reached only when no further tail call happened: the syscall's last step */
    if (cur->done < cur->total)
        nt_count(NT_DROP_IOV_BYTES, cur->total - cur->done);
    if (nt_lost_records() != cur->lost_before) {
        struct nt_conn *c = nt_conn_of(cur->a.key);
        if (c && c->id == ev->conn_id)
            nt_lost_since(c, cur->lost_before);
    }
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
    if (a->sc == NT_SC_SENDFILE) {
        /* the file's bytes never pass through a user buffer */
        nt_count(NT_DROP_SENDFILE_BYTES, ret);
        nt_emit_gap(a, c->id, start, ret, tgid);
        return 0;
    }
    if (c->flags & NT_CONN_MUTED) {
        nt_count(NT_STAT_MUTED_BYTES, ret);
        return 0;
    }
    struct nt_data_event *ev = nt_stage(a, c->id, tgid);
    if (!ev)
        return 0;
    u64 lost_before = nt_lost_records();
    if (!a->iovcnt) {
        u64 done = nt_emit_buffer(ev, a->buf, ret, start);
        if (done < (u64)ret)
            nt_count(NT_DROP_TRUNCATED_BYTES, ret - done);
        nt_lost_since(c, lost_before);
        return 0;
    }
    if ((u64)ret <= NT_SMALL_IO && nt_emit_small_iov(ev, a, ret, start)) {
        nt_lost_since(c, lost_before);
        return 0;
    }
    u32 zero = 0;
    struct nt_iov_cursor *cur = iov_cursor.lookup(&zero);
    if (!cur)
        return 0;
    cur->a = *a;
    cur->start = start;
    cur->total = ret;
    cur->done = 0;
    cur->iov_idx = 0;
    cur->lost_before = lost_before;
    iov_progs.call(ctx, 0);
    nt_count(NT_DROP_IOV_BYTES, ret); /* the tail call failed: nothing was copied */
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

/* read(fd, buf, count), write(fd, buf, count) */
NT_EXIT(read)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_io_fd(ctx, ret, s.a[0], s.a[1], 0, NT_DIR_INGRESS, NT_SC_READ);
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
    return nt_io_fd(ctx, ret, s.a[0], s.a[1], s.a[2] ? (u32)s.a[2] : 1, NT_DIR_INGRESS,
                    NT_SC_READV);
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
