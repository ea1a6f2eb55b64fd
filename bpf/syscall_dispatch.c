/* syscall_dispatch.c: one raw tracepoint on syscall exit, dispatching by syscall number
 * to the exit handlers of the syscalls nodetap follows.
 *
 * Why a raw tracepoint and not one `syscalls:sys_exit_<name>` tracepoint per syscall:
 * each of those runs through perf's tracepoint glue (a sample record is built and its
 * arguments copied before the program runs), and that glue cost most of what capture
 * cost a busy server: with trivial programs on 20 per-syscall tracepoints nginx lost
 * ~17% of its requests per second under wrk. The raw tracepoint's program is called
 * directly.
 *
 * Why exit only: every program on raw_syscalls:sys_enter is paid by every syscall of
 * every process on the node (measured: ~110 ns per syscall for an empty program, about
 * as much as the exit's), and nothing a data syscall does needs its entry: at exit the
 * saved registers still hold the arguments (common.h), and the bytes are there to copy.
 * The few syscalls whose entry matters (accept, connect, close) have per-syscall entry
 * tracepoints in conn_lifecycle.c, whose glue only those rare syscalls pay.
 *
 * The loader attaches nt_sys_exit to raw_syscalls:sys_exit, as a BTF-typed raw
 * tracepoint where the kernel has BTF (common.h: NT_TYPED_REGS), and fills the program
 * array, indexed by this architecture's syscall numbers (agent/syscalls.py), with the
 * handlers, loaded the same way (a tail call needs programs of one kind).
 */

#define NT_MAX_SYSCALL_NR 512
BPF_PROG_ARRAY(sys_exit_progs, NT_MAX_SYSCALL_NR);

int nt_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
    if (!nt_tgid_tracked(bpf_get_current_pid_tgid()))
        return 0; /* no handler would act on it (common.h: tracked_tgids) */
    long nr = nt_sys_nr_at_exit(ctx);
    if (nr < 0 || nr >= NT_MAX_SYSCALL_NR)
        return 0;
    sys_exit_progs.call(ctx, (u32)nr);
    return 0; /* no handler for this syscall */
}
