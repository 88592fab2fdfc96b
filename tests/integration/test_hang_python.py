"""Hang reports for Python ranks: fgrun's startup hook (fgrun-pyhook, on PYTHONPATH under
--hang_timeout) has faulthandler dump every thread's traceback on fgrun's signal and marks
torch.distributed's collectives in the progress slot. The report then names the rank that
holds the others up, with "file:line in function" places, for torch programs without libfg
(Debian's torch 1.13 here; test_hang_torch2.py: torch 2.6); without marks (FG_TORCH_MARKS=0,
or no torch at all) fgrun samples the tracebacks when nothing was written or marked for the
timeout. The hook leaves the interpreter as it found it: PYTHONPATH, sys.path, and the
sitecustomize it hides still runs."""
import json
import os
import re

import pytest

from conftest import bin_path
from hang_util import REPORT_SLACK, TimedJob, kill_jobs_left  # noqa: F401 (autouse)
from launcher_util import fgrun_env, wait_for_files, worker

TIMEOUT = 3  # --hang_timeout; above a healthy gloo all_reduce on a loaded machine

pytestmark = pytest.mark.fault


def python_job(d, script, nproc, *fgrun_args, python=None, env=None, deadline=90):
    argv = [bin_path("fgrun"), "--standalone", f"--nproc_per_node={nproc}",
            f"--hang_timeout={TIMEOUT}", *fgrun_args, worker(script)]
    e = fgrun_env(FG_TEST_DIR=d, FG_HANG_STACKS_TIMEOUT="12", **(env or {}))  # see test_hang_culprit
    if python:
        e["PYTHON_EXEC"] = python
    return TimedJob(argv, e, deadline=deadline)


def fault_at(d):
    wait_for_files([os.path.join(d, "fault_at")], timeout=90)
    return float(open(os.path.join(d, "fault_at")).read())


def report_in_time(job, d, pattern):
    at = fault_at(d)
    t, line, m = job.wait_line(r"^fgrun: hang: ", timeout=60)
    assert re.match(pattern, line), line
    # the hang is reported within the timeout (+ the slack) of the rank stopping
    assert t - at <= TIMEOUT + REPORT_SLACK, f"report {t - at:.2f}s after the rank stopped"
    return line


def torch_hang_checks(job, d, err_pids=None):
    line = report_in_time(job, d, r"fgrun: hang: rank 3 \(pid \d+\) is sleeping and has not "
                          r"arrived at all_reduce #3 on world \(last: all_reduce #2 on world, "
                          r"left [\d.]+ s ago\); ranks 0-2 wait for it there for [\d.]+ s$")
    _, py, _ = job.wait_line(r"^fgrun:   python: ", timeout=30)
    assert re.search(r"ranks 0-2 at torch_hang\.py:\d+ in <module> `dist\.all_reduce\(t\)` "
                     r"\(in all_reduce\); rank 3 at torch_hang\.py:\d+ in <module> "
                     r"`time\.sleep\(600\)`", py), py
    job.wait_line(r"^fgrun:   stack of rank 3 ", timeout=30)
    return line


def marked_torch_case(d, python=None, deadline=90):
    """torch_hang.py on 4 ranks, gloo, rank 3 sleeping before its third all_reduce. The
    hook's marks number the all_reduces as libfg does: "rank 3 has not arrived at all_reduce
    #3"; the tracebacks place every rank; rank 3's stack shows the sleep; --hang_action kill
    ends the job with 124 and the summary blames rank 3."""
    job = python_job(d, "torch_hang.py", 4, "--hang_action=kill", "--term_grace=2",
                     python=python, deadline=deadline)
    torch_hang_checks(job, d)
    assert job.finish() == 124, job.err
    stack = job.report_block(r"^fgrun:   stack of rank 3 ")
    assert re.search(r'File ".*torch_hang\.py", line \d+ in <module>\nfgrun: +time\.sleep\(600\)',
                     stack), stack
    assert "native stacks (libdw" in stack, stack
    assert re.search(r"error: job failed: rank 3 \(local_rank 3, pid \d+\) held the others up: it "
                     r"never arrived at all_reduce #3 on world; it was sleeping", job.err), job.err


def unmarked_torch_case(d, python=None, deadline=90):
    """FG_TORCH_MARKS=0: no slot is written. When nothing was written or marked for the
    timeout, fgrun samples every rank's traceback (twice, to be sure they stand still):
    ranks 0-2 inside torch.distributed's all_reduce, rank 3 elsewhere: rank 3 is named."""
    job = python_job(d, "torch_hang.py", 4, "--hang_action=kill", "--term_grace=2",
                     python=python, env={"FG_TORCH_MARKS": "0"}, deadline=deadline)
    report_in_time(job, d, r"fgrun: hang: rank 3 \(pid \d+\) is sleeping at "
                   r"torch_hang\.py:\d+ in <module> `time\.sleep\(600\)`, outside "
                   r"torch\.distributed; ranks 0-2 wait in torch\.distributed at torch_hang\.py:\d+ "
                   r"in <module> `dist\.all_reduce\(t\)` \(in all_reduce\); no rank wrote output or "
                   r"marked progress for [\d.]+ s$")
    assert job.finish() == 124, job.err
    assert "fgrun:   where:" not in job.err  # no slots: nothing to group by operation
    assert re.search(r"held the others up: it never arrived in torch\.distributed's all_reduce; "
                     r"it was at torch_hang\.py:\d+ in <module> `time\.sleep\(600\)`", job.err), job.err


