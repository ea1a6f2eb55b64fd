/* uncopied_io.c: syscalls that move bytes nodetap cannot copy, counted and marked.
 *
 * sendfile() copies file pages to the socket inside the kernel: no user buffer holds
 * them. Its byte count still advances the stream offset and a GAP record tells the
 * agent where the hole is (nginx serving static files with `sendfile on` is the
 * common case). sendmmsg/recvmmsg return a message count, not bytes: on a tracked
 * connection they are counted and a GAP of unknown size (len 0) is reported.
 */

/* sendfile(out_fd, in_fd, offset, count); its exit is nt_exit_io */
NT_ENTER(sendfile)
{
    NT_TRACKED_OR_RETURN();
    NT_ARGS_OR_RETURN(s);
    return nt_io_enter(s.a[0], 0, 0, NT_DIR_EGRESS, NT_SC_SENDFILE);
}

static __always_inline int nt_mmsg(u32 fd, u8 dir, u16 sc)
{
    u64 id = bpf_get_current_pid_tgid();
    u64 key = (id & 0xffffffff00000000ULL) | fd;
    struct nt_conn *c = nt_conn_of(key);
    if (!c)
        return 0;
    nt_count(NT_DROP_MMSG_CALLS, 1);
    struct nt_io_args a = {};
    a.key = key;
    a.dir = dir;
    a.sc = sc;
    nt_emit_gap(&a, c->id, c->off[dir & 1], 0, id >> 32);
    return 0;
}

/* sendmmsg(fd, mmsg, vlen, flags), recvmmsg(fd, mmsg, vlen, flags, timeout) */
NT_ENTER(sendmmsg)
{
    NT_TRACKED_OR_RETURN();
    NT_ARGS_OR_RETURN(s);
    return nt_mmsg(s.a[0], NT_DIR_EGRESS, NT_SC_SENDMMSG);
}

NT_ENTER(recvmmsg)
{
    NT_TRACKED_OR_RETURN();
    NT_ARGS_OR_RETURN(s);
    return nt_mmsg(s.a[0], NT_DIR_INGRESS, NT_SC_RECVMMSG);
}
