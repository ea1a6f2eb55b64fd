"""The Python mirror of bpf/nodetap.h: constants, ctypes structs and fast decoders.

tests/agent/test_bpf_layout.py compiles the C header and checks that every size and
offset here agrees with it. Change both together.
"""

from __future__ import annotations

import ctypes
import struct

NT_MAX_CHUNK = 16384
NT_MAX_PIECES = 72
NT_MAX_IOV = 32
NT_TGID_SLOTS = 65536
NT_COMMITTED_STRIDE = 8

NT_EV_OPEN = 1
NT_EV_CLOSE = 2
NT_EV_DATA = 3
NT_EV_GAP = 4
NT_EV_ADDR = 5

NT_ROLE_UNKNOWN = 0
NT_ROLE_CLIENT = 1
NT_ROLE_SERVER = 2

NT_DIR_EGRESS = 0
NT_DIR_INGRESS = 1

NT_CONN_MUTED = 1
NT_CONN_NOADDR = 2
NT_CONN_CLOSED = 4
NT_CONN_LOST = 8

SYSCALL_NAMES = {
    1: "read",
    2: "write",
    3: "readv",
    4: "writev",
    5: "recvfrom",
    6: "sendto",
    7: "recvmsg",
    8: "sendmsg",
    9: "sendfile",
    10: "sendmmsg",
    11: "recvmmsg",
}

# Per-CPU counters, by index (bpf/nodetap.h NT_DROP_* and NT_STAT_*).
COUNTER_NAMES = (
    "drop_ringbuf_data_records",
    "drop_ringbuf_data_bytes",
    "drop_ringbuf_control_records",
    "drop_truncated_bytes",
    "drop_iov_bytes",
    "drop_read_fault_pieces",
    "drop_sendfile_bytes",
    "drop_mmsg_calls",
    "drop_conn_table_full",
    "conns_opened",
    "conns_filtered",
    "data_records",
    "data_bytes",
    "muted_bytes",
    "peek_calls",
    "drop_ringbuf_data_connections",
    "reserved_room_records",
    "addr_at_read_conns",
    "addr_conflicts",
    "sendfile_file_bytes",
    "bound_skipped_bytes",
    "files_opened",
    # issue 21, TLS (bpf/tls_state.c, bpf/tls_openssl.c)
    "tls_calls",
    "tls_plain_bytes",
    "tls_cipher_bytes",
    "tls_conns",
    "tls_untied_calls",
    "drop_tls_truncated_bytes",
)
NT_NCOUNTERS = len(COUNTER_NAMES)

NT_CFG_FILTER_PIDS = 0
NT_CFG_FILTER_PORTS = 1
NT_CFG_FILTER_CGROUPS = 2
NT_CFG_SELF_TGID = 3
NT_CFG_ARMED = 4
NT_CFG_COPY_BOUND = 5
NT_NCONFIG = 6

# Connection ids the agent assigns itself (connections found in /proc) have bit 63 set.
AGENT_CONN_ID_BIT = 1 << 63


class NtConn(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("off", ctypes.c_uint64 * 2),
        ("role", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("family", ctypes.c_uint16),
        ("_pad", ctypes.c_uint32),
    ]


class NtConnEvent(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("role", ctypes.c_uint8),
        ("family", ctypes.c_uint16),
        ("tgid", ctypes.c_uint32),
        ("conn_id", ctypes.c_uint64),
        ("ts_ns", ctypes.c_uint64),
        ("fd", ctypes.c_uint32),
        ("lport", ctypes.c_uint16),
        ("rport", ctypes.c_uint16),
        ("laddr", ctypes.c_uint8 * 16),
        ("raddr", ctypes.c_uint8 * 16),
        ("off", ctypes.c_uint64 * 2),
        ("cgroup_id", ctypes.c_uint64),
        ("comm", ctypes.c_char * 16),
    ]


class NtDataEvent(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("dir", ctypes.c_uint8),
        ("syscall", ctypes.c_uint16),
        ("len", ctypes.c_uint32),
        ("conn_id", ctypes.c_uint64),
        ("ts_ns", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("data", ctypes.c_uint8 * NT_MAX_CHUNK),
    ]


NT_DATA_HDR_SIZE = NtDataEvent.data.offset  # 40

# ---- issue 18: sendfile bodies, bounded copies (bpf/nodetap.h) ----
NT_GAP_BOUND = 0x8000
NT_EV_SENDFILE = 7
NT_PATH_MAX = 256
NT_AT_FDCWD = -100


class NtFile(ctypes.Structure):
    _fields_ = [
        ("pos", ctypes.c_uint64),
        ("dirfd", ctypes.c_int32),
        ("path_len", ctypes.c_uint16),
        ("pos_known", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8),
        ("path", ctypes.c_char * NT_PATH_MAX),
    ]


class NtSendfileEvent(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_uint8),
        ("dir", ctypes.c_uint8),
        ("syscall", ctypes.c_uint16),
        ("len", ctypes.c_uint32),
        ("conn_id", ctypes.c_uint64),
        ("ts_ns", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("fd", ctypes.c_uint32),
        ("file_off", ctypes.c_uint64),
        ("in_fd", ctypes.c_int32),
        ("dirfd", ctypes.c_int32),
        ("path_len", ctypes.c_uint16),
        ("_pad", ctypes.c_uint16 * 3),
        ("path", ctypes.c_char * NT_PATH_MAX),
    ]


# struct.Struct decoders for the hot path (one unpack per record, no ctypes objects).
# DATA/GAP header: kind, dir, syscall, len, conn_id, ts_ns, offset, tgid, fd
DATA_HDR = struct.Struct("<BBHIQQQII")
# OPEN/CLOSE: kind, role, family, tgid, conn_id, ts_ns, fd, lport, rport, laddr, raddr,
# off0, off1, cgroup_id, comm
CONN_EVENT = struct.Struct("<BBHIQQIHH16s16sQQQ16s")

# SENDFILE: the DATA header, then file_off, in_fd, dirfd, path_len (the path follows)
SENDFILE_EVENT = struct.Struct("<BBHIQQQIIQiiH6x")

# ---- issue 21: TLS plaintext (bpf/nodetap.h) ----
# NT_EV_TLS_DATA / NT_EV_TLS_GAP: an NtDataEvent (DATA_HDR) whose offset counts plaintext
# bytes and whose syscall field is an NT_TLS_FN_*
NT_EV_TLS_DATA = 8
NT_EV_TLS_GAP = 9
NT_CONN_TLS = 16
NT_TLS_FN_SSL_READ = 1
NT_TLS_FN_SSL_WRITE = 2
NT_TLS_FN_SSL_READ_EX = 3
NT_TLS_FN_SSL_WRITE_EX = 4
NT_TLS_FN_GO_READ = 5
NT_TLS_FN_GO_WRITE = 6

assert DATA_HDR.size == NT_DATA_HDR_SIZE
assert SENDFILE_EVENT.size == NtSendfileEvent.path.offset
assert CONN_EVENT.size == ctypes.sizeof(NtConnEvent)
