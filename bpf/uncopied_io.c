/* uncopied_io.c: syscalls that move bytes nodetap cannot copy, counted and marked.
 *
 * sendfile() copies file pages to the socket inside the kernel: no user buffer holds
 * them. Its byte count still advances the stream offset and a GAP record tells the
 * agent where the hole is (nginx serving static files with `sendfile on` is the
 * common case). sendmmsg/recvmmsg return a message count, not bytes: on a tracked
 * connection they are counted and a GAP of unknown size (len 0) is reported.
 */

/* sendfile(out_fd, in_fd, offset, count): the return value is the byte count */
NT_EXIT(sendfile)
{
    NT_MOVED_OR_RETURN(ret);
    NT_ARGS_OR_RETURN(s);
    return nt_io_fd(ctx, ret, s.a[0], 0, 0, NT_DIR_EGRESS, NT_SC_SENDFILE);
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
