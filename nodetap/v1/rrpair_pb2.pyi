import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    INBOUND: _ClassVar[Direction]
    OUTBOUND: _ClassVar[Direction]
    NETWORK: _ClassVar[Direction]
DIRECTION_UNSPECIFIED: Direction
INBOUND: Direction
OUTBOUND: Direction
NETWORK: Direction

class Endpoint(_message.Message):
    __slots__ = ("ip", "port")
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ip: str
    port: int
    def __init__(self, ip: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Meta(_message.Message):
    __slots__ = ("node", "pid", "comm", "container_id", "namespace", "pod", "labels", "source", "conn_id", "agent_version", "cluster", "container", "workload")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONN_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    node: str
    pid: int
    comm: str
    container_id: str
    namespace: str
    pod: str
    labels: _containers.ScalarMap[str, str]
    source: str
    conn_id: int
    agent_version: str
    cluster: str
    container: str
    workload: str
    def __init__(self, node: _Optional[str] = ..., pid: _Optional[int] = ..., comm: _Optional[str] = ..., container_id: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., conn_id: _Optional[int] = ..., agent_version: _Optional[str] = ..., cluster: _Optional[str] = ..., container: _Optional[str] = ..., workload: _Optional[str] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HttpRequest(_message.Message):
    __slots__ = ("method", "url", "version", "headers", "body", "body_size", "trailers")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    method: str
    url: str
    version: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    body: bytes
    body_size: int
    trailers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., version: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., body_size: _Optional[int] = ..., trailers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class HttpResponse(_message.Message):
    __slots__ = ("status_code", "status_message", "version", "headers", "body", "body_size", "trailers")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    BODY_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    status_code: int
    status_message: str
    version: str
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    body: bytes
    body_size: int
    trailers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, status_code: _Optional[int] = ..., status_message: _Optional[str] = ..., version: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., body_size: _Optional[int] = ..., trailers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class HttpExchange(_message.Message):
    __slots__ = ("req", "res")
    REQ_FIELD_NUMBER: _ClassVar[int]
    RES_FIELD_NUMBER: _ClassVar[int]
    req: HttpRequest
    res: HttpResponse
    def __init__(self, req: _Optional[_Union[HttpRequest, _Mapping]] = ..., res: _Optional[_Union[HttpResponse, _Mapping]] = ...) -> None: ...

class GrpcCall(_message.Message):
    __slots__ = ("service", "method", "status", "status_message", "encoding", "request_messages", "response_messages")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    service: str
    method: str
    status: int
    status_message: str
    encoding: str
    request_messages: _containers.RepeatedScalarFieldContainer[bytes]
    response_messages: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, service: _Optional[str] = ..., method: _Optional[str] = ..., status: _Optional[int] = ..., status_message: _Optional[str] = ..., encoding: _Optional[str] = ..., request_messages: _Optional[_Iterable[bytes]] = ..., response_messages: _Optional[_Iterable[bytes]] = ...) -> None: ...

class RRPair(_message.Message):
    __slots__ = ("id", "ts", "duration_us", "l7protocol", "direction", "client", "server", "meta", "flags", "ttfb_us", "http", "grpc")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    DURATION_US_FIELD_NUMBER: _ClassVar[int]
    L7PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TTFB_US_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    GRPC_FIELD_NUMBER: _ClassVar[int]
    id: str
    ts: _timestamp_pb2.Timestamp
    duration_us: int
    l7protocol: str
    direction: Direction
    client: Endpoint
    server: Endpoint
    meta: Meta
    flags: _containers.RepeatedScalarFieldContainer[str]
    ttfb_us: int
    http: HttpExchange
    grpc: GrpcCall
    def __init__(self, id: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_us: _Optional[int] = ..., l7protocol: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., client: _Optional[_Union[Endpoint, _Mapping]] = ..., server: _Optional[_Union[Endpoint, _Mapping]] = ..., meta: _Optional[_Union[Meta, _Mapping]] = ..., flags: _Optional[_Iterable[str]] = ..., ttfb_us: _Optional[int] = ..., http: _Optional[_Union[HttpExchange, _Mapping]] = ..., grpc: _Optional[_Union[GrpcCall, _Mapping]] = ...) -> None: ...
