"""fgrun as an MPI launcher: its PMIx server direct-launches Open MPI programs (compiled here
with mpicc) as one world, on one node and across agents in network namespaces; MPI_Abort,
a rank killed inside a collective and a rank that skips MPI_Finalize end the job; a restart
gets a fresh world; what the server does not serve fails cleanly; and the bad inputs: no
libpmix at run time, a program built against MPICH, a bad --pmix value.

Open MPI has been seen to hang when many ranks exit at once: every job here has a deadline
(TIMEOUT), past which the agent is killed and the test fails."""
import functools
import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import bin_path
from launcher_util import (error_lines, fgrun_env, finish_agent, kill_all, processes_in_groups,
                           read_pids, run, start, wait_for_files, wait_until_gone)
from netns import cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.mpi

TIMEOUT = 90
HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = os.path.join(HERE, "mpi_programs")
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
# Under `make asan` fgrun hosts libpmix, whose allocations outlive PMIx_server_finalize;
# tests/lsan.supp names it, which needs full malloc stacks.
SAN_ENV = {"ASAN_OPTIONS": "fast_unwind_on_malloc=0",
           "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0"}


@functools.lru_cache(maxsize=None)
def pmix_probe():
    """fgrun --pmix on: (exit status, stderr)."""
    r = subprocess.run([bin_path("fgrun"), "--standalone", "--pmix", "on", "--no_python",
                        "true"], capture_output=True, text=True, timeout=TIMEOUT, env=env())
    return r.returncode, r.stderr.strip()


@pytest.fixture(autouse=True)
def needs_pmix():
    """Skips where the build left the server out (it says so); a server that is built but
    cannot start fails every test."""
    rc, err = pmix_probe()
    if rc != 0 and "built without libpmix" in err:
        pytest.skip(f"fgrun was built without PMIx: {err}")
    assert rc == 0, f"fgrun --pmix on fails: {err}"


def env(**extra):
    return fgrun_env(**SAN_ENV, **extra)


@pytest.fixture(scope="session")
def mpi_prog(tmp_path_factory):
    """Compiles tests/integration/mpi_programs/<name>.c with mpicc (once per session)."""
    out = tmp_path_factory.mktemp("mpi_programs")
    built = {}

    def build(name, cc="mpicc"):
        key = (name, cc)
        if key not in built:
            exe = str(out / f"{name}.{cc}")
            subprocess.run([cc, "-O1", os.path.join(SOURCES, f"{name}.c"), "-o", exe],
                           check=True, timeout=120)
            built[key] = exe
        return built[key]

    return build


def fgrun(*args, **kw):
    kw.setdefault("env", env())
    kw.setdefault("timeout", TIMEOUT)
    cp = run(bin_path("fgrun"), "--standalone", *args, **kw)
    cp.out = cp.stdout.decode(errors="replace")
    cp.err = cp.stderr.decode(errors="replace")
    return cp


HELLO = re.compile(r"rank (\d+) of (\d+): allreduce (\d+), split (\d+), p2p from (\d+), "
                   r"namespace (\S+): (\w+)")


def hello_lines(out):
    return {int(m.group(1)): m for m in map(HELLO.search, out.splitlines()) if m}


