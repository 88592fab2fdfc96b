#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_store (tests/fuzz/corpus/): one file per opcode of each
dialect, well formed, plus a few exchanges between sessions (a WAIT woken by another
session's SET, a barrier, a watch, the store token). The input layout is fuzz_store.c's:
a setup byte, then chunks of <header: session | (length - 1) << 2> <bytes>.

    tests/fuzz/make_corpus.py [DIR]      (default: tests/fuzz/corpus next to this script)
"""
import os
import struct
import sys

LEGACY = {"SET": 0, "COMPARE_SET": 1, "GET": 2, "ADD": 3, "CHECK": 4, "WAIT": 5,
          "GETNUMKEYS": 6, "WATCH_KEY": 7, "DELETE_KEY": 8}
V2 = {"VALIDATE": 0, "SET": 1, "COMPARE_SET": 2, "GET": 3, "ADD": 4, "CHECK": 5, "WAIT": 6,
      "GETNUMKEYS": 7, "DELETE_KEY": 8, "APPEND": 9, "MULTI_GET": 10, "MULTI_SET": 11,
      "CANCEL_WAIT": 12, "PING": 13, "QUEUE_PUSH": 14, "QUEUE_POP": 15, "QUEUE_LEN": 16,
      "LIST_KEYS": 17, "BARRIER": 18}
MAGIC = 0x3C85F7CE
TOKEN = b"fuzz-token"


def s(b):
    return struct.pack("<Q", len(b)) + b


def u64(n):
    return struct.pack("<Q", n & (2**64 - 1))


def keys(*ks):
    return u64(len(ks)) + b"".join(s(k) for k in ks)


def body(op):
    """The fields after the opcode byte of a well-formed request."""
    return {
        "VALIDATE": struct.pack("<I", MAGIC),
        "PING": struct.pack("<I", 0x1234),
        "SET": s(b"/k") + s(b"v1"),
        "APPEND": s(b"/k") + s(b"+"),
        "QUEUE_PUSH": s(b"/q") + s(b"item"),
        "COMPARE_SET": s(b"/k") + s(b"v1") + s(b"v2"),
        "GET": s(b"/k"),
        "WATCH_KEY": s(b"/k"),
        "DELETE_KEY": s(b"/k"),
        "QUEUE_POP": s(b"/q"),
        "QUEUE_LEN": s(b"/q"),
        "ADD": s(b"/n") + u64(5),
        "BARRIER": s(b"/b") + u64(2),
        "CHECK": keys(b"/k", b"/n"),
        "WAIT": keys(b"/k"),
        "MULTI_GET": keys(b"/k", b"/n"),
        "MULTI_SET": u64(2) + s(b"/a") + s(b"1") + s(b"/b2") + s(b"2"),
        "GETNUMKEYS": b"", "CANCEL_WAIT": b"", "LIST_KEYS": b"",
    }[op]


def req(table, op):
    return bytes([table[op]]) + body(op)


def chunks(session, data):
    out = b""
    for i in range(0, len(data), 64):
        piece = data[i:i + 64]
        out += bytes([session | (len(piece) - 1) << 2]) + piece
    return out


def token_message():
    return b"FGTK" + struct.pack("<I", len(TOKEN)) + TOKEN


def seeds():
    for op in LEGACY:  # session 0 speaks 1.13; a SET first so that GET finds its key
        pre = req(LEGACY, "SET") + req(LEGACY, "ADD") if op != "SET" else b""
        yield f"legacy-{op.lower()}", bytes([0]) + chunks(0, pre + req(LEGACY, op))
    for op in V2:  # session 0 starts greeted (setup bit 0)
        pre = req(V2, "SET") + req(V2, "ADD") + req(V2, "QUEUE_PUSH") if op != "SET" else b""
        yield f"v2-{op.lower()}", bytes([1]) + chunks(0, pre + req(V2, op))
    # Session 0 waits, session 1 sets, session 0 reads (1.13 and V2).
    yield "legacy-wait-woken", bytes([0]) + chunks(0, bytes([5]) + keys(b"/late")) + \
        chunks(1, bytes([0]) + s(b"/late") + s(b"x")) + chunks(0, bytes([2]) + s(b"/late"))
    yield "v2-barrier-two", bytes([3]) + chunks(0, req(V2, "BARRIER")) + \
        chunks(1, req(V2, "BARRIER")) + bytes([0xfe])
    yield "v2-wait-cancel", bytes([1]) + chunks(0, bytes([6]) + keys(b"/never") + bytes([12]))
    yield "legacy-watch-notify", bytes([0]) + chunks(0, req(LEGACY, "WATCH_KEY")) + \
        chunks(1, req(LEGACY, "SET") + req(LEGACY, "DELETE_KEY"))
    yield "v2-disconnect-while-waiting", bytes([3]) + chunks(0, bytes([6]) + keys(b"/w")) + \
        bytes([0xff]) + chunks(1, bytes([1]) + s(b"/w") + s(b"x"))
    yield "token-required", bytes([0x31]) + chunks(0, req(V2, "SET") + req(V2, "GET"))
    yield "token-raw", bytes([0x10]) + chunks(0, token_message() + req(LEGACY, "GETNUMKEYS"))
    yield "token-wrong", bytes([0x10]) + chunks(0, b"FGTK" + struct.pack("<I", 3) + b"bad")
    yield "token-unasked", bytes([0x00]) + chunks(0, token_message() + req(LEGACY, "ADD"))
    big = bytes([0]) + chunks(0, bytes([0]) + s(b"/big") + s(b"x" * 3000)) + \
        chunks(0, b"".join(bytes([2]) + s(b"/big") for _ in range(40)))
    yield "legacy-pipelined-gets", big
    yield "v2-multi-get-repeated", bytes([1]) + chunks(0, bytes([1]) + s(b"/big") + s(b"y" * 4000)) + \
        chunks(0, bytes([10]) + u64(64) + s(b"/big") * 64)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
