"""The mpi backend under mpirun: every operation against expected values (tests/drivers/
mpi_smoke and fgconform), the same digest as gloo, refusal outside an MPI launcher,
argument mismatches, timeouts that end instead of hanging, and the raw MPI benchmark loops.

Open MPI has been seen to hang when many ranks exit at once, so every job runs in a session
of its own with a deadline, and every process of the session is killed when it passes."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BIN, BUILD, bin_path, free_port
from launcher_util import run_in_session

pytestmark = pytest.mark.mpi

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SMOKE = os.path.join(os.path.abspath(BUILD), "tests", "drivers", "mpi_smoke")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]
# Under `make asan`: Open MPI's own leaks are suppressed, which needs full malloc stacks.
SAN_ENV = {
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0",
    "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0",
}


def run_job(argv, env=None, timeout=60):
    full_env = dict(os.environ, **SAN_ENV)
    full_env.update(env or {})
    return run_in_session(argv, full_env, timeout)


def mpirun(np, *args, env=None, timeout=60):
    # A rank that waits on a peer gives up well before the job is killed.
    env = {"FG_TIMEOUT": "20", **(env or {})}
    forwarded = []
    for name in list(SAN_ENV) + list(env):
        forwarded += ["-x", name]
    return run_job(MPIRUN + forwarded + ["-np", str(np), *args], env=env, timeout=timeout)


def smoke():
    if not os.path.exists(SMOKE):
        pytest.fail(f"{SMOKE} is missing: run make first")
    return SMOKE


def errors(job, code):
    """{rank: first message} of the driver's 'rank R: err CODE: MESSAGE' lines."""
    found = {}
    for rank, msg in re.findall(rf"^rank (\d+): err {code}: (.*)$", job.out, re.M):
        found.setdefault(int(rank), msg)
    return found


# --- every operation ---------------------------------------------------------------------

@pytest.mark.parametrize("np", [1, 2, 3, 4, 6])
def test_every_operation_matches_the_kernels(np):
    """np=4 and 6 add the 2x2 and 2x3 meshes."""
    job = mpirun(np, smoke(), "--backend", "mpi", "all")
    assert job.rc == 0 and "ok all" in job.out, str(job)


def test_large_counts_go_in_chunks():
    # FG_MPI_CHUNK=5 cuts broadcast, reduce and allreduce of 37 elements into 8 MPI calls.
    job = mpirun(3, smoke(), "--backend", "mpi", "all", env={"FG_MPI_CHUNK": "5"})
    assert job.rc == 0 and "ok all" in job.out, str(job)


def test_gloo_under_mpirun_gets_its_store_address_over_mpi():
    job = mpirun(2, smoke(), "--backend", "gloo", "all")
    assert job.rc == 0 and "ok all" in job.out, str(job)


# --- fgconform ---------------------------------------------------------------------------

def fgconform():
    path = os.path.join(BIN, "fgconform")
    if not os.path.exists(path):
        pytest.skip("build/bin/fgconform is not built yet")
    return path


@pytest.mark.parametrize("np,mesh", [(1, None), (2, None), (3, None), (4, None), (4, "2x2"),
                                     (6, "2x3")])
def test_fgconform_passes(np, mesh):
    args = ["--mesh", mesh] if mesh else []
    job = mpirun(np, fgconform(), "--backend", "mpi", *args, timeout=90)
    assert job.rc == 0 and "checks passed" in job.out + job.err, str(job)


def digests(job):
    found = re.findall(r"digest\W+([0-9a-fA-F]{8,})", job.out + job.err)
    assert found, f"no digest in the output\n{job}"
    return sorted(set(found))


# Six gloo ranks take ~20 s on two cores, so the 2x3 mesh is checked for mpi alone above.
@pytest.mark.parametrize("np,mesh", [(2, None), (3, None), (4, "2x2")])
def test_fgconform_digest_is_the_same_as_gloo(np, mesh):
    # gloo under mpirun gets its store's address over MPI (bootstrap.c).
    args = ["--print-digest"] + (["--mesh", mesh] if mesh else [])
    mpi = mpirun(np, fgconform(), "--backend", "mpi", *args, timeout=90)
    gloo = mpirun(np, fgconform(), "--backend", "gloo", *args, env={"FG_TIMEOUT": "10"},
                  timeout=90)
    assert mpi.rc == 0 and gloo.rc == 0, f"{mpi}\n{gloo}"
    assert digests(mpi) == digests(gloo), f"{mpi}\n{gloo}"


