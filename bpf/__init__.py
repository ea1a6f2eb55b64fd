"""nodetap's BPF programs, as C sources that BCC compiles on the node (package data).

The capture programs (common.h, conn_lifecycle.c, data_io.c, uncopied_io.c,
syscall_dispatch.c, with nodetap.h; with TLS capture tls_state.c and tls_openssl.c too) are
joined and compiled by agent/loader.py; the
packet-mode socket filter (packet_filter.c) by agent/packet/live.py. Both find the files
through ``importlib.resources.files("bpf")``, so an installed (non-editable) package
works as well as the source tree. This package holds no Python code and imports nothing.
"""
