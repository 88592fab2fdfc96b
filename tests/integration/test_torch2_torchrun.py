"""fgrun side by side with torchrun 2.6 (both in the Debian trixie root of
scripts/torch2-root.sh): the same probe under both launchers, the results compared. What
still differs is what docs/cli.md lists under "Differences from torchrun 2.6"; each
difference here is asserted as it is, so a change on either side shows."""
import json
import os
import signal

import pytest

from conftest import free_port
from launcher_util import run_or_stacks, worker
from torch2_util import PYTHON, TIMEOUT, TORCHRUN, sigterm_when_ready, torch2_env

pytestmark = pytest.mark.torch2
PROBE = worker("torch2_probe.py")
# Variables fgrun gives its workers on top of torchrun's (docs/cli.md): libfg's progress
# file and torch 1.13's name of TORCH_NCCL_ASYNC_ERROR_HANDLING.
FGRUN_ADDS = {"FG_PROGRESS_FILE", "NCCL_ASYNC_ERROR_HANDLING"}
# ... and, from its PMIx server (--pmix auto, where libpmix is), what PMIx_server_setup_fork
# gives a client and Open MPI's variables (docs/cli.md, "The workers' environment").
PMIX_PREFIXES = ("PMIX_", "OMPI_")
# torchrun 2.6's prefix of a tee'd line (it has no --log-line-prefix-template), which fgrun
# gives every console line when asked.
TORCHRUN_PREFIX = "--log-line-prefix-template=[${role_name}${local_rank}]:"


def launcher_env(**extra):
    """torch2_env without PYTHON_EXEC: torchrun would exec it inside the root, where the
    wrapper does not exist; fgrun gets --python instead."""
    env = torch2_env(**extra)
    del env["PYTHON_EXEC"]
    return env


def launch(which, *args, env=None, same_prefix=False, **kw):
    """One run of torchrun 2.6 or fgrun (with the root's python) on its own port; with
    same_prefix, fgrun prefixes lines as torchrun 2.6 does."""
    head = [TORCHRUN] if which == "torchrun" else [bin_fgrun(), f"--python={PYTHON}",
                                                   *([TORCHRUN_PREFIX] if same_prefix else [])]
    port = [] if "--standalone" in args else [f"--master-port={free_port()}"]
    return run_or_stacks([*head, *port, *args], env or launcher_env(), TIMEOUT, **kw)


def bin_fgrun():
    from conftest import bin_path
    return bin_path("fgrun")


def both(*args, **kw):
    return {w: launch(w, *args, **kw) for w in ("torchrun", "fgrun")}


def console(text):
    """The workers' console lines, sorted, without the launchers' own messages and torch's
    warnings."""
    own = ("fgrun:", "W", "E", "I", "*")
    return sorted(l for l in text.splitlines() if l and not l.startswith(own))


@pytest.mark.parametrize("rdzv", [["--rdzv-id=sbs", "--max-restarts=1"], ["--standalone"]],
                         ids=["static", "standalone"])
def test_the_same_worker_environment(torch2, tmp_path, rdzv):
    runs = {}
    for which in ("torchrun", "fgrun"):
        out = tmp_path / which
        cp = launch(which, "--nproc-per-node=2", *rdzv, PROBE, "env_dump", str(out))
        assert cp.returncode == 0, cp.stderr
        runs[which] = [json.loads(open(f"{out}.{r}").read()) for r in range(2)]
    for r in range(2):
        theirs, ours = runs["torchrun"][r], runs["fgrun"][r]
        t, f = dict(theirs["env"]), dict(ours["env"])
        assert (theirs["rank"], theirs["world"]) == (ours["rank"], ours["world"]) == (r, 2)
        assert FGRUN_ADDS <= set(f) and not FGRUN_ADDS & set(t)
        for k in FGRUN_ADDS:
            del f[k]
        assert not [k for k in t if k.startswith(PMIX_PREFIXES)]
        if any(k.startswith("PMIX_") for k in f):
            assert f["PMIX_RANK"] == str(r) and f["OMPI_COMM_WORLD_SIZE"] == "2"
        f = {k: v for k, v in f.items() if not k.startswith(PMIX_PREFIXES)}
        # Ports and temp paths are each run's own; the error file's place in it is not.
        for k in ("MASTER_PORT",):
            assert t.pop(k).isdigit() and f.pop(k).isdigit()
        suffix = f"/attempt_0/{r}/error.json"
        assert t.pop("TORCHELASTIC_ERROR_FILE").endswith(suffix)
        assert f.pop("TORCHELASTIC_ERROR_FILE").endswith(suffix)
        if "--standalone" in rdzv:
            # A fresh uuid each (ids), and the store's address: torchrun says localhost,
            # fgrun the 127.0.0.1 it listens on.
            assert len(t.pop("TORCHELASTIC_RUN_ID")) == len(f.pop("TORCHELASTIC_RUN_ID")) == 36
            assert (t.pop("MASTER_ADDR"), f.pop("MASTER_ADDR")) == ("localhost", "127.0.0.1")
        assert f == t
        assert ours["cwd"] == theirs["cwd"]
        assert ours["argv"][:2] == theirs["argv"][:2] == [PROBE, "env_dump"]