@pytest.mark.torch
def test_a_torch_rank_that_never_arrives_is_named_from_the_hooks_marks(tmp_path):
    """Debian's torch 1.13 (test_hang_torch2.py: torch 2.6)."""
    marked_torch_case(tmp_path)


@pytest.mark.torch
def test_after_a_torch_timeout_the_summary_blames_the_rank_that_never_arrived(tmp_path):
    """The issue's case: --hang_action report, gloo's own timeout (6 s) fails ranks 0-2 and
    the first of them exits first; the summary still names rank 3 as the cause, and the
    ranks that timed out as what followed."""
    job = python_job(tmp_path, "torch_hang.py", 4, "--term_grace=2", env={"TIMEOUT": "6"})
    torch_hang_checks(job, tmp_path)
    assert job.finish() == 1, job.err
    # ranks giving up in all_reduce #3 is what followed, not another hang
    assert job.err.count("fgrun: hang:") == 1, job.err
    assert re.search(r"fgrun: error: job failed: rank 3 \(local_rank 3, pid \d+\) held the others "
                     r"up: it never arrived at all_reduce #3 on world; it was sleeping", job.err), job.err
    assert re.search(r"fgrun: what followed: ranks? [0-2,-]+ failed", job.err), job.err
    assert re.search(r"rank 3 \(local_rank 3, pid \d+\): killed by SIGTERM .*<- root cause$",
                     job.err, re.M), job.err
    assert re.search(r"<- first to fail$", job.err, re.M), job.err


@pytest.mark.torch
def test_without_marks_the_tracebacks_name_the_rank_outside_torch_distributed(tmp_path):
    """Debian's torch 1.13 (test_hang_torch2.py: torch 2.6)."""
    unmarked_torch_case(tmp_path)


def test_a_python_program_without_torch_is_grouped_by_place_and_left_as_it_was(tmp_path):
    """No torch, no libfg, every rank asleep (idle), rank 1 on another line: the report
    groups the ranks by their innermost frame. The program saw the PYTHONPATH it was given
    (the hook took itself off it and off sys.path), and the user's sitecustomize on that
    PYTHONPATH, which the hook's hides, still ran."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['USER_SITECUSTOMIZE_RAN'] = '1'\n")
    job = python_job(tmp_path, "py_hang.py", 3, "--hang_action=kill", "--term_grace=1",
                     env={"PYTHONPATH": str(site)})
    report_in_time(job, tmp_path, r"fgrun: hang: no rank wrote output or marked progress for "
                   r"[\d.]+ s: ranks 0,2 at py_hang\.py:\d+ in <module> `time\.sleep\(600\)  # the "
                   r"others wait here`; rank 1 at py_hang\.py:\d+ in <module> `time\.sleep\(600\)  "
                   r"# rank 1 waits here`$")
    assert job.finish() == 124, job.err
    seen = json.loads([l for _, l in job.out if l.startswith("[rank0]:{")][0].split(":", 1)[1])
    assert seen == {"pythonpath": str(site), "hook_on_path": False, "user_sitecustomize": "1",
                    "hook_vars": []}, seen


def test_the_hook_is_on_pythonpath_only_under_hang_timeout(tmp_path):
    """The workers' environment (env as the program): with --hang_timeout, fgrun-pyhook first
    on PYTHONPATH before the caller's, and where to dump; without it, nothing of the hook."""
    def worker_env(*args):
        job = TimedJob([bin_path("fgrun"), "--standalone", "--nproc_per_node=1", "--no_prefix",
                        *args, "--no_python", "env"], fgrun_env(PYTHONPATH="/opt/mine"))
        assert job.finish() == 0, job.err
        return dict(l.split("=", 1) for _, l in job.out if "=" in l)
    plain = worker_env()
    assert plain["PYTHONPATH"] == "/opt/mine" and "FG_PYHOOK_DIR" not in plain, plain
    hooked = worker_env("--hang_timeout=5")
    hook = hooked["FG_PYHOOK_DIR"]
    assert hook.endswith("/fgrun-pyhook") and os.path.isfile(os.path.join(hook, "sitecustomize.py"))
    assert hooked["PYTHONPATH"] == f"{hook}:/opt/mine", hooked
    assert hooked["FG_PYSTACK_FILE"].endswith("/attempt_0/0/pystack.txt"), hooked
    assert hooked["FG_PYSTACK_SIGNAL"] == str(__import__("signal").SIGRTMIN + 10), hooked
