"""bpf/nodetap.h and its Python mirror (agent/bpf_layout.py) agree on every size, offset
and constant: the header is compiled with the host C compiler and asked."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent import bpf_layout as L
from agent.loader import BPF_DIR

HEADER = BPF_DIR / "nodetap.h"

STRUCTS = {
    "nt_conn": L.NtConn,
    "nt_conn_event": L.NtConnEvent,
    "nt_data_event": L.NtDataEvent,
    "nt_file": L.NtFile,
    "nt_sendfile_event": L.NtSendfileEvent,
}


def _c_layout(tmp_path: Path) -> dict[str, int]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (gcc) to check the BPF header layout with")
    lines = []
    for cname, cls in STRUCTS.items():
        lines.append(f'printf("{cname}.size=%zu\\n", sizeof(struct {cname}));')
        for fname, *_ in cls._fields_:
            lines.append(f'printf("{cname}.{fname}=%zu\\n", offsetof(struct {cname}, {fname}));')
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n"
        f'#include "{HEADER}"\nint main(void) {{\n' + "\n".join(lines) + "\nreturn 0; }\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([cc, "-o", str(exe), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split("=") for line in out.splitlines())}


def test_struct_sizes_and_offsets_match(tmp_path: Path) -> None:
    c = _c_layout(tmp_path)
    for cname, cls in STRUCTS.items():
        assert c[f"{cname}.size"] == ctypes.sizeof(cls), cname
        for fname, *_ in cls._fields_:
            assert c[f"{cname}.{fname}"] == getattr(cls, fname).offset, f"{cname}.{fname}"
    assert c["nt_data_event.data"] == L.NT_DATA_HDR_SIZE == L.DATA_HDR.size
    assert c["nt_conn_event.size"] == L.CONN_EVENT.size
    assert c["nt_sendfile_event.path"] == L.SENDFILE_EVENT.size


def _defines() -> dict[str, int]:
    out = {}
    for m in re.finditer(r"^#define (NT_\w+) (\d+)", HEADER.read_text(), re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def test_constants_match() -> None:
    d = _defines()
    for name in (
        "NT_MAX_CHUNK", "NT_MAX_PIECES", "NT_MAX_IOV", "NT_EV_OPEN", "NT_EV_CLOSE",
        "NT_EV_DATA", "NT_EV_GAP", "NT_EV_ADDR", "NT_ROLE_CLIENT", "NT_ROLE_SERVER",
        "NT_DIR_EGRESS", "NT_DIR_INGRESS", "NT_DATA_HDR_SIZE", "NT_NCOUNTERS", "NT_NCONFIG",
        "NT_CFG_FILTER_PIDS", "NT_CFG_FILTER_PORTS", "NT_CFG_FILTER_CGROUPS",
        "NT_CFG_SELF_TGID", "NT_CFG_ARMED", "NT_TGID_SLOTS", "NT_COMMITTED_STRIDE",
        "NT_CFG_COPY_BOUND", "NT_GAP_BOUND", "NT_EV_SENDFILE", "NT_PATH_MAX",
        "NT_EV_TLS_DATA", "NT_EV_TLS_GAP", "NT_CONN_TLS", "NT_TLS_FN_SSL_READ",
        "NT_TLS_FN_SSL_WRITE", "NT_TLS_FN_SSL_READ_EX", "NT_TLS_FN_SSL_WRITE_EX",
        "NT_TLS_FN_GO_READ", "NT_TLS_FN_GO_WRITE",
    ):  # fmt: skip
        assert getattr(L, name) == d[name], name


def test_counter_names_follow_header_order() -> None:
    d = _defines()
    indexed = sorted((v, k) for k, v in d.items() if k.startswith(("NT_DROP_", "NT_STAT_")))
    assert [v for v, _ in indexed] == list(range(len(L.COUNTER_NAMES)))
    assert d["NT_NCOUNTERS"] == L.NT_NCOUNTERS == len(L.COUNTER_NAMES)
    for (_, cname), pyname in zip(indexed, L.COUNTER_NAMES, strict=True):
        # NT_DROP_RINGBUF_DATA -> drop_ringbuf_data..., NT_STAT_CONNS_OPENED -> conns_opened
        stem = cname.removeprefix("NT_STAT_").removeprefix("NT_").lower()
        assert pyname.startswith(stem), (cname, pyname)
