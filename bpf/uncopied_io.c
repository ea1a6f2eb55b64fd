/* uncopied_io.c: syscalls that move bytes nodetap cannot copy, described or counted.
 *
 * sendfile() copies file pages to the socket inside the kernel: no user buffer holds
 * them. Its byte count still advances the stream offset; when the programs know the file
 * (sendfile_source.c) an NT_EV_SENDFILE record says where the bytes are (path and range)
 * and the agent reads them there, otherwise a GAP record tells the agent where the hole
 * is. sendmmsg/recvmmsg return a message count, not bytes: on a tracked connection they
 * are counted and a GAP of unknown size (len 0) is reported.
 */

/* Staging for an NT_EV_SENDFILE record (too large for the BPF stack). */
BPF_PERCPU_ARRAY(sendfile_scratch, struct nt_sendfile_event, 1);

/* sendfile(out_fd, in_fd, offset, count): the return value is the byte count. With an
 * offset pointer the kernel has written the offset after the last byte sent back to user
 * memory by the exit, and the file position did not move; without one (NULL) the bytes
 * came from the file position, which moved. */
NT_EXIT(sendfile)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    struct nt_io_args a = {};
    struct nt_conn *c = nt_conn_of_fd(s.a[0], &a.key);
    if (!c)
        return 0;
    a.dir = NT_DIR_EGRESS;
    a.sc = NT_SC_SENDFILE;
    u64 start = __sync_fetch_and_add(&c->off[NT_DIR_EGRESS], (u64)ret);
    if (c->flags & NT_CONN_MUTED) {
        nt_count(NT_STAT_MUTED_BYTES, ret);
        return 0;
    }
    u64 in_key = (a.key & 0xffffffff00000000ULL) | (u32)s.a[1];
    struct nt_file *f = open_files.lookup(&in_key);
    u64 file_off = 0;
    int known = 0;
    if (s.a[2]) {
        u64 after = 0;
        if (!bpf_probe_read_user(&after, sizeof(after), (void *)s.a[2]) && after >= (u64)ret) {
            file_off = after - ret;
            known = 1;
        }
    } else if (f && f->pos_known) {
        file_off = f->pos;
        known = 1;
    }
    if (f && !s.a[2])
        f->pos += ret;
    u32 zero = 0;
    struct nt_sendfile_event *ev = sendfile_scratch.lookup(&zero);
    if (!f || !known || !ev) {
        nt_count(NT_DROP_SENDFILE_BYTES, ret);
        nt_emit_gap(&a, c->id, start, ret, a.key >> 32);
        return 0;
    }
    ev->kind = NT_EV_SENDFILE;
    ev->dir = NT_DIR_EGRESS;
    ev->syscall = NT_SC_SENDFILE;
    ev->len = ret;
    ev->conn_id = c->id;
    ev->ts_ns = bpf_ktime_get_ns();
    ev->offset = start;
    ev->tgid = a.key >> 32;
    ev->fd = (u32)a.key;
    ev->file_off = file_off;
    ev->in_fd = (s32)s.a[1];
    ev->dirfd = f->dirfd;
    ev->path_len = f->path_len;
    __builtin_memcpy(ev->path, f->path, NT_PATH_MAX);
    if (nt_ring_out(ev, sizeof(*ev))) {
        nt_count(NT_DROP_RINGBUF_CONTROL, 1);
        return 0;
    }
    nt_count(NT_STAT_SENDFILE_FILE_BYTES, ret);
    return 0;
}

/* The return value is a message count; when messages moved on a tracked connection,
 * count the call and report a gap of unknown size. */
static __always_inline int nt_mmsg(struct bpf_raw_tracepoint_args *ctx, u8 dir, u16 sc)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    struct nt_io_args a = {};
    struct nt_conn *c = nt_conn_of_fd(s.a[0], &a.key);
    if (!c)
        return 0;
    nt_count(NT_DROP_MMSG_CALLS, 1);
    a.dir = dir;
    a.sc = sc;
    nt_emit_gap(&a, c->id, c->off[dir & 1], 0, a.key >> 32);
    return 0;
}

/* sendmmsg(fd, mmsg, vlen, flags), recvmmsg(fd, mmsg, vlen, flags, timeout) */
NT_EXIT(sendmmsg) { return nt_mmsg(ctx, NT_DIR_EGRESS, NT_SC_SENDMMSG); }

NT_EXIT(recvmmsg) { return nt_mmsg(ctx, NT_DIR_INGRESS, NT_SC_RECVMMSG); }
