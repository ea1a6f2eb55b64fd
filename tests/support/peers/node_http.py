"""A Node.js http server (libuv accepts with a NULL sockaddr) that logs, per request, the
client port Node.js itself saw (req.socket.remotePort): what nodetap's INBOUND RRPairs must
carry. Also Node.js clients (fetch, http.request with a keep-alive agent, pipelining over
a raw socket) that print their local port per request.

Started as a child of the test, stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.json_log import JsonLogServer
from tests.support.servers import free_port

SERVER_JS = r"""
const http = require('http');
const port = Number(process.argv[2]);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = `${req.method} ${req.url} from ${req.socket.remotePort}\n`;
    console.log(JSON.stringify({
      method: req.method, url: req.url, remotePort: req.socket.remotePort,
      remoteAddress: req.socket.remoteAddress, localPort: req.socket.localPort,
      reqBytes: Buffer.concat(chunks).length, status: 200, resBytes: Buffer.byteLength(body),
    }));
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.end(body);
  });
});
server.keepAliveTimeout = 30000;
server.listen(port, '127.0.0.1', () => console.log('ready'));
"""

# argv: mode port n. Prints one JSON line per response: url, status, localPort, bytes.
CLIENT_JS = r"""
const http = require('http');
const net = require('net');
const [mode, port, n] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const out = (o) => console.log(JSON.stringify(o));
async function viaFetch() {
  // undici's pool: keep-alive connections, several requests in flight
  await Promise.all([...Array(n).keys()].map(async (i) => {
    const url = `http://127.0.0.1:${port}/fetch/${i}`;
    const post = i % 2 === 1;
    const r = await fetch(url, {method: post ? 'POST' : 'GET',
                                body: post ? 'x'.repeat(i * 10) : undefined});
    const text = await r.text();
    out({url: `/fetch/${i}`, status: r.status, bytes: Buffer.byteLength(text)});
  }));
}
function viaRequest() {
  const agent = new http.Agent({keepAlive: true, maxSockets: 3});
  return Promise.all([...Array(n).keys()].map((i) => new Promise((resolve, reject) => {
    const req = http.request({host: '127.0.0.1', port, path: `/request/${i}`, agent,
                              method: 'PUT', headers: {'Content-Type': 'text/plain'}}, (res) => {
      const localPort = res.socket.localPort; // the socket goes back to the pool at 'end'
      let bytes = 0;
      res.on('data', (c) => { bytes += c.length; });
      res.on('end', () => {
        out({url: `/request/${i}`, status: res.statusCode, localPort, bytes});
        resolve();
      });
    });
    req.on('error', reject);
    req.end('body-' + i);
  }))).then(() => agent.destroy());
}
function viaPipeline() {
  // n requests in one write on one connection: HTTP/1.1 pipelining
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      let reqs = '';
      for (let i = 0; i < n; i++) {
        const close = i === n - 1 ? 'Connection: close\r\n' : '';
        reqs += `GET /pipe/${i} HTTP/1.1\r\nHost: 127.0.0.1\r\n${close}\r\n`;
      }
      s.write(reqs);
    });
    let got = '';
    s.on('data', (c) => { got += c.toString('latin1'); });
    s.on('end', () => {
      const statuses = got.match(/HTTP\/1\.1 \d+/g) || [];
      statuses.forEach((st, i) =>
        out({url: `/pipe/${i}`, status: Number(st.slice(9)), localPort: s.localPort}));
      resolve();
    });
    s.on('error', reject);
  });
}
({fetch: viaFetch, request: viaRequest, pipeline: viaPipeline})[mode]().then(
  () => process.exit(0), (e) => { console.error(e); process.exit(1); });
"""


NodeServer = JsonLogServer


@contextlib.contextmanager
def node_server(port: int | None = None) -> Iterator[NodeServer]:
    """A Node.js http server on 127.0.0.1 (a free port unless given)."""
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="nodetap-node-") as tmp:
        script = Path(tmp) / "server.js"
        script.write_text(SERVER_JS)
        proc = subprocess.Popen(["node", str(script), str(port)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == b"ready\n", line
            yield NodeServer(port, proc)
        finally:
            proc.kill()
            proc.wait()


def node_client(mode: str, port: int, n: int) -> list[dict[str, object]]:
    """Run a Node.js client (mode: fetch, request or pipeline) for n requests; its lines."""
    with tempfile.TemporaryDirectory(prefix="nodetap-nodecli-") as tmp:
        script = Path(tmp) / "client.js"
        script.write_text(CLIENT_JS)
        proc = subprocess.run(
            ["node", str(script), mode, str(port), str(n)], capture_output=True, timeout=60
        )
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.splitlines()]