def test_fgconform_fault_is_caught():
    job = mpirun(2, fgconform(), "--backend", "mpi", "--fault", timeout=90)
    assert job.rc != 0 and "FAIL rank" in job.out + job.err, str(job)


@pytest.mark.parametrize("what", ["count", "dtype", "root", "op"])
def test_fgconform_mismatch_is_named_on_every_rank(what):
    job = mpirun(3, fgconform(), "--backend", "mpi", "--mismatch", what,
                 env={"FG_DEBUG": "detail"})
    assert job.rc == 0 and f"mismatched {what} detected on every rank" in job.out + job.err, \
        str(job)


def test_fgconform_stalled_rank_makes_the_others_time_out():
    job = mpirun(3, fgconform(), "--backend", "mpi", "--stall-at", "2", "--timeout", "2",
                 timeout=40)
    assert job.rc != 0, str(job)
    for rank in (0, 1):
        assert re.search(rf"rank {rank}: .* on world: timed out after 2.0 s",
                         job.out + job.err), str(job)


def test_fgconform_dead_rank_ends_the_job():
    # mpirun ends the whole job when a rank dies; nobody may wait out the timeout.
    job = mpirun(3, fgconform(), "--backend", "mpi", "--die-at", "1", "--timeout", "60",
                 timeout=40)
    assert job.rc != 0 and job.seconds < 30, str(job)


# --- refusing to start outside an MPI launcher ------------------------------------------

LAUNCHER_MESSAGE = ("the mpi backend needs an MPI launcher: fgrun with its PMIx server (not "
                    "--pmix off) or `mpirun -np N <program> --backend mpi`; else use --backend "
                    "gloo")