def check_world(out, n):
    lines = hello_lines(out)
    assert sorted(lines) == list(range(n)), out
    for rank, m in lines.items():
        assert (int(m.group(2)), int(m.group(3)), m.group(7)) == (n, n * (n + 1) // 2, "ok"), \
            m.group(0)
        assert int(m.group(5)) == (rank - 1) % n, m.group(0)
    assert len({m.group(6) for m in lines.values()}) == 1, "ranks in different namespaces"


# --- one world ------------------------------------------------------------------------------

def test_four_ranks_are_one_world_allreduce_split_and_p2p(mpi_prog):
    cp = fgrun("--nproc_per_node=4", "--no_python", mpi_prog("mpi_hello"))
    assert cp.returncode == 0, cp.err
    check_world(cp.out, 4)


def test_pmix_off_leaves_open_mpi_ranks_single_rank_worlds(mpi_prog):
    """What the server is for: without it every Open MPI rank is rank 0 of 1."""
    cp = fgrun("--nproc_per_node=2", "--pmix", "off", "--no_python", mpi_prog("mpi_hello"))
    # WORLD_SIZE says 2, so the program calls its world wrong and fails: the first rank to
    # exit may take the other down before it prints.
    worlds = re.findall(r"rank (\d+) of (\d+): .*: (\w+)", cp.out)
    assert worlds and set(worlds) == {("0", "1", "WRONG")}, cp.out
    assert cp.returncode == 1


def test_scenarios_run_on_the_mpi_backend_under_fgrun():
    cp = fgrun("--nproc_per_node=4", "all", "--backend", "mpi")
    assert cp.returncode == 0, cp.err[-3000:]
    assert "every scenario passed (4 scenarios, 4 ranks, mpi" in cp.out, cp.out[-2000:]


def test_fgconform_passes_on_the_mpi_backend_under_fgrun():
    cp = fgrun("--nproc_per_node=4", "--no_python", bin_path("fgconform"), "--backend", "mpi",
               "--quick")
    assert cp.returncode == 0, cp.err[-3000:]
    assert re.search(r"fgconform: \d+ checks passed on 4 ranks \(mpi\)", cp.out), cp.out


def test_non_mpi_workers_see_pmix_variables_and_run_as_before():
    cp = fgrun("--nproc_per_node=2", "--no_python", "sh", "-c",
               'echo "$RANK $PMIX_RANK $OMPI_COMM_WORLD_RANK $OMPI_COMM_WORLD_LOCAL_RANK '
               '$OMPI_COMM_WORLD_SIZE $PMIX_NAMESPACE $OMPI_MCA_schizo"')
    assert cp.returncode == 0, cp.err
    words = sorted(line.split(":", 1)[1].split() for line in cp.out.splitlines())
    assert [w[:5] for w in words] == [["0"] * 4 + ["2"], ["1"] * 4 + ["2"]], cp.out
    assert words[0][5] == words[1][5] and words[0][5].startswith("fgrun."), cp.out
    assert words[0][6] == "^orte", cp.out


@pytest.mark.parametrize("var", ["HWLOC_COMPONENTS", "HWLOC_PLUGINS_BLACKLIST"])
@pytest.mark.parametrize("users", [None, "-gl"])
def test_the_servers_hwloc_setting_stays_its_own(var, users):
    # The PMIx server probes without hwloc's GL, OpenCL and libxml2 plugins, and on one node
    # without the PCI scan (set only while it starts): the workers see the user's value, or
    # none.
    extra = {} if users is None else {var: users}
    cp = fgrun("--nproc_per_node=2", "--no_python", "sh", "-c",
               f'echo "[${{{var}-unset}}]"', env=env(**extra))
    assert cp.returncode == 0, cp.err
    want = "[unset]" if users is None else f"[{users}]"
    assert [line.split(":", 1)[1] for line in cp.out.splitlines()] == [want, want], cp.out


MTL_PROBE = 'echo "[${OMPI_MCA_mtl-unset}]"'


def mtl_of_ranks(cp):
    assert cp.returncode == 0, cp.err
    return {line.split(":", 1)[1] for line in cp.out.splitlines()}


@pytest.mark.parametrize("users, says", [
    ({}, "[^psm,psm2,ofi]"),  # no Omni-Path, TrueScale or RDMA device here
    ({"OMPI_MCA_pml": "ob1"}, "[unset]"),  # a PML the user chose is left alone
    ({"OMPI_MCA_mtl": "psm2"}, "[psm2]"),
])
def test_without_a_fabric_device_the_ranks_skip_the_mtls_that_wait_for_one(users, says):
    if os.path.exists("/sys/class/infiniband") or glob.glob("/dev/hfi1*"):
        pytest.skip("this machine has a fabric device")
    cp = fgrun("--nproc_per_node=2", "--no_python", "sh", "-c", MTL_PROBE, env=env(**users))
    assert mtl_of_ranks(cp) == {says}, cp.out


def test_with_an_rdma_device_the_mtls_are_left_to_open_mpi():
    # A node with an RDMA device, made in a mount namespace of its own.
    cp = run("unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs fgrun-test /sys/class && mkdir -p /sys/class/infiniband/mlx5_0 && '
             'exec "$0" --standalone --nproc_per_node=2 --no_python sh -c "$1"',
             bin_path("fgrun"), MTL_PROBE, env=env(), timeout=TIMEOUT)
    cp.out, cp.err = cp.stdout.decode(), cp.stderr.decode()
    assert mtl_of_ranks(cp) == {"[unset]"}, cp.out


def test_four_ranks_are_one_world_with_the_mtls_open_mpi_picks_itself(mpi_prog):
    # The same world as when fgrun keeps the device-less MTLs out of MPI_Init.
    cp = fgrun("--nproc_per_node=4", "--no_python", mpi_prog("mpi_hello"),
               env=env(OMPI_MCA_mtl="^ofi"))
    assert cp.returncode == 0, cp.err
    check_world(cp.out, 4)


TORCH2_PYTHON = "/var/lib/fgrun/torch2-python"  # scripts/torch2-root.sh


@pytest.mark.torch2
def test_torch_2_6_mpi_backend_over_open_mpi_5_is_one_world():
    """Debian trixie's torch 2.6 is built with Open MPI 5 (PMIx 5 client): libpmix keeps
    its wire protocol across versions, so it talks to fgrun's PMIx 4.2 server. The root
    has no mpirun: fgrun is how that torch runs its mpi backend on more than one rank."""
    if not os.access(TORCH2_PYTHON, os.X_OK):
        if os.environ.get("FG_REQUIRE_TORCH2"):
            pytest.fail(f"{TORCH2_PYTHON} is missing (scripts/torch2-root.sh makes it)")
        pytest.skip(f"the torch 2.6 root is not set up ({TORCH2_PYTHON})")
    # Open MPI 5's tcp transport cannot pair this host's IPv6 address and says so on every
    # rank; on one node the ranks use shared memory anyway.
    cp = fgrun("--nproc_per_node=2", "--python", TORCH2_PYTHON,
               os.path.join(HERE, "workers", "mpi_torch.py"),
               env=env(OMPI_MCA_btl_tcp_disable_family="6"), timeout=300)
    assert cp.returncode == 0, cp.err[-3000:]
    lines = sorted(re.findall(r"torch (2\.6\S*) mpi rank (\d) of (\d): allreduce (\S+) "
                              r"\(RANK=(\d)\)", cp.out))
    assert [l[1:] for l in lines] == [("0", "2", "3", "0"), ("1", "2", "3", "1")], cp.out


# --- several nodes --------------------------------------------------------------------------

@pytest.mark.parametrize("rdzv", ["static", "c10d"])
def test_two_agents_in_network_namespaces_make_one_world_of_8(cluster, mpi_prog, rdzv):
    c = cluster(2)
    port = 29500 if rdzv == "static" else 29400
    agents = []
    for i in range(2):
        where = (["--nnodes", "2", "--node_rank", str(i), "--master_addr", c.addrs[0],
                  "--master_port", str(port)] if rdzv == "static" else
                 ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"{c.addrs[0]}:{port}",
                  "--nnodes", "2", "--rdzv_id", "mpi8"])
        agents.append(c.start(i, [bin_path("fgrun"), *where, "--nproc_per_node", "4",
                                  "--no_python", mpi_prog("mpi_hello")], env=env()))
    outs = []
    for i, p in enumerate(agents):
        rc, out, err = finish_agent(p, TIMEOUT)
        assert rc == 0, f"node {i}:\n{err[-3000:]}"
        outs.append(out)
    check_world("\n".join(outs), 8)
    assert sorted(hello_lines(outs[1])) == [4, 5, 6, 7], outs[1]


