"""libfg.so exports its API and nothing else: the functions include/fg declares (with
FG_EXTERN), no internal name, no C++ template instance of the gloo backend."""
import glob
import os
import re
import subprocess

from conftest import BUILD

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
HEADERS = sorted(glob.glob(os.path.join(ROOT, "include", "fg", "*.h")))


def declared():
    """Every function the public headers declare: {name: declared with FG_EXTERN}."""
    names = {}
    for path in HEADERS:
        text = re.sub(r"/\*.*?\*/", "", open(path).read(), flags=re.S)
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
        text = text.replace('extern "C" {', "")  # its '}' comes after every declaration
        # Declarations end in ';' at brace depth 0; typedefs and enums are not functions.
        depth, start = 0, 0
        for i, ch in enumerate(text):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if ch == ";" and depth == 0:
                decl = " ".join(text[start:i].split())
                start = i + 1
                m = re.match(r"(.*?)\b(fg_\w+)\s*\(", decl)
                if m and not decl.startswith("typedef"):
                    names[m.group(2)] = "FG_EXTERN" in m.group(1)
    return names


def exported():
    lib = os.path.join(BUILD, "lib", "libfg.so")
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


def test_headers_mark_every_declaration_for_export():
    names = declared()
    assert len(names) > 50, f"found only {sorted(names)} in {HEADERS}"
    unmarked = sorted(n for n, marked in names.items() if not marked)
    assert not unmarked, f"declared in include/fg without FG_EXTERN: {unmarked}"


def test_libfg_so_exports_exactly_the_declared_functions():
    names, syms = set(declared()), exported()
    extra = [s for s in syms if s not in names]
    missing = sorted(names - set(syms))
    assert not extra, (f"libfg.so exports {len(extra)} symbols include/fg does not declare "
                       f"(make them static, or hidden: -fvisibility=hidden): {extra[:40]}")
    assert not missing, f"include/fg declares what libfg.so does not export: {missing}"
