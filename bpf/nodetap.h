/* nodetap.h: the records and constants shared by nodetap's BPF programs and the agent.
 *
 * agent/bpf_layout.py mirrors every struct here with ctypes; tests/agent/test_bpf_layout.py
 * compiles this header with the host compiler and checks that sizes and offsets agree.
 * Change both together.
 *
 * Only fixed-width UAPI types are used, so the header compiles the same in BCC (kernel
 * side) and with <linux/types.h> (user side).
 */
#ifndef NODETAP_H
#define NODETAP_H

/* Payload bytes in one data record. A syscall that moved more bytes is split across
 * records (never cut silently): see NT_MAX_PIECES. Power of two. */
#define NT_MAX_CHUNK 16384
/* Records one syscall may produce: its bytes beyond NT_MAX_PIECES pieces are not copied,
 * but the stream offset still advances, so the agent sees (and flags) a gap, and the
 * kernel counts NT_DROP_TRUNCATED. Each iovec starts a new piece. */
#define NT_MAX_PIECES 72
/* iovecs looked at per readv/writev/sendmsg/recvmsg. */
#define NT_MAX_IOV 32
/* Slots of the tracked_tgids array (a power of two; tgid modulo this). */
#define NT_TGID_SLOTS 65536
/* Words per CPU in the ring_committed array (one 64-byte cache line each). */
#define NT_COMMITTED_STRIDE 8

/* kind: the first byte of every ring-buffer record. */
#define NT_EV_OPEN 1  /* a connection the agent should track (accept/connect) */
#define NT_EV_CLOSE 2 /* close() of a tracked fd */
#define NT_EV_DATA 3  /* bytes read or written on a tracked connection */
#define NT_EV_GAP 4   /* bytes moved that could not be copied (sendfile, mmsg) */
#define NT_EV_ADDR 5  /* a connection's addresses, once known (client: local; accepted
                         without a sockaddr: both, at its first read or its close) */

/* role of the traced process on the connection */
#define NT_ROLE_UNKNOWN 0
#define NT_ROLE_CLIENT 1 /* connect(): the process opened the connection */
#define NT_ROLE_SERVER 2 /* accept(): the process accepted it */

/* direction, relative to the traced process */
#define NT_DIR_EGRESS 0  /* write/send */
#define NT_DIR_INGRESS 1 /* read/recv */

/* conn flags */
#define NT_CONN_MUTED 1   /* the agent asked not to copy bytes (not a protocol it parses) */
#define NT_CONN_NOADDR 2  /* accept() without a sockaddr: addresses not known yet (bpf/conn_addr.c) */
#define NT_CONN_CLOSED 4  /* closed, but its CLOSE record was lost: kept so that the agent can
                             read the final offsets; ignored by the data programs */
#define NT_CONN_LOST 8    /* a data record of it was lost to a full ring buffer (counted once:
                             NT_DROP_RINGBUF_DATA_CONNECTIONS) */

/* Syscall ids carried in data records (for statistics and debugging). */
#define NT_SC_READ 1
#define NT_SC_WRITE 2
#define NT_SC_READV 3
#define NT_SC_WRITEV 4
#define NT_SC_RECVFROM 5
#define NT_SC_SENDTO 6
#define NT_SC_RECVMSG 7
#define NT_SC_SENDMSG 8
#define NT_SC_SENDFILE 9
#define NT_SC_SENDMMSG 10
#define NT_SC_RECVMMSG 11

/* Indexes of the per-CPU counters map `counters`: every place data can be lost has one. */
#define NT_DROP_RINGBUF_DATA 0       /* data records lost: ring buffer full (for data records:
                                        only its reserved room left, common.h) */
#define NT_DROP_RINGBUF_DATA_BYTES 1 /* their payload bytes */
#define NT_DROP_RINGBUF_CONTROL 2    /* open/close/gap records lost: ring buffer full */
#define NT_DROP_TRUNCATED_BYTES 3    /* bytes past NT_MAX_PIECES pieces of one syscall */
#define NT_DROP_IOV_BYTES 4          /* bytes in iovecs past NT_MAX_IOV */
#define NT_DROP_READ_FAULT 5         /* bpf_probe_read_user failed (pieces) */
#define NT_DROP_SENDFILE_BYTES 6     /* bytes sent by sendfile from a file whose path or
                                        position the programs do not know */
