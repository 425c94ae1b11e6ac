"""SQS's documented MD5 digests, written from the SQS Developer Guide and independent of sluice.

MD5OfMessageBody is the MD5 of the body's UTF-8 bytes. MD5OfMessageAttributes (and
MD5OfMessageSystemAttributes) is the MD5 of this encoding of the attributes, sorted by name
(byte order):

    for each attribute:
        len(name) as 4-byte big-endian | name (UTF-8)
        len(DataType) | DataType (UTF-8, custom suffix included: "Number.int")
        transport type: one byte, 1 for String and Number, 2 for Binary
        len(value) | value (UTF-8 of StringValue, or the raw bytes of BinaryValue)
"""

import hashlib
import struct


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8")).hexdigest()


def _field(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def md5_of_attributes(attributes: dict) -> str | None:
    """`attributes` in boto3's shape: {name: {"DataType": ..., "StringValue" | "BinaryValue": ...}}.

    Returns None for no attributes (SQS then leaves the digest out).
    """
    if not attributes:
        return None
    buf = b""
    for name in sorted(attributes, key=lambda n: n.encode("utf-8")):
        a = attributes[name]
        data_type = a["DataType"]
        buf += _field(name.encode("utf-8"))
        buf += _field(data_type.encode("utf-8"))
        if data_type.split(".", 1)[0] == "Binary":
            value = a["BinaryValue"]
            if isinstance(value, str):
                value = value.encode("utf-8")
            buf += b"\x02" + _field(bytes(value))
        else:
            buf += b"\x01" + _field(a["StringValue"].encode("utf-8"))
    return hashlib.md5(buf).hexdigest()
