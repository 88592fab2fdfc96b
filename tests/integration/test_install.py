"""`make install` into a temporary prefix gives a working installation: the programs, fgrun's
helper where fgrun looks for it, libfg (shared, with its soname and links, and static), the
headers, fg.pc and the man pages; a C program built against it with pkg-config runs on two
ranks under the installed fgrun; and the installed fgrun runs a scenario by name.

The install reuses the build the tests run against (FG_BUILD): `make install` is called with
the make variables of the make that runs these tests (MAKEFLAGS carries them, e.g. SAN=1 under
`make asan`), so it rebuilds nothing with other flags. If this make would use other flags
than the build was made with, the tests are skipped instead of rebuilding it."""
import filecmp
import os
import re
import shlex
import shutil
import subprocess

import pytest

from conftest import BIN, BUILD

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLE = os.path.join(ROOT, "docs", "examples", "store_and_allreduce.c")
PROGRAMS = ["fgrun", "fgstore", "fgbench", "fgscenario", "fgmatrix", "fgconform"]
TIMEOUT = 120


def version():
    text = open(os.path.join(ROOT, "include", "fg", "fg.h")).read()
    return re.search(r'#define FG_VERSION "([^"]+)"', text).group(1)


def make_env():
    """This process's environment, minus the parent make's jobserver (its pipe is not ours)."""
    env = dict(os.environ)
    flags = env.get("MAKEFLAGS", "")
    env["MAKEFLAGS"] = " ".join(w for w in flags.split() if not w.startswith("--jobserver"))
    return env


def build_arg():
    build = os.path.abspath(BUILD)
    rel = os.path.relpath(build, ROOT)
    return f"BUILD={build if rel.startswith('..') else rel}"