#define NT_DROP_MMSG_CALLS 7         /* sendmmsg/recvmmsg calls on tracked connections */
#define NT_DROP_CONN_TABLE_FULL 8    /* connections not tracked: conns map full */
#define NT_STAT_CONNS_OPENED 9       /* connections tracked */
#define NT_STAT_CONNS_FILTERED 10    /* connections skipped by the pid/cgroup/port filters */
#define NT_STAT_DATA_RECORDS 11      /* data records written */
#define NT_STAT_DATA_BYTES 12        /* payload bytes written */
#define NT_STAT_MUTED_BYTES 13       /* bytes on muted connections (not copied, on purpose) */
#define NT_STAT_PEEK_CALLS 14        /* MSG_PEEK reads skipped (the bytes are read again) */
#define NT_DROP_RINGBUF_DATA_CONNECTIONS 15 /* connections that lost data records to a full
                                               ring buffer (each counted once) */
#define NT_STAT_RESERVED_ROOM_RECORDS 16    /* control records written into the room reserved
                                               for them (data was being refused) */
#define NT_STAT_ADDR_AT_READ 17   /* connections accepted without a sockaddr whose addresses a
                                     read reported (bpf/conn_addr.c) */
#define NT_STAT_ADDR_CONFLICTS 18 /* reads that saw two sockets: addresses not reported then */
#define NT_STAT_SENDFILE_FILE_BYTES 19 /* bytes sent by sendfile, described by file and range
                                          (NT_EV_SENDFILE): the agent reads them there */
#define NT_STAT_BOUND_SKIPPED_BYTES 20 /* bytes of one syscall past NT_CFG_COPY_BOUND: not
                                          copied on purpose (a body past --max-body) */
#define NT_STAT_FILES_OPENED 21        /* open/openat of tracked processes recorded */
/* issue 21, TLS plaintext through uprobes (bpf/tls_state.c, bpf/tls_openssl.c) */
#define NT_STAT_TLS_CALLS 22           /* SSL_read/SSL_write calls tied to a tracked connection */
#define NT_STAT_TLS_PLAIN_BYTES 23     /* plaintext bytes of those calls (copied or not) */
#define NT_STAT_TLS_CIPHER_BYTES 24    /* ciphertext bytes of TLS connections: not copied, on
                                          purpose (their plaintext is) */
#define NT_STAT_TLS_CONNS 25           /* connections found to be TLS */
#define NT_STAT_TLS_UNTIED_CALLS 26    /* SSL calls of tracked processes that moved bytes but
                                          made no read/write on a tracked connection and whose
                                          SSL was never tied to one (memory BIOs, filtered
                                          connections) */
#define NT_DROP_TLS_TRUNCATED_BYTES 27 /* plaintext bytes of one call past NT_MAX_PIECES
                                          pieces (or unreadable): an NT_EV_TLS_GAP */
#define NT_NCOUNTERS 28

/* config array indexes (u64 values) */
#define NT_CFG_FILTER_PIDS 0    /* nonzero: only tgids in filter_pids */
#define NT_CFG_FILTER_PORTS 1   /* nonzero: only connections with a port in filter_ports */
#define NT_CFG_FILTER_CGROUPS 2 /* nonzero: only cgroup v2 ids in filter_cgroups */
#define NT_CFG_SELF_TGID 3      /* the agent itself: never traced */
#define NT_CFG_ARMED 4          /* zero until the agent has filled the maps: track nothing */
#define NT_CFG_COPY_BOUND 5     /* bytes of one syscall copied at most (0: no bound); the
                                   rest is reported as an NT_GAP_BOUND gap */
#define NT_NCONFIG 6

/* A tracked connection, keyed by (tgid << 32 | fd). */
struct nt_conn {
    __u64 id;     /* unique per agent run: kernel ids count up from 1; ids the agent
                     assigns (connections found in /proc) have bit 63 set */
    __u64 off[2]; /* bytes moved so far, per direction: the next record's stream offset */
    __u8 role;
    __u8 flags;
    __u16 family;
    __u32 _pad;
};

