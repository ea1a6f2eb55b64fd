"""Debian's apache2 (mpm_event) on a free loopback port, with its own config in a tmp
dir: static files, EnableSendfile on or off (off: Apache maps the file and writes it with
writev, up to 4 MiB per call), an access log of the body bytes it sent (%B)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

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


@dataclass
class Apache:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[tuple[str, str, int, int]]:
        """(method, path, status, body bytes sent) per request served."""
        out = []
        for line in (self.root / "access.log").read_text().splitlines():
            method, uri, status, sent = line.split()
            out.append((method, uri, int(status), int(sent)))
        return out


def available() -> bool:
    return os.access(BINARY, os.X_OK) and (MODULES / "mod_mpm_event.so").exists()


@contextlib.contextmanager
def apache(files: dict[str, bytes], sendfile: bool) -> Iterator[Apache]:
    root = Path(tempfile.mkdtemp(prefix="nodetap-apache-"))
    root.chmod(0o755)
    (root / "www").mkdir()
    for name, data in files.items():
        (root / "www" / name).write_bytes(data)
    port = free_port()
    conf = root / "apache2.conf"
    conf.write_text(
        CONF.format(root=root, port=port, modules=MODULES, sendfile="On" if sendfile else "Off")
    )
    proc = subprocess.Popen(
        [BINARY, "-f", str(conf), "-DFOREGROUND"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield Apache(port, root, proc)
    finally:
        proc.send_signal(signal.SIGTERM)  # stop (graceful-stop waits for keep-alives)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
