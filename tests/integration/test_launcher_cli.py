"""The command line: bad input fails fast with one clear line and status 2, before any
worker starts; the store's address follows the options."""
import os
import shutil
import socket

import pytest

from conftest import free_port
from launcher_util import error_lines, fgrun_env, run, start, worker, TIMEOUT

BAD_INPUT = [
    (["--bogus"], "unknown option --bogus"),
    (["--nproc_per_node", "0"], "--nproc_per_node"),
    (["--nproc_per_node=lots"], "--nproc_per_node"),
    (["--nnodes", "3:2"], "--nnodes"),
    (["--nnodes=2"], "give each node its --node_rank"),
    (["--nnodes=1:3"], "the static rendezvous needs a fixed number of nodes"),
    (["--tee=5"], "--tee"),
    (["--redirects", "0:9"], "--redirects"),
    (["--rdzv_conf=nokey"], "--rdzv_conf"),
    (["--rdzv_backend=etcd"], "--rdzv_backend"),
    (["--rdzv_backend=c10d"], "--rdzv_endpoint"),
    (["--max_restarts=-2"], "--max_restarts"),
    (["--signals_to_handle=SIGKILL"], "SIGKILL"),
    (["--local_ranks_filter=7"], "local rank 7 does not exist"),
    (["--log_line_prefix_template=${hostname}"], "--log_line_prefix_template"),
    (["--no_python", "-m"], "--no_python and --module"),
    (["--standalone=yes"], "--standalone takes no value"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_options_exit_2_before_any_worker(fgrun, tmp_path, args, needle):
    cp = run(fgrun, *args, worker("marker.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 2, cp.stderr.decode()
    errs = error_lines(cp)
    assert len(errs) == 1 and needle in errs[0], cp.stderr.decode()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [
    ["/no/such/script.py"],
    ["no-such-program-anywhere"],
    ["--no_python", "no-such-program-anywhere"],
    ["--run_path", "/no/such/file.py"],
], ids=["script", "bare-name", "no_python", "run_path"])
def test_a_missing_program_exits_2(fgrun, args):
    cp = run(fgrun, "--standalone", *args)
    assert cp.returncode == 2
    (line,) = error_lines(cp)
    assert "not found" in line


def test_missing_program_name_and_pet_errors(fgrun):
    cp = run(fgrun, "--standalone")
    assert cp.returncode == 2 and "missing PROGRAM" in error_lines(cp)[0]
    cp = run(fgrun, worker("marker.sh"), env=fgrun_env(PET_NPROC_PER_NODE="x"))
    assert cp.returncode == 2 and "PET_NPROC_PER_NODE" in error_lines(cp)[0]


def test_a_port_in_use_is_named(fgrun, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cp = run(fgrun, f"--master_port={port}", worker("marker.sh"),
                 env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 2
    assert error_lines(cp) == [f"fgrun: error: cannot listen on 127.0.0.1:{port}: address "
                               "already in use (use --standalone or another --master_port)"]
    assert os.listdir(tmp_path) == []


def test_two_standalone_jobs_run_side_by_side(fgrun, tmp_path):
    script = ('echo "$MASTER_PORT $TORCHELASTIC_RUN_ID" > "$FG_TEST_DIR/$JOB.$RANK";'
              'i=0; while [ "$(ls "$FG_TEST_DIR" | wc -l)" -lt 4 ] && [ $i -lt 1000 ]; do '
              'sleep 0.02; i=$((i + 1)); done')
    jobs = [start(fgrun, "--standalone", "--nproc_per_node=2", "--no_python", "sh", "-c",
                  script, env=fgrun_env(FG_TEST_DIR=tmp_path, JOB=j)) for j in "ab"]
    for p in jobs:
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err.decode()
    seen = {name: open(tmp_path / name).read().split() for name in os.listdir(tmp_path)}
    assert seen["a.0"] == seen["a.1"] and seen["b.0"] == seen["b.1"]
    assert seen["a.0"][0] != seen["b.0"][0], "both jobs got the same port"
    assert seen["a.0"][1] != seen["b.0"][1], "both jobs got the same run id"


def test_c10d_endpoint_is_where_the_store_listens(fgrun, tmp_path):
    port = free_port()
    cp = run(fgrun, "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}",
             "--rdzv_id=abc", "--no_prefix", "--no_python", "sh", "-c",
             'echo "$MASTER_ADDR:$MASTER_PORT $TORCHELASTIC_RUN_ID"')
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode().split() == [f"127.0.0.1:{port}", "abc"]


def test_the_store_listens_before_workers_start(fgrun):
    code = ("import os, socket; s = socket.create_connection((os.environ['MASTER_ADDR'], "
            "int(os.environ['MASTER_PORT'])), timeout=5); print('connected')")
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_prefix", "--no_python",
             "/usr/bin/python3", "-c", code)
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode().split() == ["connected", "connected"]


def test_help_and_version(fgrun):
    cp = run(fgrun, "--help")
    out = " ".join(cp.stdout.decode().split())  # the help text is wrapped
    assert cp.returncode == 0
    for text in ("--nproc-per-node, --nproc_per_node", "(default: 1:1)", "--standalone",
                 "--term_grace", "(default: 30)", "-t, --tee", "PET_", "Rendezvous"):
        assert text in out, text
    cp = run(fgrun, "--version")
    assert cp.returncode == 0 and cp.stdout.decode().startswith("fgrun ")


def test_scenarios_need_fgscenario_next_to_fgrun(fgrun, tmp_path):
    """fgrun alone runs any program (it needs no helper of its own); a scenario needs
    fgscenario next to it."""
    lonely = tmp_path / "bin"
    lonely.mkdir()
    shutil.copy(fgrun, lonely / "fgrun")
    cp = run(str(lonely / "fgrun"), "--standalone", "--no_python", "true")
    assert cp.returncode == 0, cp.stderr.decode()
    cp = run(str(lonely / "fgrun"), "--standalone", "checkpoint-integration")
    assert cp.returncode == 2
    (line,) = error_lines(cp)
    assert "fgscenario" in line and "missing" in line


def test_gpu_workers_need_a_gpu(fgrun):
    if os.path.exists("/proc/driver/nvidia/gpus") or any(
            n.startswith("nvidia") and n[6:].isdigit() for n in os.listdir("/dev")):
        pytest.skip("this machine has a GPU")
    cp = run(fgrun, "--standalone", "--nproc_per_node=gpu", "--no_python", "true")
    assert cp.returncode == 2 and "no GPU" in error_lines(cp)[0]
    cp = run(fgrun, "--standalone", "--nproc_per_node=auto", "--no_prefix", "--no_python",
             "sh", "-c", "echo $LOCAL_WORLD_SIZE")
    assert cp.returncode == 0
    assert set(cp.stdout.decode().split()) == {str(os.cpu_count())}


@pytest.mark.parametrize("spelling", ["build-sync", "checkpoint_integration",
                                      "dataloader_dispatcher", "pipeline_split"])
def test_fgrun_takes_each_scenario_with_dashes_or_underscores(fgrun, spelling):
    """fgrun hands a scenario to fgscenario under either spelling (Forgather's too), as
    fgscenario itself accepts; a near miss is still no scenario."""
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", spelling)
    assert cp.returncode == 0, cp.stderr.decode()
    assert b"ALL CHECKS PASSED" in cp.stdout, cp.stdout.decode()
    cp = run(fgrun, "--standalone", "--nproc_per_node=1", spelling + "x")
    assert cp.returncode == 2 and b"not found" in cp.stderr, cp.stderr.decode()
