// A Node.js http server answering every request with one res.end() of SIZE bytes; with
// LOG, a line per request answered: METHOD URL CLIENT_PORT BODY_BYTES.
// Usage: node node_bigwrite.js PORT SIZE [LOG]
const fs = require("fs");
const http = require("http");
const port = Number(process.argv[2]);
const size = Number(process.argv[3]);
const log = process.argv[4];
const body = Buffer.alloc(size);
for (let i = 0; i < size; i++) body[i] = i % 251;
http
  .createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.setHeader("Content-Type", "application/octet-stream");
      res.end(body, () => {
        if (log) fs.appendFileSync(log, `${req.method} ${req.url} ${req.socket.remotePort} ${size}\n`);
      });
    });
  })
  .listen(port, "127.0.0.1");