@pytest.mark.parametrize("probe,exit_env,status,fgrun_says,torchrun_says", [
    (["die", "SIGKILL"], {}, 128 + 9, "killed by SIGKILL (signal 9)", "Signal 9 (SIGKILL)"),
    (["lines", "1"], {"PROBE_EXIT": 3}, 3, "exited with code 3", "exitcode  : 3"),
], ids=["sigkill", "exit-3"])
def test_exit_status_on_failure(torch2, probe, exit_env, status, fgrun_says, torchrun_says):
    """Both name rank 1 and how it ended; torchrun exits 1 whatever happened, fgrun with the
    root cause's status (128+N for signal N). (Success, 0 from both, is every other test.)"""
    runs = both("--nproc-per-node=2", PROBE, *probe, env=launcher_env(**exit_env))
    assert runs["fgrun"].returncode == status, runs["fgrun"].stderr
    assert runs["torchrun"].returncode == 1, runs["torchrun"].stderr
    assert fgrun_says in runs["fgrun"].stderr and "rank 1 (local_rank 1" in runs["fgrun"].stderr
    assert torchrun_says in runs["torchrun"].stderr, runs["torchrun"].stderr
    assert "rank      : 1 (local_rank: 1)" in runs["torchrun"].stderr


@pytest.mark.parametrize("which,status", [("torchrun", 1), ("fgrun", 143)])
def test_sigterm_to_the_launcher_reaches_every_worker(torch2, tmp_path, which, status):
    """Both pass SIGTERM on to the workers (each one's handler runs); torchrun then exits 1
    (SignalException), fgrun 128+15."""
    head = [TORCHRUN] if which == "torchrun" else [bin_fgrun(), f"--python={PYTHON}"]
    rc, err = sigterm_when_ready([*head, f"--master-port={free_port()}", "--nproc-per-node=2", PROBE,
                          "term", str(tmp_path)], launcher_env(), tmp_path)
    assert rc == status, err
    for r in range(2):
        assert (tmp_path / f"term.{r}").read_text() == str(int(signal.SIGTERM))


def tree(top):
    """{relative path: content} of every file under top."""
    out = {}
    for d, _, files in os.walk(top):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, top)] = open(p).read()
    return out


def test_the_same_log_dir_layout(torch2, tmp_path):
    """--log-dir with --redirects and --tee per rank: the same files with the same contents
    under the run's directory (torchrun names it <run id>_<random>, fgrun <run id>), and the
    same console."""
    runs, trees = {}, {}
    for which in ("torchrun", "fgrun"):
        logs = tmp_path / which
        runs[which] = launch(which, "--nproc-per-node=2", "--rdzv-id=job7", f"--log-dir={logs}",
                             "--redirects=1", "--tee=0:2", PROBE, "lines", "2", same_prefix=True)
        assert runs[which].returncode == 0, runs[which].stderr
        (run_dir,) = os.listdir(logs)
        trees[which] = (run_dir, tree(logs / run_dir))
    assert trees["fgrun"][0] == "job7" and trees["torchrun"][0].startswith("job7_")
    assert trees["fgrun"][1] == trees["torchrun"][1]
    assert sorted(trees["fgrun"][1]) == ["attempt_0/0/stderr.log", "attempt_0/0/stdout.log",
                                         "attempt_0/1/stdout.log"]
    assert trees["fgrun"][1]["attempt_0/1/stdout.log"] == "out 1 0\nout 1 1\n"
    # Rank 0's stderr is tee'd (prefixed by both); rank 1's goes to the console untouched by
    # torchrun, while fgrun prefixes every console line.
    t, f = console(runs["torchrun"].stderr), console(runs["fgrun"].stderr)
    assert [l for l in t if "err 0" in l] == [l for l in f if "err 0" in l] == [
        "[default0]:err 0 0", "[default0]:err 0 1"]
    assert [l for l in t if "err 1" in l] == ["err 1 0", "err 1 1"]
    assert [l for l in f if "err 1" in l] == ["[default1]:err 1 0", "[default1]:err 1 1"]
    assert console(runs["torchrun"].stdout) == console(runs["fgrun"].stdout) == []


