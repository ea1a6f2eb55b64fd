"""Debian's apache2 (mpm_event) on a free loopback port, with its own config in a tmp
dir: static files, EnableSendfile on or off (off: Apache maps the file and writes it with
writev, up to 4 MiB per call), an access log of the body bytes it sent (%B)."""

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
LogFormat "%m %U %>s %B" sent
CustomLog {root}/access.log sent
"""


Apache = StaticServer


def available() -> bool:
    return os.access(BINARY, os.X_OK) and (MODULES / "mod_mpm_event.so").exists()


@contextlib.contextmanager
def apache(files: dict[str, bytes], sendfile: bool) -> Iterator[StaticServer]:
    def command(root: Path, port: int) -> list[str]:
        conf = root / "apache2.conf"
        conf.write_text(
            CONF.format(root=root, port=port, modules=MODULES, sendfile="On" if sendfile else "Off")
        )
        return [BINARY, "-f", str(conf), "-DFOREGROUND"]

    # SIGTERM: stop (a graceful stop would wait for keep-alive connections)
    with static_server("apache", files, command, signal.SIGTERM, stop_timeout=15) as server:
        yield server
