"""Debian's apache2 (mpm_event) on a free loopback port, with its own config in a tmp
dir: static files, EnableSendfile on or off (off: Apache maps the file and writes it with
writev, up to 4 MiB per call), a CGI script run by mod_cgid (/cgi-bin/echo.py), an access
log of the body bytes it sent (%B)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.static_files import StaticServer, static_server

BINARY = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")

CONF = """
ServerRoot "{root}"
ServerName 127.0.0.1
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule mime_module {modules}/mod_mime.so
LoadModule alias_module {modules}/mod_alias.so
LoadModule cgid_module {modules}/mod_cgid.so
ScriptSock {root}/cgid.sock
ScriptAlias /cgi-bin/ "{root}/cgi-bin/"
TypesConfig /etc/mime.types
Listen 127.0.0.1:{port}
PidFile {root}/apache2.pid
ErrorLog {root}/error.log
Mutex file:{root}
User nobody
Group nogroup
StartServers 1
ServerLimit 1
ThreadsPerChild 8
MaxRequestWorkers 8
KeepAlive On
EnableSendfile {sendfile}
EnableMMAP On
DocumentRoot "{root}/www"
<Directory "{root}/www">
    Require all granted
</Directory>
<Directory "{root}/cgi-bin">
    Require all granted
</Directory>
LogFormat "%m %U %>s %B" sent
CustomLog {root}/access.log sent
"""


# The CGI: GET ?N answers N bytes of a known pattern (no Content-Length: Apache sends it
# chunked on a keep-alive connection); POST answers "got N SHA256" of the body it read.
CGI = """#!/usr/bin/python3
import hashlib, os, sys
out = sys.stdout.buffer
if os.environ["REQUEST_METHOD"] == "POST":
    body = sys.stdin.buffer.read(int(os.environ["CONTENT_LENGTH"]))
    answer = b"got %d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
else:
    n = int(os.environ.get("QUERY_STRING") or 0)
    answer = bytes(i % 251 for i in range(n))
out.write(b"Content-Type: application/octet-stream\\r\\n\\r\\n")
for i in range(0, len(answer), 65536):  # several writes: several chunks on the wire
    out.write(answer[i : i + 65536])
    out.flush()
"""


def cgi_body(n: int) -> bytes:
    """What the CGI answers to GET /cgi-bin/echo.py?n."""
    return bytes(i % 251 for i in range(n))


Apache = StaticServer


def available() -> bool:
    return os.access(BINARY, os.X_OK) and all(
        (MODULES / f"mod_{m}.so").exists() for m in ("mpm_event", "cgid", "alias")
    )


@contextlib.contextmanager
def apache(files: dict[str, bytes], sendfile: bool) -> Iterator[StaticServer]:
    def command(root: Path, port: int) -> list[str]:
        cgi = root / "cgi-bin"
        cgi.mkdir()
        (cgi / "echo.py").write_text(CGI)
        (cgi / "echo.py").chmod(0o755)
        conf = root / "apache2.conf"
        conf.write_text(
            CONF.format(root=root, port=port, modules=MODULES, sendfile="On" if sendfile else "Off")
        )
        return [BINARY, "-f", str(conf), "-DFOREGROUND"]

    # SIGTERM: stop (a graceful stop would wait for keep-alive connections)
    with static_server("apache", files, command, signal.SIGTERM, stop_timeout=15) as server:
        yield server
