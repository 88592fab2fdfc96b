#!/usr/bin/env bash
# gen-man.sh [--check] [BUILD_DIR] - regenerates the option sections of docs/man/*.1 from the
# programs' --help.
#
# Each page is hand-written (NAME, SYNOPSIS, DESCRIPTION, EXAMPLES, EXIT STATUS, ENVIRONMENT,
# SEE ALSO) around one generated block, between the lines
#     .\" BEGIN GENERATED FROM --help by scripts/gen-man.sh
#     .\" END GENERATED
# which this script rewrites from `PROGRAM --help` and, for programs whose help lists
# subcommands or scenarios, from `PROGRAM NAME --help` for each. Edit the help text in the
# program, run this, and the page follows; tests/integration/test_docs.py checks that every
# flag of every --help is in the page.
#
#   --check   write nothing; exit 1 and name the pages that are out of date
set -euo pipefail

CHECK=0
if [ "${1:-}" = "--check" ]; then CHECK=1; shift; fi
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "$BUILD/bin" 2>/dev/null && pwd) || { echo "gen-man: $BUILD/bin is missing; run make first" >&2; exit 2; }
PY=${PYTHON:-/usr/bin/python3}

exec "$PY" - "$ROOT/docs/man" "$BIN" "$CHECK" <<'EOF'
import os, re, subprocess, sys

man_dir, bin_dir, check = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
BEGIN = '.\\" BEGIN GENERATED FROM --help by scripts/gen-man.sh'
END = '.\\" END GENERATED'
# Headings in a --help whose entries have a --help of their own, and the section they get.
SUBCOMMANDS = {"subcommands:": "SUBCOMMANDS", "scenarios:": "SCENARIOS"}
# Text that belongs to the hand-written part or changes from build to build.
DROP = (re.compile(r"^Exit status:"), re.compile(r"^backends in this build:"))
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")


def help_of(prog, *args):
    r = subprocess.run([os.path.join(bin_dir, prog), *args, "--help"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.strip():
        sys.exit(f"gen-man: {prog} {' '.join(args)} --help failed: {r.stderr.strip()}")
    return r.stdout


def esc(text):
    """Text for a roff line: backslashes, flags' minus signs, a leading dot or quote."""
    text = text.replace("\\", "\\e")
    text = FLAG.sub(lambda m: m.group(1).replace("-", "\\-"), text)
    return "\\&" + text if text[:1] in (".", "'") else text


def term(t):
    """An option's term: flags in bold, values in italics."""
    out = []
    for word in t.split():
        comma = "," if word.endswith(",") else ""
        word = word.rstrip(",")
        font = "B" if word.startswith("-") else "I"
        out.append(f"\\f{font}{esc(word)}\\fR{comma}")
    return " ".join(out)


def parse(text):
    """The help as items: ('heading', text), ('para', text), ('item', term, is_flag, desc)."""
    items, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if not body:
            items.append(("blank",))
        elif line.startswith("usage:"):
            while i + 1 < len(lines) and lines[i + 1].startswith("     ") and \
                    not lines[i + 1].lstrip().startswith("-"):
                i += 1
            items.append(("usage",))
        elif indent == 0 and body.endswith(":") and len(body) < 60:
            items.append(("heading", body[:-1]))
        elif indent == 0:
            if items and items[-1][0] == "para":
                items[-1] = ("para", items[-1][1] + " " + body)
            else:
                items.append(("para", body))
        elif 2 <= indent <= 6 and re.match(r"-[^ ]", body):  # an option (see test_docs.py)
            parts = re.split(r"\s{2,}| (?=\()", body, maxsplit=1)
            items.append(["item", parts[0], True, parts[1] if len(parts) > 1 else ""])
        elif indent == 2:  # an entry of a list: a subcommand, a scenario
            parts = re.split(r"\s{2,}", body, maxsplit=1)
            items.append(["item", parts[0], False, parts[1] if len(parts) > 1 else ""])
        elif items and items[-1][0] == "item":
            items[-1][3] = (items[-1][3] + " " + body).strip()
        elif items and items[-1][0] == "para":
            items[-1] = ("para", items[-1][1] + " " + body)
        else:
            items.append(("para", body))
        i += 1
    return items


def roff(items, sub=False, drop_description=False):
    out, seen_structure = [], False
    for it in items:
        kind = it[0]
        if kind in ("blank", "usage"):
            continue
        if kind == "para":
            if any(p.match(it[1]) for p in DROP):
                continue
            if drop_description and not seen_structure:
                drop_description = False  # the hand-written DESCRIPTION says it
                continue
            out += [".PP", esc(it[1])]
        elif kind == "heading":
            seen_structure = True
            name = it[1][0].upper() + it[1][1:]
            if sub:
                if it[1].lower() != "options":
                    out += [".PP", f"\\fI{esc(name)}:\\fR"]
            else:
                out.append(f'.SS "{esc(name)}"')
        else:
            seen_structure = True
            _, t, is_flag, desc = it
            out += [".TP", term(t) if is_flag else f"\\fB{esc(t)}\\fR"]
            if desc:
                out.append(esc(desc))
    return out


def generate(prog):
    main = help_of(prog)
    out = [".SH OPTIONS"] + roff(parse(main), drop_description=True)
    names, section = [], None
    for line in main.splitlines():
        if line.strip().lower() in SUBCOMMANDS:
            section = SUBCOMMANDS[line.strip().lower()]
        elif section and re.match(r"^  [a-z][\w-]*(\s|$)", line):
            names.append(line.split()[0])
        elif section and not line.startswith("   "):
            break
    texts = {}  # help text -> the subcommands that print it (fgbench's collectives share one)
    for name in names:
        text = help_of(prog, name)
        if text != main:  # e.g. fgscenario all: the main help again
            texts.setdefault(text, []).append(name)
    subs = []
    for text, group in texts.items():
        title = f"{prog} " + ", ".join(group)
        subs += [f'.SS "{esc(title)}"'] + roff(parse(text), sub=True)
    if subs:
        out += [f".SH {section}"] + subs
    return out


stale = []
for page in sorted(f for f in os.listdir(man_dir) if f.endswith(".1")):
    prog = page[:-2]
    if not os.access(os.path.join(bin_dir, prog), os.X_OK):
        sys.exit(f"gen-man: no {prog} in {bin_dir} for docs/man/{page}")
    path = os.path.join(man_dir, page)
    old = open(path, encoding="utf-8").read().split("\n")
    if BEGIN not in old or END not in old:
        sys.exit(f"gen-man: docs/man/{page} lacks the lines {BEGIN!r} and {END!r}")
    a, b = old.index(BEGIN), old.index(END)
    new = old[:a + 1] + generate(prog) + old[b:]
    if new != old:
        stale.append(page)
        if not check:
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(new))
for page in stale:
    print(f"gen-man: docs/man/{page} {'is out of date' if check else 'updated'}")
sys.exit(1 if check and stale else 0)
EOF
