/* uncopied_io.c: syscalls that move bytes nodetap cannot copy, counted and marked.
 *
 * sendfile() copies file pages to the socket inside the kernel: no user buffer holds
 * them. Its byte count still advances the stream offset and a GAP record tells the
 * agent where the hole is (nginx serving static files with `sendfile on` is the
 * common case). sendmmsg/recvmmsg return a message count, not bytes: on a tracked
 * connection they are counted and a GAP of unknown size (len 0) is reported.
 */

TRACEPOINT_PROBE(syscalls, sys_enter_sendfile64)
{
    return nt_io_enter(args->out_fd, 0, 0, NT_DIR_EGRESS, NT_SC_SENDFILE);
}
TRACEPOINT_PROBE(syscalls, sys_exit_sendfile64) { return nt_io_exit(args, args->ret); }

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

TRACEPOINT_PROBE(syscalls, sys_enter_sendmmsg)
{
    return nt_mmsg(args->fd, NT_DIR_EGRESS, NT_SC_SENDMMSG);
}

TRACEPOINT_PROBE(syscalls, sys_enter_recvmmsg)
{
    return nt_mmsg(args->fd, NT_DIR_INGRESS, NT_SC_RECVMMSG);
}
