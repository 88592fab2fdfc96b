"""The documentation keeps up with the programs: every flag a program's --help shows (its
subcommands' and scenarios' too) is in its man page, in both spellings where the help shows
both, and at least one spelling of it is in the program's section of docs/cli.md. The man
pages also render without a groff warning.

When a flag is added: `scripts/gen-man.sh` regenerates the man pages' OPTIONS from --help;
cli.md is written by hand."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import bin_path

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN_DIR = os.path.join(ROOT, "docs", "man")
CLI_MD = os.path.join(ROOT, "docs", "cli.md")

PROGRAMS = ["fgrun", "fgstore", "fgbench", "fgscenario", "fgmatrix", "fgconform"]
# A heading in a --help whose entries are subcommands with a --help of their own.
SUBCOMMAND_HEADINGS = ("subcommands:", "scenarios:")

# An option line: two to six spaces (six where long options line up under short ones), then
# the option(s), then what it does, after two or more spaces or a parenthesis, or on the next
# lines. Descriptions are indented further (8 or more), so one that wraps onto a line
# starting with "--" is not taken for an option.
OPTION_LINE = re.compile(r"^ {2,6}(-[^ ].*)$")
TERM_END = re.compile(r"\s{2,}| (?=\()")
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")


def help_of(prog, *args):
    r = subprocess.run([bin_path(prog), *args, "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"{prog} {' '.join(args)} --help exited {r.returncode}: {r.stderr}"
    assert r.stdout.strip(), f"{prog} {' '.join(args)} --help printed nothing"
    return r.stdout


def subcommands(text):
    """The first word of each entry under a subcommand heading."""
    names, inside = [], False
    for line in text.splitlines():
        if line.strip().lower() in SUBCOMMAND_HEADINGS:
            inside = True
        elif inside and re.match(r"^  [a-z][\w-]*(\s|$)", line):
            names.append(line.split()[0])
        elif inside and not line.startswith("   "):
            inside = False
    return names


def option_lines(text):
    """Each option line's flags, as a list of lists (one list per line)."""
    out = []
    for line in text.splitlines():
        m = OPTION_LINE.match(line)
        if not m:
            continue
        term = TERM_END.split(m.group(1).strip())[0]
        flags = FLAG.findall(term)
        if flags:
            out.append(flags)
    return out


def every_help(prog):
    """(where, help text) for the program and each of its subcommands; subcommands that
    print the same help (fgbench's collectives) come once, named together."""
    main = help_of(prog)
    texts = {main: [prog]}
    for sub in subcommands(main):
        texts.setdefault(help_of(prog, sub), []).append(f"{prog} {sub}")
    return [(", ".join(names), text) for text, names in texts.items()]


def roff_to_text(src):
    """The words of a man page's source: fonts, escapes and requests' dots removed."""
    t = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", src)
    t = t.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")
    t = re.sub(r"\\\(..", " ", t)
    return t


def mentions(text, flag):
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


def cli_section(prog):
    """The part of docs/cli.md under the heading '## <prog>' (up to the next '## ')."""
    text = open(CLI_MD, encoding="utf-8").read()
    parts = re.split(r"^## ", text, flags=re.M)
    for part in parts[1:]:
        heading = part.splitlines()[0]
        if re.match(re.escape(prog) + r"\b", heading.strip("` ")):
            return part
    return None


@pytest.mark.parametrize("prog", PROGRAMS)
def test_man_page_lists_every_flag(prog):
    page = os.path.join(MAN_DIR, f"{prog}.1")
    assert os.path.exists(page), f"{page} is missing (scripts/gen-man.sh writes it)"
    text = roff_to_text(open(page, encoding="utf-8").read())
    missing, found = [], 0
    for where, helptext in every_help(prog):
        for flags in option_lines(helptext):
            found += 1
            missing += [f"{where}: {f}" for f in flags if not mentions(text, f)]
    assert found, f"no options found in {prog}'s --help: has its layout changed?"
    assert not missing, (f"docs/man/{prog}.1 lacks flags its --help shows (run "
                         f"scripts/gen-man.sh): {', '.join(missing)}")


@pytest.mark.parametrize("prog", PROGRAMS)
def test_cli_md_describes_every_option(prog):
    section = cli_section(prog)
    assert section is not None, f"docs/cli.md has no '## {prog}' section"
    missing = []
    for where, helptext in every_help(prog):
        for flags in option_lines(helptext):
            if not any(mentions(section, f) for f in flags):
                missing.append(f"{where}: {' / '.join(flags)}")
    assert not missing, f"docs/cli.md's {prog} section lacks: {', '.join(missing)}"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("prog", PROGRAMS)
def test_man_page_renders_cleanly(prog):
    page = os.path.join(MAN_DIR, f"{prog}.1")
    assert os.path.exists(page), f"{page} is missing"
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", page], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr.strip(), f"groff on {page}: {r.stderr}"


def test_flag_extraction_reads_both_spellings_and_skips_wrapped_descriptions():
    sample = ("options:\n"
              "  --nproc-per-node, --nproc_per_node N\n"
              "        Workers on this node.\n"
              "  --rdzv-endpoint HOST:PORT\n"
              "        Where the store listens (static: replaces\n"
              "        --master_addr:--master_port).\n"
              "  -r, --redirects STD  Send streams to log files.\n"
              "  --dim D --heads H      model width and attention heads\n"
              "      --backend NAME      gloo, mpi or nccl (default $FG_BACKEND)\n"
              "      --torch-script PATH (default scripts/x-y.py of --this)\n")
    assert option_lines(sample) == [["--nproc-per-node", "--nproc_per_node"],
                                     ["--rdzv-endpoint"], ["-r", "--redirects"],
                                     ["--dim", "--heads"], ["--backend"],
                                     ["--torch-script"]]
    assert subcommands("subcommands:\n  store        the store\n  coll   x\n\nmore\n") == [
        "store", "coll"]
