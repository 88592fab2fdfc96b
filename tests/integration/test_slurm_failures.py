"""Jobs that end badly on a real Slurm cluster (slurm.py), through the fgrun-per-node template:
scancel (every worker gone within KillWait, nothing reparented to init), a signal Slurm
delivers (scancel --signal, sbatch --signal) reaching the workers through fgrun's
--signals_to_handle, and a node lost mid-job (its slurmd and everything on it killed), after
which the survivors re-form within --max_restarts."""
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from launcher_util import alive, worker
from slurm import DEFAULT_CONF, new_slurm, slurm, slurm_session  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.slurm
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PER_NODE = os.path.join(ROOT, "scripts", "slurm", "fgrun-per-node.sbatch")
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
FAST_RDZV = "join_timeout=60,last_call_timeout=1"
USR1 = "--signals_to_handle SIGTERM,SIGUSR1"
# Slurm signals every process of the step, the workers with fgrun: a worker that lingers this
# long after its signal leaves fgrun time to get its own while the worker runs, which is what
# these tests look at (else, on a loaded machine, the workers may all end first).
LINGER = 1
ORPHAN_GRACE = 0.5


def wait_files(d, names, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.exists(os.path.join(d, n)) and os.path.getsize(os.path.join(d, n))
               for n in names):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {names} in {d} after {timeout}s: {sorted(os.listdir(d))}")


def pids(d, names):
    return [int(open(os.path.join(d, n)).read().split()[0]) for n in names]


def parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else int(fields[1])


def orphans(c):
    """Live processes on the nodes whose parent is init, but for slurmstepd (which Slurm
    starts so, on purpose)."""
    return {pid: cmd for pid, cmd in c.processes().items()
            if parent(pid) == 1 and not cmd.startswith("slurmstepd")}


def submit_in_background(pool, c, *args, **kw):
    return pool.submit(c.sbatch, PER_NODE, *args, **kw)


def test_scancel_ends_every_worker_within_killwait(slurm, tmp_path):
    """Four workers, each with a child of its own, under two agents; scancel: all eight gone
    within KillWait, none a child of init for longer than a moment meanwhile."""
    env = slurm.env(NPROC_PER_NODE=2, RDZV_CONF=FAST_RDZV, FG_TEST_DIR=str(tmp_path))
    job = slurm.sbatch(PER_NODE, "--no_python", worker("sleep_with_child.sh"),
                       options=["--nodes=2"], out_dir=tmp_path, env=env, wait=False)
    names = [f"{k}.{r}" for k in ("worker", "child") for r in range(4)]
    wait_files(tmp_path, names)
    procs = pids(tmp_path, names)
    workers = procs[:4]
    assert all("fgrun" in open(f"/proc/{parent(w)}/cmdline").read() for w in workers)
    cancelled = time.monotonic()
    slurm.run(["scancel", str(job)], check=True, timeout=30)
    # Slurm signals the step's processes one by one, so a worker's child may outlive the
    # worker by the moment it takes fgrun to signal the worker's group: an orphan counts
    # when it is seen for longer than that.
    first_seen, lasting = {}, {}
    while any(alive(p) for p in procs) and time.monotonic() - cancelled < 30:
        now = time.monotonic()
        for pid, cmd in orphans(slurm).items():
            if now - first_seen.setdefault(pid, now) > ORPHAN_GRACE:
                lasting[pid] = cmd
        time.sleep(0.02)
    took = time.monotonic() - cancelled
    left = [p for p in procs if alive(p)]
    assert not left, f"still running {took:.1f}s after scancel: {left}"
    assert took < DEFAULT_CONF["KillWait"], f"took {took:.1f}s, KillWait is {DEFAULT_CONF}"
    assert not lasting, f"reparented to init for over {ORPHAN_GRACE}s: {lasting}"
    jobs, rest = slurm.wait_quiet()
    assert not rest, rest
    # Slurm's SIGTERM reaches the workers too: fgrun may get its own before or after they end.
    assert "fgrun: got SIGTERM: " in slurm.output(tmp_path, job)