/* NT_EV_OPEN and NT_EV_CLOSE */
struct nt_conn_event {
    __u8 kind;
    __u8 role;
    __u16 family; /* AF_INET or AF_INET6; 0 when unknown (accept without sockaddr) */
    __u32 tgid;
    __u64 conn_id;
    __u64 ts_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
    __u32 fd;
    __u16 lport; /* host byte order */
    __u16 rport;
    __u8 laddr[16]; /* IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d) */
    __u8 raddr[16];
    __u64 off[2];   /* bytes per direction (at close) */
    __u64 cgroup_id;
    char comm[16];
};

/* NT_EV_DATA and NT_EV_GAP: a header, then `len` payload bytes (DATA only). */
struct nt_data_event {
    __u8 kind;
    __u8 dir;
    __u16 syscall;
    __u32 len; /* payload bytes in this record (DATA), or bytes missing (GAP) */
    __u64 conn_id;
    __u64 ts_ns;
    __u64 offset; /* stream offset of the first byte, in this direction */
    __u32 tgid;
    __u32 _pad;
    __u8 data[NT_MAX_CHUNK];
};

#define NT_DATA_HDR_SIZE 40

/* ---- issue 18: sendfile bodies, bounded copies ---- */

/* NT_EV_GAP records whose syscall field has this bit: the bytes were not copied on
 * purpose, past NT_CFG_COPY_BOUND (the agent set it from --max-body): the message they
 * fall in is `truncated`, not `gap`. */
#define NT_GAP_BOUND 32768 /* bit 15 */

/* NT_EV_SENDFILE: the bytes sendfile() moved, described by where they came from: the
 * file's path as the process opened it, and the range. The agent reads them there. */
#define NT_EV_SENDFILE 7
#define NT_PATH_MAX 256
#define NT_AT_FDCWD -100

/* A file a tracked process opened (open/openat), by (tgid << 32 | fd): its path as
 * passed to the syscall and its file position, while the programs can follow it. */
struct nt_file {
    __u64 pos;       /* file position (pos_known) */
    __s32 dirfd;     /* openat's dirfd (NT_AT_FDCWD: the working directory) */
    __u16 path_len;  /* bytes of path, with its NUL */
    __u8 pos_known;  /* 0 after a syscall that moves the position unseen */
    __u8 _pad;
    char path[NT_PATH_MAX];
};

struct nt_sendfile_event {
    __u8 kind;      /* NT_EV_SENDFILE */
    __u8 dir;       /* NT_DIR_EGRESS */
    __u16 syscall;  /* NT_SC_SENDFILE */
    __u32 len;      /* bytes sent */
    __u64 conn_id;
    __u64 ts_ns;
    __u64 offset;   /* stream offset of the first byte */
    __u32 tgid;
    __u32 fd;       /* out_fd */
    __u64 file_off; /* file offset of the first byte */
    __s32 in_fd;
    __s32 dirfd;
    __u16 path_len;
    __u16 _pad[3];
    char path[NT_PATH_MAX];
};

/* ---- issue 21: TLS plaintext (bpf/tls_state.c, bpf/tls_openssl.c) ---- */

/* NT_EV_TLS_DATA: plaintext an SSL_read/SSL_write call moved on a TLS connection, as a
 * struct nt_data_event whose `offset` counts plaintext bytes in this direction (its own
 * stream, from 0) and whose `syscall` field holds NT_TLS_FN_*. NT_EV_TLS_GAP: the same
 * header, `len` plaintext bytes not copied (NT_GAP_BOUND set: past the copy bound). Once a
 * connection is TLS (NT_CONN_TLS) its ciphertext is not copied (NT_STAT_TLS_CIPHER_BYTES):
 * its NT_EV_DATA records stop and its CLOSE offsets stay ciphertext offsets. */
#define NT_EV_TLS_DATA 8
#define NT_EV_TLS_GAP 9

/* conn flag: the connection carries TLS (a ClientHello at its start, or an SSL call read or
 * wrote on it) */
#define NT_CONN_TLS 16

/* the function of an NT_EV_TLS_DATA/GAP record (its syscall field) */
#define NT_TLS_FN_SSL_READ 1
#define NT_TLS_FN_SSL_WRITE 2
#define NT_TLS_FN_SSL_READ_EX 3
#define NT_TLS_FN_SSL_WRITE_EX 4
#define NT_TLS_FN_GO_READ 5  /* crypto/tls.(*Conn).Read (bpf/tls_go.c) */
#define NT_TLS_FN_GO_WRITE 6 /* crypto/tls.(*Conn).Write */

#endif /* NODETAP_H */
