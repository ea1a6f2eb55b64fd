"""gRPC messages as JSON, with the message types of a FileDescriptorSet (`--proto-descriptors
FILE`, as `protoc --include_imports --descriptor_set_out=FILE` writes it): the capture's
output, export (JSONL and HAR) and replay's field-by-field comparison use it.

A call's types come from its :path "/package.Service/Method" (input type for request
messages, output type for responses); a message that does not parse as its type, or a
method the set does not hold, renders as None (the bytes are still there).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from nodetap.errors import ConfigError

_HOW = "write one with protoc --include_imports --descriptor_set_out=FILE"


class Renderer:
    """Renders messages of the services in one FileDescriptorSet; call it as
    render(path, is_request, data) -> JSON value or None."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ConfigError(f"--proto-descriptors {path}: {e.strerror}; {_HOW}") from None
        fds = descriptor_pb2.FileDescriptorSet()
        try:
            fds.ParseFromString(raw)
        except DecodeError:
            raise ConfigError(
                f"--proto-descriptors {path}: not a FileDescriptorSet; {_HOW}"
            ) from None
        if not fds.file:
            raise ConfigError(f"--proto-descriptors {path}: holds no .proto files; {_HOW}")
        self.pool = descriptor_pool.DescriptorPool()
        self._add_all(list(fds.file))
        self._types: dict[tuple[str, bool], Any] = {}

    def _add_all(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        """Add the files dependencies first; a dependency the set lacks is taken from the
        well-known types protobuf ships (google/protobuf/*.proto)."""
        by_name = {f.name: f for f in files}
        done: set[str] = set()

        def add(name: str, trail: tuple[str, ...]) -> None:
            if name in done or name in trail:
                return
            f = by_name.get(name)
            if f is None:
                try:
                    known = descriptor_pool.Default().FindFileByName(name)
                except KeyError:
                    raise ConfigError(
                        f"--proto-descriptors {self.path}: {name} is imported but not in the "
                        f"set; {_HOW}"
                    ) from None
                f = descriptor_pb2.FileDescriptorProto()
                known.CopyToProto(f)
            for dep in f.dependency:
                add(dep, (*trail, name))
            self.pool.Add(f)
            done.add(name)

        for f in files:
            add(f.name, ())

    def _type(self, path: str, is_request: bool) -> Any:
        key = (path, is_request)
        if key in self._types:
            return self._types[key]
        cls = None
        service, _, method = path.strip("/").partition("/")
        try:
            m = self.pool.FindServiceByName(service).methods_by_name[method]
            cls = message_factory.GetMessageClass(m.input_type if is_request else m.output_type)
        except KeyError:
            pass
        self._types[key] = cls
        return cls

    def __call__(self, path: str, is_request: bool, data: bytes) -> Any:
        cls = self._type(path, is_request)
        if cls is None:
            return None
        try:
            msg = cls.FromString(data)
        except DecodeError:
            return None
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)

    def annotate(self, d: dict[str, Any]) -> dict[str, Any]:
        """Add requestJson and responseJson beside the messages of a gRPC pair's JSON
        mapping (readers of the mapping ignore unknown fields); d is returned."""
        g = d.get("grpc")
        if not isinstance(g, dict):
            return d
        import base64

        path = f"/{g.get('service', '')}/{g.get('method', '')}"
        for key, out, req in (
            ("requestMessages", "requestJson", True),
            ("responseMessages", "responseJson", False),
        ):
            g[out] = [self(path, req, base64.b64decode(m)) for m in g.get(key) or ()]
        return d
