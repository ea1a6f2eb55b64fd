"""A Flask app serving the files of $NODETAP_FILES with send_file (run it under
gunicorn: its sync workers send a file response with os.sendfile and an offset)."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response, abort, send_file

app = Flask(__name__)
ROOT = Path(os.environ.get("NODETAP_FILES", "."))


@app.get("/<name>")
def serve(name: str) -> Response:
    path = ROOT / name
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="application/octet-stream")
