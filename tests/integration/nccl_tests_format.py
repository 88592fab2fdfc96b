"""A reader of nccl-tests' stdout, written from nccl-tests' own printf formats (src/util.cu:
writeDeviceReport, writeResultHeader, writeBenchmarkLinePreamble/Body, writeResultFooter) the
way cluster tooling reads all_reduce_perf logs: '#' lines are comments except the ones it
knows, and every other non-empty line is a row of 13 fields (14 with -S timestamps).

It is strict on purpose: a line it does not know, a column header that differs from
nccl-tests', or a cell that is not a number makes it raise FormatError, so a test that feeds
it fgbench's output fails if fgbench drifts from nccl-tests' format."""
import re

# nccl-tests' column header and units lines, as writeResultHeader prints them (without -I).
GROUPS = ("# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place"
          "          " % ("", "", "", "", ""))


def header_line(time_label):
    return ("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s" %
            ("size", "count", "type", "redop", "root", time_label, "algbw", "busbw", "#wrong",
             time_label, "algbw", "busbw", "#wrong"))


UNITS = ("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s" %
         ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)",
          "(GB/s)", ""))

TYPES = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float", "double",
         "bfloat16", "f8e4m3", "f8e5m2"}
OPS = {"sum", "prod", "max", "min", "avg", "mulsum", "none"}

PARAMS = re.compile(r"^# nThread (\d+) nGpus (\d+) minBytes (\d+) maxBytes (\d+) step: "
                    r"(\d+)\((factor|bytes)\) warmup iters: (\d+) iters: (\d+) agg iters: (\d+) "
                    r"validation: (\d+) graph: (\d+)(?: unalign: (\d+))?\s*$")
DEVICE = re.compile(r"^#  Rank +(\d+) Group +(\d+) Pid +(\d+) on +(\S+) device +(-?\d+) "
                    r"\[([^]]*)\] (.*)$")
OOB = re.compile(r"^# Out of bounds values : (\d+) (OK|FAILED)\s*$")
AVG = re.compile(r"^# Avg bus bandwidth    : (\S+)\s*(OK|FAILED)?\s*$")
START = re.compile(r"^# Collective test starting: (\S+)\s*$")
END = re.compile(r"^# Collective test concluded: (\S+)\s*$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


class FormatError(ValueError):
    pass


def _number(text, line):
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"not a number: {text!r} in {line!r}") from None


def _group(fields, line):
    time, algbw, busbw, wrong = fields
    return {"time": _number(time, line), "algbw": _number(algbw, line),
            "busbw": _number(busbw, line),
            "wrong": None if wrong == "N/A" else int(_number(wrong, line))}


def parse_row(line):
    f = line.split()
    stamp = None
    if len(f) == 15 and STAMP.match(f"{f[13]} {f[14]}"):
        stamp, f = f"{f[13]} {f[14]}", f[:13]
    if len(f) != 13:
        raise FormatError(f"a row has 13 fields, this one {len(f)}: {line!r}")
    if f[2] not in TYPES or f[3] not in OPS:
        raise FormatError(f"unknown type or redop in {line!r}")
    return {"size": int(f[0]), "count": int(f[1]), "type": f[2], "redop": f[3],
            "root": int(f[4]), "out_of_place": _group(f[5:9], line),
            "in_place": _group(f[9:13], line), "timestamp": stamp}


def parse(text):
    """Every test in the text, in order: {program, params, devices, time_label, rows,
    out_of_bounds, ok, avg_busbw}."""
    tests, t = [], None
    for line in text.splitlines():
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.startswith("#"):
            if t is None or t.get("time_label") is None:
                raise FormatError(f"a row before the table's header: {line!r}")
            t["rows"].append(parse_row(line))
            continue
        if m := START.match(line):
            t = {"program": m.group(1), "params": None, "devices": [], "time_label": None,
                 "rows": [], "out_of_bounds": None, "ok": None, "avg_busbw": None}
            tests.append(t)
        elif t is None:
            continue  # comments before the first test
        elif m := PARAMS.match(line):
            g = m.groups()
            t["params"] = {"nthreads": int(g[0]), "ngpus": int(g[1]), "minbytes": int(g[2]),
                           "maxbytes": int(g[3]), "step": int(g[4]), "step_kind": g[5],
                           "warmup": int(g[6]), "iters": int(g[7]), "agg": int(g[8]),
                           "check": int(g[9])}
        elif m := DEVICE.match(line):
            t["devices"].append({"rank": int(m.group(1)), "pid": int(m.group(3)),
                                 "host": m.group(4), "device": int(m.group(5))})
        elif line.rstrip() == GROUPS.rstrip():
            pass
        elif line.startswith("#       size"):
            for label in ("time", "cputime"):
                if line.rstrip().startswith(header_line(label).rstrip()):
                    t["time_label"] = label
            if t["time_label"] is None:
                raise FormatError(f"not nccl-tests' column header: {line!r}")
        elif line.startswith("#        (B)"):
            if not line.rstrip().startswith(UNITS.rstrip()):
                raise FormatError(f"not nccl-tests' units line: {line!r}")
        elif m := OOB.match(line):
            t["out_of_bounds"], t["ok"] = int(m.group(1)), m.group(2) == "OK"
        elif m := AVG.match(line):
            t["avg_busbw"] = _number(m.group(1), line)
        elif m := END.match(line):
            if m.group(1) != t["program"]:
                raise FormatError(f"{line!r} ends a test that started as {t['program']}")
    return tests
