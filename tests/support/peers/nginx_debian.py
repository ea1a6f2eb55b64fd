"""nginx with the HTTP settings of Debian's packaged /etc/nginx/nginx.conf (sendfile on,
tcp_nopush on, gzip on, its mime.types), on a free loopback port, serving `files`, with
an access log of $body_bytes_sent per request."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.static_files import StaticServer, static_server

DEBIAN_CONF = Path("/etc/nginx/nginx.conf")
# the directives of Debian's http block that decide how a static file is sent
DIRECTIVES = ("sendfile", "tcp_nopush", "types_hash_max_size", "default_type", "gzip")

CONF = """
worker_processes 2;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 768; }}
http {{
{debian}
    include /etc/nginx/mime.types;
    log_format sent '$request_method $request_uri $status $body_bytes_sent';
    access_log {root}/access.log sent;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
    }}
}}
"""


def debian_directives() -> list[str]:
    """The lines of Debian's nginx.conf that set DIRECTIVES (as the package ships them)."""
    text = DEBIAN_CONF.read_text()
    out = []
    for name in DIRECTIVES:
        m = re.search(rf"^\s*({name}\s[^;#]*;)", text, re.M)
        if m:
            out.append("    " + m.group(1))
    return out


DebianNginx = StaticServer


@contextlib.contextmanager
def debian_nginx(files: dict[str, bytes]) -> Iterator[StaticServer]:
    def command(root: Path, port: int) -> list[str]:
        conf = root / "nginx.conf"
        conf.write_text(CONF.format(root=root, port=port, debian="\n".join(debian_directives())))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", str(root)]

    with static_server("nginx-debian", files, command, signal.SIGQUIT) as server:
        yield server