@pytest.mark.parametrize("handled", [True, False], ids=["listed", "not-listed"])
def test_scancel_signal_usr1_reaches_the_workers(slurm, tmp_path, handled):
    """scancel --signal=USR1: Slurm signals every process of the step. With SIGUSR1 in
    --signals_to_handle, fgrun passes it on, stops the job and exits 128+10, and its
    watchdog lives on; without, fgrun dies of it, as any program would, its workers may die
    before their handlers run (the parent-death signal), and nothing is left (the fixture)."""
    env = slurm.env(NPROC_PER_NODE=2, RDZV_CONF=FAST_RDZV, FG_TEST_DIR=str(tmp_path),
                    FGRUN_ARGS=USR1 if handled else "", FG_TRAP_LINGER=LINGER if handled else 0)
    with ThreadPoolExecutor(1) as pool:
        run = submit_in_background(pool, slurm, "--no_python", worker("trap_signals.sh"),
                                   options=["--nodes=2", "--job-name=usr1"], out_dir=tmp_path,
                                   env=env)
        wait_files(tmp_path, [f"ready.{r}" for r in range(4)])
        slurm.run(["scancel", "--signal=USR1", "--name=usr1"], check=True, timeout=30)
        rc, out, _ = run.result(timeout=120)
    if handled:
        for r in range(4):
            assert open(tmp_path / f"got.{r}").read().strip() == "USR1", out
        assert rc == 138, out
        assert out.count("fgrun: got SIGUSR1: passing it to the workers and stopping") == 2, out
        assert out.count("fgrun: stopped by SIGUSR1 (attempt 0); exit status 138") == 2, out
        assert "watchdog exited unexpectedly" not in out, out
    else:
        assert rc != 0, out
        assert "User defined signal 1" in out, out


def test_sbatch_signal_before_the_time_limit_reaches_the_workers(slurm, tmp_path):
    """sbatch --signal=USR1@60 with a one-minute limit: Slurm signals the steps (within its
    30 s event loop), fgrun passes it to the workers and the job ends with 128+10."""
    env = slurm.env(NPROC_PER_NODE=1, RDZV_CONF=FAST_RDZV, FG_TEST_DIR=str(tmp_path),
                    FGRUN_ARGS=USR1, FG_TRAP_LINGER=LINGER)
    rc, out, _ = slurm.sbatch(PER_NODE, "--no_python", worker("trap_signals.sh"),
                              options=["--nodes=2", "--time=1", "--signal=USR1@60"],
                              out_dir=tmp_path, env=env, timeout=150)
    assert rc == 138, out
    for r in range(2):
        assert open(tmp_path / f"got.{r}").read().strip() == "USR1", out
    assert out.count("fgrun: got SIGUSR1: passing it to the workers and stopping") == 2, out


def test_a_lost_node_leaves_the_survivors_to_reform(new_slurm, tmp_path):
    """NNODES=1:2, MAX_RESTARTS=1, submitted with --no-kill: n2 crashes (its slurmd, its
    agent and its worker killed at once). The agent on n1 names the node that went quiet,
    re-forms alone and finishes; Slurm marks n2 down and the job ends with status 0."""
    c = new_slurm(SlurmdTimeout=3, MessageTimeout=2)
    env = c.env(NNODES="1:2", MAX_RESTARTS=1, NPROC_PER_NODE=1, FG_TEST_DIR=str(tmp_path),
                RDZV_CONF="keep_alive_interval=0.5,keep_alive_max_attempt=4,last_call_timeout=1,"
                          "join_timeout=60")
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(c.sbatch, PER_NODE, "--no_python",
                          os.path.join(SCRIPTS, "slurm_until_restart.sh"),
                          options=["--nodes=2", "--no-kill"], out_dir=tmp_path, env=env,
                          timeout=150)
        wait_files(tmp_path, ["worker.0", "worker.1"])
        lost_worker = pids(tmp_path, ["worker.1"])[0]
        c.crash("n2")
        assert not alive(lost_worker)
        rc, out, _ = run.result(timeout=150)
    assert rc == 0, out
    addr = c.addr["n2"]
    assert (f"round 0 ends: node 1 ({addr}, pid" in out and
            "sent no keep-alive for 2 s; forming a new round (restart 1 of 1)" in out), out
    assert "rendezvous round 1: 1 node, 1 workers" in out, out
    assert "fgrun: all 1 workers succeeded after 1 restart" in out, out
    assert "srun: error: Node failure on n2" in out, out
    attempts = open(tmp_path / "attempts").read().split("\n")
    assert "0 n1 1 1" in attempts, attempts  # rank 0 on n1, restart 1, a world of 1
    assert c.node_states()["n2"].startswith("down"), c.node_states()
    assert not c.processes(["n1"]), c.processes(["n1"])
