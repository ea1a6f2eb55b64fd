"""A Flask app for gunicorn (tests/support/peers/gunicorn_server.py): large bodies answered in
one write, uploads read whole, small follow-ups."""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/big/<int:n>")
def big(n: int) -> Response:
    # one bytes object: gunicorn's sync worker sends it with one sendall()
    return Response(bytes(i % 251 for i in range(n)), mimetype="application/octet-stream")


@app.post("/upload")
def upload() -> str:
    return f"got {len(request.get_data())}"


@app.get("/small/<name>")
def small(name: str) -> str:
    return f"small {name}"
