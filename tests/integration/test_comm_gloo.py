"""The gloo backend, checked by fgconform: every operation, dtype, reduction and root on the
world, on groups and on meshes, under fgrun and under mpirun; results identical to the mpi
backend's; and the failures it promises: corrupted data is caught, a killed rank or a
stalled one makes every other rank fail within seconds, mismatched arguments are named.

Ranks that must be watched one by one (a killed rank) are started here with torchrun's
environment instead of through fgrun, which would stop the survivors itself. Every job runs
in a process group of its own with a deadline (Open MPI has been seen to hang when many
ranks exit at once)."""
import errno
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import bin_path, free_port, have_mpi
from launcher_util import run_in_session

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]
# Under `make asan`: Open MPI's own leaks are suppressed (see tests/lsan.supp).
SAN_ENV = {
    "ASAN_OPTIONS": "fast_unwind_on_malloc=0",
    "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0",
}
# A hang shows as a timeout in seconds, not as a stuck test.
TIMEOUT_ENV = {"FG_TIMEOUT": "30"}


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PET_", "OMPI_", "PMIX_", "FG_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                         "MASTER_ADDR", "MASTER_PORT")}
    env.update(SAN_ENV)
    env.update(TIMEOUT_ENV)
    env.update(extra or {})
    return env


def run_job(argv, env=None, timeout=90):
    return run_in_session(argv, clean_env(env), timeout)


def fgconform():
    return bin_path("fgconform")


def under_fgrun(n, *args, env=None, timeout=90):
    return run_job([bin_path("fgrun"), "--standalone", f"--nproc_per_node={n}", "--no_python",
                    fgconform(), "--backend", "gloo", *args], env=env, timeout=timeout)


def under_mpirun(n, *args, backend="gloo", env=None, timeout=90):
    forwarded = []
    for name in list(SAN_ENV) + list(TIMEOUT_ENV) + list(env or {}):
        forwarded += ["-x", name]
    return run_job(MPIRUN + forwarded + ["-np", str(n), fgconform(), "--backend", backend,
                                         *args], env=env, timeout=timeout)


def start_ranks(n, *args, env=None):
    """n ranks with torchrun's environment; rank 0 serves the store on MASTER_PORT."""
    port = str(free_port())
    procs = []
    for r in range(n):
        rank_env = {"RANK": str(r), "WORLD_SIZE": str(n), "LOCAL_RANK": str(r),
                    "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": port, "FG_BACKEND": "gloo"}
        rank_env.update(env or {})
        procs.append(subprocess.Popen([fgconform(), *args], env=clean_env(rank_env),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True))
    return procs


