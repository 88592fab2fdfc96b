"""fgrun --trace FILE: a Chrome trace-event file with a track per rank (pid = node, tid =
rank) holding each worker's life (spawn to exit), its rendezvous (init) and every
operation, plus fgrun's own track with the attempts and restarts."""
import json
import os

from test_faults import fgrun_job

EPS = 0.01  # microseconds: timestamps are whole nanoseconds printed in microseconds


def load(path):
    with open(path) as f:
        trace = json.load(f)
    assert trace["displayTimeUnit"] == "ms" and trace["otherData"]["clock"] == "CLOCK_MONOTONIC"
    return trace["traceEvents"]


def track(events, tid, ph=None, name=None):
    return [e for e in events if e["tid"] == tid and e["ph"] != "M"
            and (ph is None or e["ph"] == ph) and (name is None or e["name"] == name)]


def assert_nested(spans, what):
    """Complete events on one track never overlap partially: each lies inside the one that
    is open when it starts, or after it."""
    open_ends = []
    for e in sorted(spans, key=lambda e: (e["ts"], -e["dur"])):
        assert e["dur"] >= 0, e
        while open_ends and open_ends[-1] <= e["ts"] + EPS:
            open_ends.pop()
        end = e["ts"] + e["dur"]
        assert not open_ends or end <= open_ends[-1] + EPS, f"{what}: {e} overlaps its parent"
        open_ends.append(end)


def within(events, span):
    return [e for e in events if span["ts"] - EPS <= e["ts"] <= span["ts"] + span["dur"] + EPS]


def test_the_trace_has_every_rank_its_operations_and_the_restart(tmp_path):
    """3 ranks, 20 allreduces; rank 1 exits 3 at iteration 3 of attempt 0, so the group
    restarts once and attempt 1 runs all 20 on every rank."""
    out = tmp_path / "run.json"
    job = fgrun_job(tmp_path, 3, "--victim", "1", "--at", "3", "--fault", "exit3", "--attempt",
                    "0", "--iters", "20", "allreduce",
                    fgrun_args=[f"--trace={out}", "--max_restarts=1"])
    assert job.rc == 0, job
    assert f"timeline written to {out}" in job.err, job
    assert not os.path.exists(f"{out}.tmp")
    events = load(out)
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    agent = [t for t, n in names.items() if n == "fgrun"]
    assert len(agent) == 1 and all(names[r] == f"rank {r}" for r in range(3)), names

    attempts = sorted(track(events, agent[0], "X"), key=lambda e: e["ts"])
    assert [a["name"] for a in attempts] == ["attempt 0", "attempt 1"], attempts
    assert attempts[0]["args"]["result"] == "rank 1 exited with code 3", attempts[0]
    restarts = track(events, agent[0], "i", "restart")
    assert len(restarts) == 1 and restarts[0]["args"]["restart"] == 1, restarts
    assert attempts[0]["ts"] + attempts[0]["dur"] <= restarts[0]["ts"] + EPS
    assert restarts[0]["ts"] <= attempts[1]["ts"] + EPS

    for r in range(3):
        spans = track(events, r, "X")
        assert_nested(spans, f"rank {r}")
        workers = sorted(track(events, r, "X", "worker"), key=lambda e: e["ts"])
        assert [w["args"]["attempt"] for w in workers] == [0, 1], workers
        assert len(track(events, r, "i", "spawn")) == 2 and len(track(events, r, "i", "exit")) == 2
        for a, w in enumerate(workers):
            mine = within(spans, w)
            assert len([e for e in mine if e["name"] == "init"]) == 1, (r, a)
            allreduces = [e for e in mine if e["name"] == "allreduce"]
            seqs = [e["args"]["seq"] for e in sorted(allreduces, key=lambda e: e["ts"])]
            assert seqs == list(range(1, len(seqs) + 1)), (r, a, seqs)
            if a == 1:
                assert len(seqs) == 20, (r, seqs)
                assert len([e for e in mine if e["name"] == "destroy"]) == 1
            elif r == 1:
                assert len(seqs) == 3, seqs  # it left before its 4th
            else:
                assert len(seqs) >= 2, seqs  # killed by SIGTERM: what it did is kept
            assert all(e["args"]["group"] == "world" for e in allreduces)


def test_a_sigkilled_rank_keeps_its_events(tmp_path):
    """Events are in the kernel's hands as soon as they are made: a rank SIGKILLed at
    iteration 5 still shows its 5 barriers, and the trace of the failed job is written."""
    out = tmp_path / "run.json"
    job = fgrun_job(tmp_path, 2, "--victim", "1", "--at", "5", "--fault", "kill", "barrier",
                    fgrun_args=[f"--trace={out}"])
    assert job.rc == 137, job
    events = load(out)
    barriers = track(events, 1, "X", "barrier")
    assert len(barriers) == 5, barriers
    assert track(events, 1, "i", "exit")[0]["args"]["end"] == "killed by SIGKILL (signal 9)"


def test_an_unwritable_trace_path_is_a_usage_error_before_any_worker_starts(tmp_path):
    out = tmp_path / "missing" / "run.json"
    job = fgrun_job(tmp_path, 2, "barrier", fgrun_args=[f"--trace={out}"])
    assert job.rc == 2, job
    assert (f"fgrun: error: --trace: cannot create {out}.tmp: No such file or directory"
            in job.err), job
    assert not list(tmp_path.glob("pid.*")), "a worker started"

