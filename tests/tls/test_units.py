"""The TLS modules that need no root: ELF inspection of real files (Debian's libssl.so.3 and
nginx), /proc/PID/maps parsing, classification of this process, the plaintext streams and
the status table."""

from __future__ import annotations

import io
import os
import shutil
import struct

from agent.streams import OrderedStream
from agent.tls import elf
from agent.tls.classify import ExeCache, classify
from agent.tls.coverage import describe
from agent.tls.maps import is_libssl, parse_maps, read_maps
from agent.tls.records import PlaintextStream
from cli.commands.status import render_table

LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"


def test_libssl_defines_the_probed_functions() -> None:
    info = elf.inspect_path(LIBSSL, ("SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"))
    assert info is not None
    assert info.defined == {"SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"}


def test_an_executable_importing_ssl_write_does_not_define_it() -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    info = elf.inspect_path(nginx, ("SSL_write", "main"))
    assert info is not None
    assert "SSL_write" not in info.defined  # imported from libssl.so.3, not linked in
    assert ".text" in info.sections and ".go.buildinfo" not in info.sections


def test_not_elf_and_truncated_files_are_none() -> None:
    assert elf.inspect(io.BytesIO(b"#!/bin/sh\necho hi\n")) is None
    head = b"\x7fELF\x02\x01" + b"\0" * 10 + struct.pack("<HHIQQQ", 2, 62, 1, 0, 0, 1 << 40)
    head += b"\0" * (64 - len(head))
    head = head[:58] + struct.pack("<HHH", 64, 3, 1)
    assert elf.inspect_path("/nonexistent") is None
    assert elf.inspect(io.BytesIO(head)) is None  # section table past the end


def test_parse_maps_keeps_files_once() -> None:
    text = (
        "7f00-7f10 r--p 00000000 fd:01 326786 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
        "7f10-7f20 r-xp 00010000 fd:01 326786 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
        "7f20-7f30 rw-p 00000000 00:00 0 \n"
        "7f30-7f40 r-xp 00000000 fd:01 12 /opt/app/bin/server (deleted)\n"
        "7ffc-7ffd rw-p 00000000 00:00 0 [stack]\n"
    )
    files = parse_maps(text)
    assert [(f.path, f.inode) for f in files] == [
        ("/usr/lib/x86_64-linux-gnu/libssl.so.3", 326786),
        ("/opt/app/bin/server", 12),
    ]
    assert is_libssl(files[0].path) and not is_libssl(files[1].path)
    assert is_libssl("/lib/libssl.so.1.1") and is_libssl("/usr/lib/libssl.so")
    assert not is_libssl("/usr/lib/libssl3.so")  # NSS's, not OpenSSL's


def test_this_python_is_classified_by_its_libssl() -> None:
    import ssl  # noqa: F401  (maps libssl.so.3 into this process)

    mapped = read_maps(os.getpid())
    assert mapped
    # without grpcio's module, which another test may have imported into this process
    mapped = [m for m in mapped if "/grpc/_cython/" not in m.path]
    row = classify(os.getpid(), "python3", mapped, ExeCache())
    assert (row.library, row.state) == ("openssl", "hooked"), row
    assert row.target is not None and row.target.symbols[:2] == ("SSL_read", "SSL_write")
    assert describe(row).startswith(f"pid {os.getpid()} (python3): openssl hooked: ")


def test_plaintext_stream_ignores_ciphertext_end_offsets() -> None:
    plain, cipher = PlaintextStream(), OrderedStream()
    for s in (plain, cipher):
        s.push(0, b"hello", 1)
    # a CLOSE record's offsets count ciphertext: no gap in plaintext
    assert plain.close_at(4096, 2) == []
    assert [c.data for c in cipher.close_at(4096, 2)] == [None]


def test_status_table_lists_tls_processes() -> None:
    doc = {
        "pods": [],
        "tls": [
            {"pid": 7, "comm": "nginx", "library": "openssl", "state": "hooked",
             "reason": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "namespace": "", "pod": ""},
            {"pid": 9, "comm": "srv", "library": "go", "state": "not_hooked",
             "reason": "stripped Go binary (no symbols to probe)", "namespace": "shop",
             "pod": "api-1"},
        ],
    }  # fmt: skip
    out = render_table(doc)
    assert "TLS" in out
    assert "shop/api-1" in out and "stripped Go binary" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("7 "))
    assert "openssl" in line and " yes " in line


def test_pod_notes_note_each_process_on_its_pod_until_it_is_gone() -> None:
    from types import SimpleNamespace

    from agent.tls.classify import Coverage
    from agent.tls.coverage import PodNotes

    notes: list[tuple[str, str, str]] = []
    forgot: list[tuple[str, str]] = []
    who = {7: SimpleNamespace(pod_uid="uid-1"), 8: SimpleNamespace(pod_uid="")}
    pods = PodNotes(lambda pid: who[pid], lambda *a: notes.append(a), lambda *a: forgot.append(a))
    pods.row(Coverage(7, "srv", "go", "not_hooked", "stripped Go binary (no symbols to probe)"))
    pods.row(Coverage(8, "host", "openssl", "hooked", "/usr/lib/libssl.so.3"))  # not in a pod
    assert notes == [
        ("uid-1", "tls pid 7", "TLS pid 7 (srv): go not hooked: stripped Go binary (no symbols "
         "to probe)")
    ]  # fmt: skip
    pods.gone(8)
    pods.gone(7)
    pods.gone(7)
    assert forgot == [("uid-1", "tls pid 7")]


def test_go_ret_offsets_from_objdump_output() -> None:
    from agent.tls.go_rets import ret_offsets_from

    text = (
        "\n00000000005ac460 <crypto/tls.(*Conn).Read>:\n"
        "  5ac460:\tcmp    0x10(%r14),%rsp\n"
        "  5ac541:\tret\n"
        "  5ac568:\tret    \n"
        "  5ac570:\tcall   44a8a0 <runtime.deferreturn>\n"
    )
    assert ret_offsets_from(text) == (0xE1, 0x108)
    assert ret_offsets_from("") == ()


def test_grpcio_bundled_boringssl_has_no_symbols_and_is_reported() -> None:
    """grpcio links BoringSSL into its extension module and exports only PyInit_cygrpc:
    nothing to probe. The row says so; the libssl this process maps is still hooked."""
    import ssl  # noqa: F401

    from grpc._cython import cygrpc

    info = elf.inspect_path(cygrpc.__file__, ("SSL_read", "SSL_write", "PyInit_cygrpc"))
    assert info is not None and info.defined == {"PyInit_cygrpc"}
    mapped = read_maps(os.getpid())
    assert mapped
    row = classify(os.getpid(), "python3", mapped, ExeCache())
    assert (row.library, row.state) == ("grpcio", "not_hooked"), row
    assert "grpcio's BoringSSL is linked into cygrpc" in row.reason, row
    assert "without symbols" in row.reason and "libssl.so.3 hooked" in row.reason, row
    assert row.target is not None and row.target.path.endswith("libssl.so.3")
