"""Protobuf messages as jq-friendly JSON: 64-bit integers as numbers, zeros present.

The canonical proto3 JSON mapping writes 64-bit integers as strings and leaves fields at
their default value out; `snapshot list --json | jq '.count > 0'` then compares a string
or null. Every proto3 JSON parser accepts numbers for 64-bit fields, so the output stays
readable by protobuf tools.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def message_dict(msg: Message) -> dict[str, Any]:
    d = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
    return _numbers(msg.DESCRIPTOR, d)


def message_json(msg: Message) -> str:
    return json.dumps(message_dict(msg))


def _numbers(desc: Any, d: dict[str, Any]) -> dict[str, Any]:
    for f in desc.fields:
        key = f.json_name
        if key not in d:
            continue
        if f.type in _INT64:
            d[key] = [int(v) for v in d[key]] if isinstance(d[key], list) else int(d[key])
        elif f.message_type is not None and not f.message_type.GetOptions().map_entry:
            if f.message_type.full_name.startswith("google.protobuf."):
                continue  # well-known types have their own JSON forms
            subs = d[key] if isinstance(d[key], list) else [d[key]]
            for sub in subs:
                _numbers(f.message_type, sub)
    return d
