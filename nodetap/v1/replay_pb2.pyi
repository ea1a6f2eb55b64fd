from nodetap.v1 import rrpair_pb2 as _rrpair_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_DONE: _ClassVar[RunState]
    RUN_STATE_STOPPED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_DONE: RunState
RUN_STATE_STOPPED: RunState
RUN_STATE_FAILED: RunState

class StartRequest(_message.Message):
    __slots__ = ("plan", "pair")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PAIR_FIELD_NUMBER: _ClassVar[int]
    plan: PlanSpec
    pair: _rrpair_pb2.RRPair
    def __init__(self, plan: _Optional[_Union[PlanSpec, _Mapping]] = ..., pair: _Optional[_Union[_rrpair_pb2.RRPair, _Mapping]] = ...) -> None: ...

class PlanSpec(_message.Message):
    __slots__ = ("plan_json", "run_id", "share", "shares")
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    plan_json: str
    run_id: str
    share: int
    shares: int
    def __init__(self, plan_json: _Optional[str] = ..., run_id: _Optional[str] = ..., share: _Optional[int] = ..., shares: _Optional[int] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("run_id", "pairs")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    pairs: int
    def __init__(self, run_id: _Optional[str] = ..., pairs: _Optional[int] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("stopped",)
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    stopped: bool
    def __init__(self, stopped: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunStatus(_message.Message):
    __slots__ = ("run_id", "state", "elapsed_s", "sent", "errors", "mismatched", "conntrack_count", "conntrack_max", "conntrack_throttled", "cpu_throttled_periods", "report_json", "error")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MISMATCHED_FIELD_NUMBER: _ClassVar[int]
    CONNTRACK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONNTRACK_MAX_FIELD_NUMBER: _ClassVar[int]
    CONNTRACK_THROTTLED_FIELD_NUMBER: _ClassVar[int]
    CPU_THROTTLED_PERIODS_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: RunState
    elapsed_s: float
    sent: int
    errors: int
    mismatched: int
    conntrack_count: int
    conntrack_max: int
    conntrack_throttled: bool
    cpu_throttled_periods: int
    report_json: str
    error: str
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., elapsed_s: _Optional[float] = ..., sent: _Optional[int] = ..., errors: _Optional[int] = ..., mismatched: _Optional[int] = ..., conntrack_count: _Optional[int] = ..., conntrack_max: _Optional[int] = ..., conntrack_throttled: _Optional[bool] = ..., cpu_throttled_periods: _Optional[int] = ..., report_json: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
