/* sendfile_source.c: where the bytes of a sendfile() come from.
 *
 * sendfile(out_fd, in_fd, offset, count) copies file pages to the socket inside the
 * kernel: no user buffer ever holds them, so nothing can be copied at the syscall's exit.
 * The bytes are still in the file, though: the sendfile exit (uncopied_io.c) describes
 * them by the file's path and the range (an NT_EV_SENDFILE record), and the agent reads
 * them there (agent/sendfile_bodies.py).
 *
 * Which file in_fd names is not in any syscall argument, and the design rule of
 * common.h (no internal kernel struct is read) forbids asking the kernel's file table.
 * So the programs remember what tracked processes open: the path an open/openat passed
 * (user memory, read at the syscall's exit, where the return value is the new fd) and
 * the file position as the process moves it (0 after open, lseek's result, advanced by
 * read/readv and by sendfile without an offset pointer, as Go's ServeFile calls it).
 * Only processes already looked at (common.h: tracked_tgids) pay for this, on their
 * opens, seeks and non-socket reads; close() and dup2/dup3 forget the fd.
 *
 * Files opened before the capture started, through another fd (dup, fork) or by a
 * syscall not followed here (openat2, io_uring) are unknown: their sendfile bytes stay a
 * counted gap (NT_DROP_SENDFILE_BYTES). A position moved by a syscall not followed here
 * (preadv2 with -1, a position shared with another process) would be wrong: only
 * sendfile with an offset pointer (nginx, Apache, Python's socket.sendfile) does not
 * depend on it.
 */

/* LRU: an fd left open forever (a log file) ages out instead of filling the table. */
BPF_TABLE("lru_hash", u64, struct nt_file, open_files, 16384);
/* Staging for an nt_file (too large for the BPF stack beside the rest). */
BPF_PERCPU_ARRAY(file_scratch, struct nt_file, 1);

/* The fd of (this process) key is no longer what was opened: forget it. */
static __always_inline void nt_file_forget(u64 key) { open_files.delete(&key); }

/* read/readv of n bytes on a non-socket fd of a tracked process: its position moved. */
static __always_inline void nt_file_advance(u64 key, u64 n)
{
    struct nt_file *f = open_files.lookup(&key);
    if (f)
        f->pos += n;
}

/* O_TMPFILE's own bit (uapi asm-generic/fcntl.h): the path names the directory, not the
 * file, which has no name */
#define NT_O_TMPFILE_BIT 020000000

/* open(path, flags, mode) / openat(dirfd, path, flags, mode) returned fd `ret`. */
static __always_inline int nt_file_opened(long ret, s32 dirfd, u64 upath, u64 flags)
{
    if (ret < 0)
        return 0;
    if (flags & NT_O_TMPFILE_BIT) {
        u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (u32)ret;
        nt_file_forget(key);
        return 0;
    }
    u32 zero = 0;
    struct nt_file *f = file_scratch.lookup(&zero);
    if (!f)
        return 0;
    long n = bpf_probe_read_user_str(f->path, sizeof(f->path), (void *)upath);
    u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (u32)ret;
    if (n <= 0 || n >= NT_PATH_MAX) {
        /* unreadable, or a longer path (cut: it would name another file) */
        nt_file_forget(key);
        return 0;
    }
    f->path_len = n;
    f->pos = 0;
    f->pos_known = 1;
    f->dirfd = dirfd;
    open_files.update(&key, f);
    nt_count(NT_STAT_FILES_OPENED, 1);
    return 0;
}

/* openat(dirfd, filename, flags, mode) */
NT_EXIT(openat)
{
    long ret = (long)ctx->args[1];
    if (ret < 0)
        return 0;
    NT_ARGS_OR_RETURN(s);
    return nt_file_opened(ret, (s32)s.a[0], s.a[1], s.a[2]);
}

/* open(filename, flags, mode) (x86-64 only; glibc and Go call openat) */
NT_EXIT(open)
{
    long ret = (long)ctx->args[1];
    if (ret < 0)
        return 0;
    NT_ARGS_OR_RETURN(s);
    return nt_file_opened(ret, NT_AT_FDCWD, s.a[0], s.a[1]);
}

/* lseek(fd, offset, whence) returns the new position. */
NT_EXIT(lseek)
{
    long ret = (long)ctx->args[1];
    if (ret < 0)
        return 0;
    NT_ARGS_OR_RETURN(s);
    u64 key = (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (u32)s.a[0];
    struct nt_file *f = open_files.lookup(&key);
    if (f) {
        f->pos = ret;
        f->pos_known = 1;
    }
    return 0;
}