# --- how MPI jobs end -----------------------------------------------------------------------

def test_mpi_abort_7_on_rank_1_ends_the_job_with_7_naming_rank_1(mpi_prog):
    cp = fgrun("--nproc_per_node=4", "--no_python", mpi_prog("mpi_faults"), "abort", "1", "7")
    assert cp.returncode == 7, cp.err
    assert "fgrun: rank 1 called MPI_Abort with error code 7" in cp.err, cp.err
    assert re.search(r"job failed: rank 1 \(local_rank 1, pid \d+\)", cp.err), cp.err


def test_a_rank_exiting_without_mpi_finalize_ends_the_job(mpi_prog):
    """Its peers wait for it in a barrier: without the server's word they would hang."""
    cp = fgrun("--nproc_per_node=3", "--no_python", mpi_prog("mpi_faults"), "nofinalize", "2")
    assert cp.returncode == 1, cp.err
    assert ("fgrun: rank 2 exited with code 0 without calling MPI_Finalize (it had called "
            "MPI_Init)") in cp.err, cp.err


def test_sigkill_inside_allreduce_ends_the_job_within_5s_and_leaves_nothing(mpi_prog, tmp_path):
    p = start(bin_path("fgrun"), "--standalone", "--nproc_per_node=4", "--no_python",
              mpi_prog("mpi_faults"), "spin", env=env(FG_TEST_DIR=tmp_path))
    marks = [str(tmp_path / f"spin.{r}") for r in range(4)]
    try:
        wait_for_files(marks, timeout=TIMEOUT)
        pids = read_pids(marks)
        killed = time.monotonic()
        os.kill(pids[2], signal.SIGKILL)
        p.wait(timeout=TIMEOUT)
        took = time.monotonic() - killed
        err = p.stderr.read().decode(errors="replace")
        assert p.returncode == 128 + signal.SIGKILL, err
        assert took < 5, f"the job took {took:.1f} s to end after rank 2 died"
        assert re.search(r"job failed: rank 2 \(local_rank 2, pid \d+\) killed by SIGKILL", err)
        assert not wait_until_gone(pids, 5) and not processes_in_groups(pids)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        kill_all(read_pids([m for m in marks if os.path.exists(m)]))


