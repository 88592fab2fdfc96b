"""Writes awkward output for the output-integrity tests: emit.py MODE.

binary     every byte value, many times, no final newline, on stdout
partial    "first line\\nno newline at the end" on stdout
longline   a 300000-byte line without a newline, then "\\nend\\n"
flood      2000 lines of 1000 characters naming the rank, on stdout and stderr,
           each in three pieces
many       20000 short lines on stdout (for a reader that goes away)
"""
import os
import sys

mode = sys.argv[1]
rank = os.environ.get("RANK", "?")
out = sys.stdout.buffer

if mode == "binary":
    out.write(bytes(range(256)) * 400 + b"\r\n\x00tail without newline")
elif mode == "partial":
    out.write(b"first line\nno newline at the end")
elif mode == "longline":
    out.write(b"x" * 300000 + b"\nend\n")
elif mode == "flood":
    # each line leaves in three write(2)s, so fgrun's reads end mid-line all the time
    for i in range(2000):
        line = ((f"{rank}:{i}:" + rank * 1000)[:1000] + "\n").encode()
        fd = 2 if i % 2 else 1
        for piece in (line[:7], line[7:600], line[600:]):
            os.write(fd, piece)
elif mode == "many":
    for i in range(20000):
        out.write(b"line %d\n" % i)
out.flush()