def reap(procs, deadline):
    """{rank: (exit code, seconds since start, output)}; kills what outlives deadline."""
    start, done = time.monotonic(), {}
    while len(done) < len(procs) and time.monotonic() - start < deadline:
        for r, p in enumerate(procs):
            if r not in done and p.poll() is not None:
                done[r] = time.monotonic() - start
        time.sleep(0.01)
    results = {}
    for r, p in enumerate(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        results[r] = (p.returncode, done.get(r), out + err)
    return results


def summary(job, n):
    m = re.search(r"fgconform: (\d+) checks passed on (\d+) ranks \(gloo\)", job.out)
    assert job.rc == 0 and m, str(job)
    assert int(m.group(2)) == n, str(job)
    assert "FAIL" not in job.out + job.err, str(job)
    return int(m.group(1))


def digest(job):
    found = re.findall(r"fgconform: digest ([0-9a-f]{16})", job.out)
    assert job.rc == 0 and len(found) == 1, str(job)
    return found[0]


def mpi_backend_built():
    help_text = subprocess.run([fgconform(), "--help"], capture_output=True, text=True).stdout
    return re.search(r"backends in this build:.*\bmpi\b", help_text) is not None


# --- every operation -----------------------------------------------------------------------

def test_single_process_without_a_launcher():
    job = run_job([fgconform(), "--backend", "gloo"])
    assert summary(job, 1) > 1000


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_operation_under_fgrun(n):
    """Up to 2 ranks the full sweep (every root of every case, three sizes, 1.2 MB
    buffers); beyond, the quick one, which still meets every root, dtype and reduction.
    At 3 ranks every call is also compared across ranks (FG_DEBUG=detail)."""
    args = ["--quick"] if n > 2 else []
    env = {"FG_DEBUG": "detail"} if n == 3 else None
    assert summary(under_fgrun(n, *args, env=env), n) > 1000


@pytest.mark.parametrize("mesh,n", [("2x2", 4), ("2x3", 6)])
def test_mesh_dimensions_under_fgrun(mesh, n):
    job = under_fgrun(n, "--quick", "--mesh", mesh, "--parts", "mesh")
    assert summary(job, n) > 1000


@pytest.mark.mpi
@pytest.mark.parametrize("n,store", [(2, "over MPI"), (3, "on MASTER_PORT")])
def test_every_operation_under_mpirun(n, store):
    """Without MASTER_ADDR the store's address travels over MPI (with the mpi backend's
    helpers); with it, rank 0 serves the store on MASTER_PORT."""
    env = None
    if store == "over MPI" and not mpi_backend_built():
        pytest.skip("this build has no mpi backend to pass the store's address")
    if store == "on MASTER_PORT":
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    assert summary(under_mpirun(n, "--quick", env=env), n) > 1000


def test_results_do_not_depend_on_the_launcher_or_the_backend():
    """The digest hashes every result every rank checked: fgrun and mpirun, gloo and mpi,
    must agree bit for bit."""
    runs = {"fgrun gloo": under_fgrun(3, "--quick", "--print-digest")}
    if have_mpi():
        env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        runs["mpirun gloo"] = under_mpirun(3, "--quick", "--print-digest", env=env)
        if mpi_backend_built():
            runs["mpirun mpi"] = under_mpirun(3, "--quick", "--print-digest", backend="mpi")
    found = {name: digest(job) for name, job in runs.items()}
    assert len(set(found.values())) == 1, found
    assert digest(under_fgrun(1, "--quick", "--print-digest")) != found["fgrun gloo"]


# --- failures ------------------------------------------------------------------------------

def test_corrupted_contribution_is_caught():
    job = under_fgrun(2, "--quick", "--fault")
    assert job.rc != 0, str(job)
    assert re.search(r"FAIL rank \d on world: allreduce \w+ sum count 13.*: recv index 0: "
                     r"expected -?\d+, got -?\d+ \(1 of 13 elements wrong\)", job.err), str(job)
    assert re.search(r"fgconform: \d+ of \d+ checks FAILED on 2 ranks", job.out), str(job)


def fault_times(results, victim, event):
    """When the victim's fault began, and when each other rank's call failed (on the
    monotonic clock all processes share), from fgconform's fault-mode lines."""
    m = re.search(rf"rank {victim}: {event} at ([\d.]+)", results[victim][2])
    assert m, f"rank {victim} never got to its fault: {results}"
    failed = {}
    for r, (code, ended, out) in results.items():
        if r != victim:
            f = re.search(r"allreduce \d+ failed at ([\d.]+) after [\d.]+ s \(([^)]*)\): (.*)",
                          out)
            assert code == 1 and f, f"rank {r} did not report a failure: {results[r]}"
            failed[r] = (float(f.group(1)) - float(m.group(1)), f.group(2), f.group(3))
    return failed


@pytest.mark.fault
def test_killed_rank_makes_every_other_rank_fail_within_5s():
    """The 10 s timeout would show a rank that waited instead of hearing of it."""
    procs = start_ranks(4, "--die-at", "1", env={"FG_TIMEOUT": "10"})
    results = reap(procs, deadline=60)
    assert results[1][0] == -signal.SIGKILL, f"rank 1 was to be killed: {results}"
    for r, (late, why, msg) in fault_times(results, 1, "killing itself").items():
        assert late < 5, f"rank {r} heard of it {late:.1f}s late: {results[r]}"
        assert why == "a peer rank failed" and re.match(r"allreduce on world: peer rank \d: ",
                                                        msg), f"rank {r}: {results[r]}"


@pytest.mark.fault
def test_stalled_rank_makes_the_others_time_out():
    """Rank 2 stops for 2 s; with a 1 s timeout the others give up, at least one of them by
    its own timeout (the rest may hear of it from that one first)."""
    procs = start_ranks(3, "--stall-at", "2", "--timeout", "1")
    results = reap(procs, deadline=60)
    failed = fault_times(results, 2, "stalling")
    for r, (late, why, msg) in failed.items():
        assert late < 4, f"rank {r} gave up {late:.1f}s after the stall: {results[r]}"
    assert any(why == os.strerror(errno.ETIMEDOUT) for _, why, _ in failed.values()), failed


@pytest.mark.fault
@pytest.mark.parametrize("what,message", [
    ("count", r"allreduce on world: rank \d passed count [45], rank \d [45]"),
    ("dtype", r"allreduce on world: rank \d passed dtype (int32|float32), rank \d "
              r"(int32|float32)"),
    ("root", r"broadcast on world: rank \d passed root [01], rank \d [01]"),
    ("op", r"(allreduce|broadcast) on world: rank \d called (allreduce|broadcast) instead"),
])
def test_mismatched_arguments_are_named(what, message):
    job = under_fgrun(2, "--mismatch", what, env={"FG_DEBUG": "detail"})
    assert job.rc == 0 and f"mismatched {what} detected on every rank" in job.out, str(job)
    for r in (0, 1):
        assert re.search(rf"\[rank{r}\]:fgconform: rank {r}: {message} \(ranks disagree on "
                         r"the call's arguments\)", job.err), str(job)


def test_nccl_without_a_gpu_is_skipped_only_when_asked():
    job = run_job([fgconform(), "--backend", "nccl", "--skip-if-no-device"])
    if "not compiled into this build" in job.err:
        pytest.skip("this build has no nccl backend")
    if job.rc == 0 and "fgconform: skipped:" in job.out:
        strict = run_job([fgconform(), "--backend", "nccl"])
        assert strict.rc == 1 and "no device" in strict.err, str(strict)
    else:
        assert summary_of(job, "nccl"), str(job)  # a GPU: it runs for real


def summary_of(job, backend):
    return job.rc == 0 and re.search(rf"checks passed on 1 ranks \({backend}\)", job.out)