def test_restart_gives_the_ranks_a_fresh_world(mpi_prog):
    cp = fgrun("--nproc_per_node=4", "--max_restarts", "1", "--no_python",
               mpi_prog("mpi_faults"), "restart")
    assert cp.returncode == 0, cp.err[-3000:]
    assert "attempt 0 failed: rank 1 called MPI_Abort with error code 3; restarting" in cp.err
    spaces = {a: set(re.findall(rf"attempt {a} rank \d of 4: namespace (\S+)", cp.out))
              for a in (0, 1)}
    assert len(spaces[0]) == 1 and len(spaces[1]) == 1 and spaces[0] != spaces[1], cp.out
    assert sorted(re.findall(r"attempt 1 rank (\d): allreduce 4", cp.out)) == list("0123"), \
        cp.out


# --- what the server does not serve ---------------------------------------------------------

def test_publish_lookup_and_spawn_fail_cleanly_and_say_who_asked(mpi_prog):
    cp = fgrun("--nproc_per_node=2", "--no_python", mpi_prog("mpi_unsupported"))
    assert cp.returncode == 0, cp.err
    for call in ("MPI_Publish_name", "MPI_Lookup_name", "MPI_Comm_spawn"):
        assert re.search(rf"\[rank0\]:{call}: MPI_ERR_\w+", cp.out), cp.out
    for what in ("PMIx_Publish (MPI_Publish_name)", "PMIx_Lookup (MPI_Lookup_name)",
                 "PMIx_Spawn (MPI_Comm_spawn)"):
        assert (f"fgrun: rank 0 asked for {what}, which fgrun's PMIx server does not provide"
                in cp.err), cp.err


# --- bad input ------------------------------------------------------------------------------

def test_bad_pmix_value_is_a_usage_error():
    cp = fgrun("--pmix", "maybe", "--no_python", "true")
    assert cp.returncode == 2
    assert error_lines(cp) == ["fgrun: error: --pmix: expected auto, on or off, got 'maybe'"]


