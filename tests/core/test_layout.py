"""The Rust core's mirror of bpf/nodetap.h agrees with agent/bpf_layout.py (itself checked
against the C header by tests/agent/test_bpf_layout.py)."""

from __future__ import annotations

import ctypes

import nodetap_core

from agent import bpf_layout as L


def test_constants_agree() -> None:
    got = nodetap_core.LAYOUT
    for name in (
        "NT_MAX_CHUNK",
        "NT_EV_OPEN",
        "NT_EV_CLOSE",
        "NT_EV_DATA",
        "NT_EV_GAP",
        "NT_EV_ADDR",
        "NT_ROLE_UNKNOWN",
        "NT_ROLE_CLIENT",
        "NT_ROLE_SERVER",
        "NT_DIR_EGRESS",
        "NT_DIR_INGRESS",
        "NT_DATA_HDR_SIZE",
    ):
        assert got[name] == getattr(L, name), name
    assert got["sizeof_nt_conn_event"] == ctypes.sizeof(L.NtConnEvent)


def test_offsets_agree() -> None:
    got = nodetap_core.LAYOUT
    for struct, prefix in ((L.NtConnEvent, "nt_conn_event"), (L.NtDataEvent, "nt_data_event")):
        names = [f[0] for f in struct._fields_]
        mine = sorted(k.split(".", 1)[1] for k in got if k.startswith(prefix + "."))
        assert mine == sorted(names), prefix
        for name in names:
            assert got[f"{prefix}.{name}"] == getattr(struct, name).offset, f"{prefix}.{name}"
