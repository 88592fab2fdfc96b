"""fgrun gives each worker torchrun's environment and runs PROGRAM the way torchrun does."""
import os
import re

import pytest

from conftest import free_port
from launcher_util import fgrun_env, run, worker

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def read_env(path):
    data = open(path, "rb").read().decode()
    return dict(item.split("=", 1) for item in data.split("\0") if "=" in item)


def test_each_rank_gets_torchruns_variables(fgrun, tmp_path):
    """Item 1: fgrun --nproc_per_node=4 --no_python <env printer>."""
    env = fgrun_env(FG_TEST_DIR=tmp_path, NCCL_ASYNC_ERROR_HANDLING="0")
    env.pop("OMP_NUM_THREADS", None)
    env.pop("TORCH_NCCL_ASYNC_ERROR_HANDLING", None)
    env["RANK"] = "99"  # a stale value from the caller must not leak through
    cp = run(fgrun, "--nproc_per_node=4", "--no_python", "--max_restarts=3",
             worker("env_dump.sh"), env=env)
    assert cp.returncode == 0, cp.stderr.decode()
    ports = set()
    for rank in range(4):
        e = read_env(tmp_path / f"env.{rank}")
        expected = {
            "RANK": str(rank), "LOCAL_RANK": str(rank), "GROUP_RANK": "0",
            "ROLE_RANK": str(rank), "ROLE_NAME": "default", "LOCAL_WORLD_SIZE": "4",
            "WORLD_SIZE": "4", "GROUP_WORLD_SIZE": "1", "ROLE_WORLD_SIZE": "4",
            "MASTER_ADDR": "127.0.0.1", "TORCHELASTIC_RESTART_COUNT": "0",
            "TORCHELASTIC_MAX_RESTARTS": "3", "TORCHELASTIC_RUN_ID": "none",
            "TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1",
            "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
            "NCCL_ASYNC_ERROR_HANDLING": "0",  # the caller's value is kept
            "PATH": os.environ["PATH"],        # everything else is inherited
        }
        got = {k: e.get(k) for k in expected}
        assert got == expected, f"rank {rank}"
        assert re.fullmatch(r".*/attempt_0/%d/error\.json" % rank, e["TORCHELASTIC_ERROR_FILE"])
        ports.add(e["MASTER_PORT"])
    assert ports == {"29500"}
    assert "OMP_NUM_THREADS" in cp.stderr.decode()  # torchrun's notice, once
    assert cp.stderr.decode().count("OMP_NUM_THREADS") == 1


def test_one_worker_keeps_omp_unset_and_role_is_passed(fgrun, tmp_path):
    port = free_port()
    env = fgrun_env(FG_TEST_DIR=tmp_path)
    env.pop("OMP_NUM_THREADS", None)
    cp = run(fgrun, "--role", "trainer", "--master-port", str(port),
             "--no-python", worker("env_dump.sh"), env=env)
    assert cp.returncode == 0, cp.stderr.decode()
    e = read_env(tmp_path / "env.0")
    assert "OMP_NUM_THREADS" not in e
    assert e["ROLE_NAME"] == "trainer"
    assert e["MASTER_PORT"] == str(port)
    assert e["WORLD_SIZE"] == "1"


def test_standalone_makes_up_a_run_id_and_a_port(fgrun, tmp_path):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_python", worker("env_dump.sh"),
             env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 0, cp.stderr.decode()
    e0, e1 = read_env(tmp_path / "env.0"), read_env(tmp_path / "env.1")
    assert UUID.match(e0["TORCHELASTIC_RUN_ID"]), e0["TORCHELASTIC_RUN_ID"]
    assert e0["TORCHELASTIC_RUN_ID"] == e1["TORCHELASTIC_RUN_ID"]
    assert e0["MASTER_ADDR"] == "127.0.0.1"
    assert e0["MASTER_PORT"] != "29500" and int(e0["MASTER_PORT"]) > 0


def test_pet_variables_stand_in_for_options(fgrun, tmp_path):
    env = fgrun_env(FG_TEST_DIR=tmp_path, PET_NPROC_PER_NODE=3, PET_STANDALONE=1,
                    PET_RDZV_ID="ignored-by-standalone", PET_MAX_RESTARTS=5, PET_NO_PYTHON=1)
    cp = run(fgrun, worker("env_dump.sh"), env=env)
    assert cp.returncode == 0, cp.stderr.decode()
    assert sorted(os.listdir(tmp_path)) == ["env.0", "env.1", "env.2"]
    e = read_env(tmp_path / "env.2")
    assert e["WORLD_SIZE"] == "3"
    assert e["TORCHELASTIC_MAX_RESTARTS"] == "5"
    assert UUID.match(e["TORCHELASTIC_RUN_ID"])


def test_python_scripts_modules_and_run_path(fgrun, tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import sys, os\n"
                      "print('argv', sys.argv[1:], 'rank', os.environ['RANK'],"
                      " 'unbuffered', int('-u' in sys.orig_argv))\n")
    (tmp_path / "showmod.py").write_text(script.read_text())
    env = fgrun_env(PYTHONPATH=tmp_path)
    for args in (["--standalone", str(script), "a", "--flag"],
                 ["--standalone", "-m", "showmod", "a", "--flag"],
                 ["--standalone", "--run_path", str(script), "a", "--flag"]):
        cp = run(fgrun, *args, env=env)
        assert cp.returncode == 0, (args, cp.stderr.decode())
        out = cp.stdout.decode()
        assert "argv ['a', '--flag'] rank 0" in out, (args, out)
    cp = run(fgrun, "--standalone", str(script), env=env)
    assert "unbuffered 1" in cp.stdout.decode()  # torchrun runs python -u


def test_local_rank_macro_is_filled_in(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_prefix", "--no_python",
             "echo", "lr=${local_rank}")
    assert cp.returncode == 0
    assert sorted(cp.stdout.decode().split()) == ["lr=0", "lr=1"]


def test_executables_run_directly_without_no_python(fgrun, tmp_path):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_prefix", "echo", "direct")
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode().split() == ["direct", "direct"]
    cp = run(fgrun, "--standalone", worker("print_lines.sh"))
    assert cp.returncode == 0
    assert cp.stdout.decode() == "[rank0]:out from rank 0\n"


def test_python_interpreter_comes_from_python_flag_or_env(fgrun, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('hi')\n")
    env = fgrun_env()
    env["PYTHON_EXEC"] = "/nonexistent/python"
    cp = run(fgrun, "--standalone", str(script), env=env)
    assert cp.returncode == 2
    assert "PYTHON_EXEC" in cp.stderr.decode()
    cp = run(fgrun, "--standalone", "--python", "/usr/bin/python3", str(script), env=env)
    assert cp.returncode == 0, cp.stderr.decode()
    assert cp.stdout.decode() == "[rank0]:hi\n"