def test_a_program_linked_with_mpich_is_refused_before_anything_starts(mpi_prog, tmp_path):
    if not shutil.which("mpicc.mpich"):
        if os.environ.get("FG_REQUIRE_MPICH"):
            pytest.fail("mpicc.mpich is missing (scripts/install-deps.sh installs libmpich-dev)")
        pytest.skip("MPICH (mpicc.mpich) is not installed")
    exe = mpi_prog("mpi_hello", cc="mpicc.mpich")
    cp = fgrun("--nproc_per_node=2", "--no_python", exe)
    assert cp.returncode == 2, cp.err
    assert error_lines(cp) == [
        f"fgrun: error: {exe} is linked with libmpich.so.12 (MPICH), whose ranks do not use "
        "PMIx: under fgrun each would be rank 0 of a world of 1. Start it with that MPI's own "
        "launcher (mpiexec.mpich), or pass --pmix off to run it anyway"], cp.err
    assert "rank" not in cp.out
    # Through a library of its own: the whole dependency tree is read.
    src = os.path.join(SOURCES, "mpi_wrapped.c")
    subprocess.run(["mpicc.mpich", "-DLIBRARY", "-shared", "-fPIC", src, "-o",
                    tmp_path / "libwrapped.so"], check=True, timeout=120)
    subprocess.run(["cc", src, "-o", tmp_path / "wrapped", "-L", tmp_path, "-lwrapped",
                    "-Wl,-rpath,$ORIGIN"], check=True, timeout=120)
    cp = fgrun("--nproc_per_node=2", "--no_python", str(tmp_path / "wrapped"))
    assert cp.returncode == 2 and "is linked with libmpich.so.12 (MPICH)" in cp.err, cp.err
    # One rank has nothing to be wrong about; --pmix off starts it as asked.
    assert fgrun("--nproc_per_node=1", "--no_python", exe).returncode == 0
    off = fgrun("--nproc_per_node=2", "--pmix", "off", "--no_python", exe)
    assert set(re.findall(r"rank \d+ of \d+", off.out)) == {"rank 0 of 1"}, off.out


LIBPMIX_DIR = "/usr/lib/x86_64-linux-gnu/pmix2/lib"  # Debian's; /lib/.../libpmix.so.2 links here


def hide_libpmix(empty, argv):
    """argv in a mount namespace where libpmix's directory is the empty directory."""
    return ["unshare", "-m", "sh", "-c", f'mount --bind "$0" {LIBPMIX_DIR} && exec "$@"',
            str(empty), *argv]


def test_without_libpmix_at_run_time_fgrun_says_so_and_mpi_ranks_fail_clearly(mpi_prog,
                                                                            tmp_path):
    if not os.path.isdir(LIBPMIX_DIR) or os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root, unshare and Debian's libpmix layout to hide the library")
    f = bin_path("fgrun")
    empty = tmp_path / "empty"
    empty.mkdir()

    def hidden(*args):
        return subprocess.run(hide_libpmix(empty, [f, "--standalone", *args]), capture_output=True,
                              text=True, timeout=TIMEOUT, env=env())

    cp = hidden("--nproc_per_node=2", "--no_python", "echo", "hi")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.count("hi") == 2
    assert re.search(r"fgrun: no PMIx server \(cannot load libpmix\.so\.2: .*No such file",
                     cp.stderr), cp.stderr
    cp = hidden("--pmix", "on", "--no_python", "true")
    assert cp.returncode == 2
    assert re.search(r"^fgrun: error: --pmix on: cannot load libpmix\.so\.2", cp.stderr, re.M)
    # Open MPI needs the library too: its ranks fail at once (no hang), and fgrun says which.
    cp = hidden("--nproc_per_node=2", "--no_python", mpi_prog("mpi_hello"))
    assert cp.returncode != 0
    assert re.search(r"fgrun: error: job failed: rank \d", cp.stderr), cp.stderr
    assert "libpmix.so.2" in cp.stderr