@pytest.mark.parametrize("tee", [[], ["--tee=3"]], ids=["console", "tee"])
def test_the_same_local_ranks_filter(torch2, tmp_path, tee):
    logs = [f"--log-dir={tmp_path}/logs"] if tee else []
    runs = {}
    for which in ("torchrun", "fgrun"):
        runs[which] = launch(which, "--nproc-per-node=3", "--local-ranks-filter=0,2", *tee,
                             *[l.replace("logs", f"logs-{which}") for l in logs], PROBE,
                             "lines", "1", same_prefix=True)
        assert runs[which].returncode == 0, runs[which].stderr
    for stream in ("stdout", "stderr"):
        t = console(getattr(runs["torchrun"], stream))
        f = console(getattr(runs["fgrun"], stream))
        kind = "out" if stream == "stdout" else "err"
        assert f == [f"[default0]:{kind} 0 0", f"[default2]:{kind} 2 0"]
        # Without --tee torchrun leaves worker output alone: no prefix.
        assert t == (f if tee else [f"{kind} 0 0", f"{kind} 2 0"])
    if tee:  # the filter is for the console only: every rank's logs are kept
        for which in ("torchrun", "fgrun"):
            (run_dir,) = os.listdir(tmp_path / f"logs-{which}")
            files = tree(tmp_path / f"logs-{which}" / run_dir)
            assert sorted(files) == [f"attempt_0/{r}/{s}.log" for r in range(3)
                                     for s in ("stderr", "stdout")]


def test_mpi_backend_is_one_world_under_fgrun_a_world_per_worker_under_torchrun(torch2):
    """fgrun's PMIx server makes torch's mpi backend one world of the job's ranks; under
    torchrun 2.6 (no PMIx server) each worker is rank 0 of a world of its own."""
    runs = both("--nproc-per-node=2", "--tee=1", PROBE, "mpi", same_prefix=True)
    for cp in runs.values():
        assert cp.returncode == 0, cp.stderr
    assert console(runs["torchrun"].stdout) == [
        "[default0]:rank 0/1 mpi ok (launcher RANK 0, WORLD_SIZE 2)",
        "[default1]:rank 0/1 mpi ok (launcher RANK 1, WORLD_SIZE 2)"]
    pmix = "no PMIx" not in runs["fgrun"].stderr  # no warning: the server runs
    n = 2 if pmix else 1
    assert console(runs["fgrun"].stdout) == [
        f"[default{r}]:rank {r if pmix else 0}/{n} mpi ok (launcher RANK {r}, WORLD_SIZE 2)"
        for r in range(2)], runs["fgrun"].stderr


def test_a_restart_reuses_attempt_0s_keys_under_torchrun_not_under_fgrun(torch2):
    """torch 2.x's default group keeps its keys under default_pg/ in every attempt: torchrun
    2.6 leaves attempt 0's in its store (pytorch#135712), fgrun erases them."""
    runs = both("--nproc-per-node=2", "--max-restarts=1", PROBE, "restart")
    assert runs["fgrun"].returncode == 0, runs["fgrun"].stderr
    assert "attempt 0's default_pg keys are still there" in runs["torchrun"].stdout
    assert runs["torchrun"].returncode == 1


def test_local_addr_is_master_addr_under_torchrun_only(torch2, tmp_path):
    """torchrun 2.6 gives its --local-addr as MASTER_ADDR (of the second store it starts on
    node 0); fgrun gives its own store's address and uses --local-addr in the rendezvous."""
    for which, want in (("torchrun", "127.0.0.2"), ("fgrun", "127.0.0.1")):
        out = tmp_path / which
        cp = launch(which, "--standalone", "--local-addr=127.0.0.2", "--nproc-per-node=1",
                    PROBE, "env_dump", str(out))
        assert cp.returncode == 0, cp.stderr
        assert json.loads(open(f"{out}.0").read())["env"]["MASTER_ADDR"] == want, which


def test_the_prefix_template_variable_means_the_same(torch2):
    """TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE (torchrun 2.6 has no option for it) prefixes the
    tee'd lines alike."""
    env = launcher_env(TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE="<${role_name}:${rank}>")
    runs = both("--nproc-per-node=2", "--tee=3", PROBE, "lines", "1", env=env)
    for which, cp in runs.items():
        assert cp.returncode == 0, cp.stderr
    for stream in ("stdout", "stderr"):
        t, f = (console(getattr(runs[w], stream)) for w in ("torchrun", "fgrun"))
        kind = "out" if stream == "stdout" else "err"
        assert t == f == [f"<default:{r}>{kind} {r} 0" for r in range(2)]


def test_logs_specs_fails_under_both(torch2):
    """torchrun 2.6 looks the name up among the torchrun.logs_specs entry points and fails
    when it is not there; fgrun loads none, and says so before starting anything."""
    runs = both("--logs-specs=no_such_specs", "--nproc-per-node=1", PROBE, "lines", "1")
    assert runs["torchrun"].returncode == 1
    assert "torchrun.logs_specs[no_such_specs]" in runs["torchrun"].stderr
    assert runs["fgrun"].returncode == 2
    assert "cannot load a Python entry point" in runs["fgrun"].stderr
