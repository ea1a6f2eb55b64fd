// A Node.js HTTPS server: node node_tls_server.js PORT CERT KEY (Node's TLS writes through
// memory BIOs: nodetap reports it as not covered).
const fs = require("fs");
const https = require("https");
const [port, cert, key] = process.argv.slice(2);
https
  .createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    res.end("hello from node\n");
  })
  .listen(Number(port), "127.0.0.1");