def without_mpi_vars(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.mark.parametrize("env", [{}, {"RANK": 0, "WORLD_SIZE": 1},
                                 {"RANK": 1, "WORLD_SIZE": 2, "MASTER_ADDR": "127.0.0.1"}])
def test_refuses_without_an_mpi_launcher(env):
    env = without_mpi_vars(**env)
    env.setdefault("MASTER_PORT", str(free_port()))
    r = subprocess.run([smoke(), "--backend", "mpi", "init"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and LAUNCHER_MESSAGE in r.stdout, r.stdout + r.stderr
    assert "EINVAL" in r.stdout


def test_refuses_under_fgrun_without_its_pmix_server():
    """With its PMIx server fgrun is an MPI launcher (test_pmix.py); without, no world."""
    fgrun = bin_path("fgrun")
    job = run_job([fgrun, "--pmix", "off", "--master-port", str(free_port()),
                   "--nproc-per-node", "2", smoke(),
                   "--backend", "mpi", "init"], env=without_mpi_vars(), timeout=60)
    assert job.rc != 0, str(job)
    assert job.out.count(LAUNCHER_MESSAGE) + job.err.count(LAUNCHER_MESSAGE) >= 1, str(job)


def test_rank_from_another_launcher_is_refused():
    # RANK wins over OMPI_COMM_WORLD_RANK in the environment, so both ranks claim rank 0.
    job = mpirun(2, smoke(), "--backend", "mpi", "init", env={"RANK": "0", "WORLD_SIZE": "2"})
    assert job.rc != 0
    assert "MPI says this is rank 1 of 2 but the environment or options say rank 0 of 2" \
        in job.out, str(job)


# --- mismatched arguments ---------------------------------------------------------------

def test_mismatch_is_named_with_fg_debug_detail():
    job = mpirun(2, smoke(), "--backend", "mpi", "mismatch", env={"FG_DEBUG": "detail"})
    assert job.rc == 0, str(job)
    assert errors(job, "FG_EMISMATCH") == {
        0: "allreduce on world: rank 1 passed count 5, rank 0 4",
        1: "allreduce on world: rank 0 passed count 4, rank 1 5"}, str(job)


def test_mismatch_without_detail_fails_instead_of_hanging():
    job = mpirun(2, smoke(), "--backend", "mpi", "--timeout-ms", "3000", "mismatch",
                 env={"FG_DEBUG": ""}, timeout=30)
    # Depending on timing, Open MPI reports the truncated message or its aborted schedule.
    found = {**errors(job, "FG_EBACKEND"), **errors(job, "FG_EMISMATCH")}
    assert found and all(m.startswith("allreduce on world: ") and "FG_DEBUG=detail" in m
                         for m in found.values()), str(job)


# --- timeouts ---------------------------------------------------------------------------

@pytest.mark.parametrize("case,group", [("timeout", "world"), ("group-timeout", "group [0, 1, 2]")])
def test_collective_times_out_and_the_job_ends(case, group):
    job = mpirun(3, smoke(), "--backend", "mpi", "--timeout-ms", "1500", case, timeout=40)
    timed_out = errors(job, "ETIMEDOUT")
    assert sorted(timed_out) == [0, 1], str(job)
    for rank, msg in timed_out.items():
        if msg.startswith("barrier"):
            assert msg.startswith(f"barrier on {group}: timed out after 1.5 s"), msg
    assert "only fg_comm_destroy is allowed now" in job.out, str(job)
    assert job.out.count("ok ") == 1 and job.rc != 0, str(job)  # mpirun ends the job
    assert 1.5 < job.seconds < 30, str(job)


def test_receive_times_out_naming_the_peer():
    job = mpirun(2, smoke(), "--backend", "mpi", "--timeout-ms", "1000", "p2p-timeout",
                 timeout=30)
    msg = errors(job, "ETIMEDOUT").get(0, "")
    assert msg.startswith("recv on world: timed out after 1.0 s waiting for rank 1 to send"), \
        str(job)


# --- the raw MPI loops for fgbench -------------------------------------------------------

BENCH_MAIN = r"""
#include <stdio.h>
#include "fg/comm.h"
#include "tools/bench_raw.h"
int main(void) {
  fg_comm *w;
  char err[256];
  fg_comm_options o;
  fg_comm_options_init(&o);
  o.backend = "mpi";
  if (fg_comm_init(&w, &o, err, sizeof err)) return printf("init: %s\n", err), 2;
  int bad = 0;
  for (int i = 0; fg_bench_raw_mpi_coll(i); i++) {
    double us = -1;
    int rc = fg_bench_raw_mpi(fg_bench_raw_mpi_coll(i), 65536, 5, 1, &us);
    if (fg_comm_rank(w) == 0) printf("%s rc=%d us=%.2f\n", fg_bench_raw_mpi_coll(i), rc, us);
    bad |= rc != 0 || !(us > 0);
  }
  double us;
  bad |= fg_bench_raw_mpi("nonesuch", 64, 1, 0, &us) != -22;
  fg_comm_destroy(w);
  return bad;
}
"""


def make_var(name):
    """A variable as the Makefile computes it for this build (COMM_LIBS, ...)."""
    r = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", "--eval",
                        f"print-var: ; @echo '{name}=$({name})'", "print-var"],
                       capture_output=True, text=True, timeout=60)
    found = re.search(rf"^{name}=(.*)$", r.stdout, re.M)
    assert found, r.stdout + r.stderr
    return found.group(1).split()


def test_bench_raw_mpi_times_every_collective(tmp_path):
    # fgbench's driver comes later; until then a small main links the loops with libfg.
    if not shutil.which("mpicc"):
        pytest.skip("no mpicc")
    libfg = os.path.join(os.path.abspath(BUILD), "lib", "libfg.a")
    (tmp_path / "main.c").write_text(BENCH_MAIN)
    nm = subprocess.run(["nm", libfg], capture_output=True, text=True)
    san = ["-fsanitize=address,undefined"] if "__asan_init" in nm.stdout else []
    exe = str(tmp_path / "bench")
    cc = subprocess.run(["mpicc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-DFG_HAVE_MPI",
                         *san, f"-I{ROOT}/include", f"-I{ROOT}/src", "-o", exe,
                         str(tmp_path / "main.c"), f"{ROOT}/src/tools/bench_mpi.c", libfg,
                         *make_var("COMM_LIBS"), "-luv", "-lpthread", "-lm"],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    job = mpirun(2, exe)
    assert job.rc == 0, str(job)
    for coll in ("allreduce", "broadcast", "reduce", "allgather", "reduce_scatter", "alltoall",
                 "sendrecv"):
        assert re.search(rf"^{coll} rc=0 us=\d", job.out, re.M), str(job)
