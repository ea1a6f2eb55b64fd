"""TLS plaintext capture (issue 21): which processes use which TLS library, uprobes attached
once per library file, and the plaintext records fed to the connections they belong to.

- elf.py: the sections and defined symbols of an ELF file (sans-IO over a file object)
- maps.py: the files a process maps (/proc/PID/maps), TLS libraries among them
- classify.py: a process's TLS library (OpenSSL, static OpenSSL/BoringSSL, Go) and whether
  it can be hooked, and if not why
- go_rets.py: the RET instructions of Go's crypto/tls (*Conn).Read (objdump)
- attach.py: uprobes on SSL_read/SSL_write(_ex) or Go's (*Conn).Read/Write, once per file
  (inode), reference-counted
- coverage.py: the targeted processes, rescanned (bounded), their coverage table and metric
- records.py: NT_EV_TLS_DATA/GAP records as plaintext data of their connection
"""
