from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("topics", "last_event_id")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    LAST_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedScalarFieldContainer[str]
    last_event_id: str
    def __init__(self, topics: _Optional[_Iterable[str]] = ..., last_event_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "topic", "type", "time", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    topic: str
    type: str
    time: float
    data: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., topic: _Optional[str] = ..., type: _Optional[str] = ..., time: _Optional[float] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