def make(*args, timeout=600):
    r = subprocess.run(["make", "--no-print-directory", "-C", ROOT, build_arg(), *args],
                       env=make_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


def flags_differ(tmp):
    """True if a make run now would build with other flags than BUILD was built with: the
    Makefile writes the flags it uses into <build>/.flags, so a dry run on a scratch build
    directory shows them without touching BUILD."""
    probe = os.path.join(tmp, "probe")
    subprocess.run(["make", "--no-print-directory", "-C", ROOT, f"BUILD={probe}", "-n", "clean"],
                   env=make_env(), capture_output=True, timeout=60)
    now, built = os.path.join(probe, ".flags"), os.path.join(BUILD, ".flags")
    if not (os.path.exists(now) and os.path.exists(built)):
        return False
    return open(now).read() != open(built).read()


def sanitizer_flags():
    """The build's -fsanitize flags (under `make asan`): a program that links an instrumented
    libfg must be built with them too."""
    path = os.path.join(BUILD, ".flags")
    flags = open(path).read().split() if os.path.exists(path) else []
    return [f for f in flags if f.startswith(("-fsanitize", "-fno-sanitize", "-fno-omit"))]


# Under `make asan`: Open MPI's own leaks are suppressed, as in the other tests.
SAN_ENV = {"ASAN_OPTIONS": "fast_unwind_on_malloc=0",
           "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0"}


def pkg_config(prefix, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    env.pop("PKG_CONFIG_LIBDIR", None)
    r = subprocess.run(["pkg-config", *args, "fg"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"pkg-config {' '.join(args)} fg: {r.stderr}"
    return r.stdout.strip()


def backends():
    r = subprocess.run([os.path.join(BIN, "fgconform"), "--help"], capture_output=True,
                       text=True, timeout=30)
    m = re.search(r"backends in this build: (.*)", r.stdout)
    return m.group(1).split() if m else []


def needed(path):
    r = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def run_fgrun(prefix, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    env["PATH"] = f"{prefix}/bin:/usr/bin:/bin"  # nothing of the build tree
    env.update(SAN_ENV)
    return subprocess.run([os.path.join(prefix, "bin", "fgrun"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config is not installed")
    tmp = str(tmp_path_factory.mktemp("install"))
    if flags_differ(tmp):
        pytest.skip(f"{BUILD} was built with other flags than this make would use; "
                    "installing would rebuild it")
    prefix = os.path.join(tmp, "prefix")
    make("install", f"PREFIX={prefix}")
    return prefix


def test_programs_are_where_fgrun_looks(prefix):
    for prog in PROGRAMS:
        path = os.path.join(prefix, "bin", prog)
        assert os.access(path, os.X_OK), f"{path} is not installed"
    # fgrun starts workers itself: no helper program of its own is installed.
    assert not os.path.exists(os.path.join(prefix, "libexec", "fgrun", "fgrun-exec"))
    r = subprocess.run([os.path.join(prefix, "bin", "fgrun"), "--version"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and version() in r.stdout, r.stdout + r.stderr


def test_shared_library_has_soname_links_and_backend_libraries(prefix):
    lib = os.path.join(prefix, "lib")
    real = os.path.join(lib, f"libfg.so.{version()}")
    assert os.path.isfile(real) and not os.path.islink(real)
    assert os.readlink(os.path.join(lib, "libfg.so.0")) == f"libfg.so.{version()}"
    assert os.readlink(os.path.join(lib, "libfg.so")) == "libfg.so.0"
    assert os.path.isfile(os.path.join(lib, "libfg.a"))
    dyn = needed(real)
    assert "Library soname: [libfg.so.0]" in dyn, dyn
    wanted = ["libuv.so"] + [{"gloo": "libgloo.so", "mpi": "libmpi.so",
                              "nccl": "libnccl.so"}[b] for b in backends()]
    for name in wanted:
        assert f"[{name}" in dyn, f"libfg.so does not link {name}:\n{dyn}"


def test_headers_pkg_config_and_man_pages(prefix):
    for h in ("fg.h", "store.h", "comm.h"):
        assert filecmp.cmp(os.path.join(ROOT, "include", "fg", h),
                           os.path.join(prefix, "include", "fg", h), shallow=False)
    assert pkg_config(prefix, "--modversion") == version()
    assert pkg_config(prefix, "--cflags") == f"-I{prefix}/include"
    assert pkg_config(prefix, "--libs") == f"-L{prefix}/lib -lfg"
    static = pkg_config(prefix, "--static", "--libs").split()
    assert "-luv" in static and "-lfg" in static, static
    pages = [p for p in os.listdir(os.path.join(ROOT, "docs", "man")) if p.endswith(".1")]
    assert pages, "docs/man has no man pages"
    for page in pages:
        assert os.path.isfile(os.path.join(prefix, "share", "man", "man1", page)), page


def compile_example(prefix, out, static):
    cc = os.environ.get("CC", "cc")
    if static:
        libs = [w for w in shlex.split(pkg_config(prefix, "--static", "--libs")) if w != "-lfg"]
        cmd = [cc, EXAMPLE, *shlex.split(pkg_config(prefix, "--cflags")),
               os.path.join(prefix, "lib", "libfg.a"), *libs, "-o", out]
    else:
        cmd = [cc, EXAMPLE, *shlex.split(pkg_config(prefix, "--cflags", "--libs")),
               f"-Wl,-rpath,{prefix}/lib", "-o", out]
    r = subprocess.run(cmd + ["-Wall", "-Wextra", "-Werror"] + sanitizer_flags(),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stderr}"


@pytest.mark.parametrize("link", ["shared", "static"])
def test_example_builds_with_pkg_config_and_runs_under_installed_fgrun(prefix, tmp_path, link):
    if "gloo" not in backends():
        pytest.skip("the example's allreduce runs on gloo, which this build lacks")
    exe = str(tmp_path / f"store_and_allreduce_{link}")
    compile_example(prefix, exe, static=link == "static")
    dyn = needed(exe)
    if link == "shared":
        assert "[libfg.so.0]" in dyn, dyn
    else:
        assert "libfg" not in dyn, dyn
    r = run_fgrun(prefix, "--standalone", "--nproc_per_node=2", exe, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    for rank, other in ((0, 1), (1, 0)):
        assert f"[rank{rank}]:rank {rank}: the store says 'hello from rank {other}'" in r.stdout
        assert (f"[rank{rank}]:rank {rank} of 2 (gloo): allreduce sum = 3 5 7 9 (right)"
                in r.stdout), r.stdout


def test_installed_fgrun_runs_a_scenario_by_name(prefix, tmp_path):
    r = run_fgrun(prefix, "--standalone", "--nproc_per_node=2", "dataloader-dispatcher",
                  "--num-batches", "2", cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dataloader-dispatcher: ALL CHECKS PASSED" in r.stdout, r.stdout


def test_destdir_stages_the_prefix_and_uninstall_removes_every_file(prefix, tmp_path):
    stage = str(tmp_path / "stage")
    make("install", f"DESTDIR={stage}", "PREFIX=/opt/fg")
    root = os.path.join(stage, "opt", "fg")
    assert os.path.isfile(os.path.join(root, "bin", "fgrun"))
    pc = open(os.path.join(root, "lib", "pkgconfig", "fg.pc")).read()
    assert "prefix=/opt/fg\n" in pc and "libdir=${prefix}/lib\n" in pc, pc
    make("uninstall", f"DESTDIR={stage}", "PREFIX=/opt/fg")
    left = [os.path.join(d, f) for d, _, files in os.walk(stage) for f in files]
    assert not left, f"uninstall left {left}"
