/* syscall_dispatch.c: one raw tracepoint on syscall entry and one on exit, dispatching by
 * syscall number to the handlers of the syscalls nodetap follows.
 *
 * Why not one `syscalls:sys_enter_<name>` tracepoint per syscall: each of those runs
 * through perf's tracepoint glue (a sample record is built and its arguments copied
 * before the program runs), and that glue cost most of what capture cost a busy server:
 * with trivial programs on 20 per-syscall tracepoints nginx lost ~17% of its requests per
 * second under wrk, against no measurable loss with these two raw tracepoints, whose
 * programs the kernel calls directly. A syscall without a handler costs one failed tail
 * call here (and a read of its saved number at exit); the handlers then work as the
 * per-syscall programs did, reading arguments from the saved user registers (common.h).
 *
 * The loader fills the two program arrays, indexed by this architecture's syscall
 * numbers (agent/syscalls.py).
 */

#define NT_MAX_SYSCALL_NR 512
BPF_PROG_ARRAY(sys_enter_progs, NT_MAX_SYSCALL_NR);
BPF_PROG_ARRAY(sys_exit_progs, NT_MAX_SYSCALL_NR);

RAW_TRACEPOINT_PROBE(sys_enter)
{
    sys_enter_progs.call(ctx, (u32)ctx->args[1]);
    return 0; /* no handler for this syscall */
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    if (!nt_tgid_tracked(bpf_get_current_pid_tgid()))
        return 0; /* no handler would act on it (common.h: tracked_tgids) */
    long nr = nt_sys_nr_at_exit(ctx);
    if (nr < 0 || nr >= NT_MAX_SYSCALL_NR)
        return 0;
    sys_exit_progs.call(ctx, (u32)nr);
    return 0;
}
