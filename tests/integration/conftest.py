"""Shared fixtures for the integration tests: where the binaries are, free ports,
and a check that no process of a job is left behind."""
import functools
import os
import random
import shutil
import socket
import subprocess

import pytest

BUILD = os.environ.get("FG_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
BIN = os.path.abspath(os.path.join(BUILD, "bin"))
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, the one with python3-torch

# Run inside a Slurm job (srun make test), the programs the tests start must not take
# themselves for srun's tasks: libfg and fgrun read a step's SLURM_* variables.
for _name in [k for k in os.environ if k.startswith("SLURM_")]:
    del os.environ[_name]


def bin_path(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run make first")
    return path


# Ports for servers the tests start: below the kernel's ephemeral range (32768-60999), where
# bind(0) and every outgoing connection take theirs, so a port picked here and released is
# not taken by someone's connection before the server binds it; a slice per xdist worker.
PORT_SLICE = 2000
_PORT_BASE = 20000 + PORT_SLICE * (int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0) % 6)
_port_rng = random.Random(os.getpid())


def free_port():
    for _ in range(200):
        port = _PORT_BASE + _port_rng.randrange(PORT_SLICE)
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every try taken: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=None)
def have_torch():
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import torch.distributed"],
                       capture_output=True)
    return r.returncode == 0


@functools.lru_cache(maxsize=None)
def have_mpi():
    return shutil.which("mpirun") is not None


@pytest.fixture
def fgrun():
    return bin_path("fgrun")


@pytest.fixture
def fgstore():
    return bin_path("fgstore")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)
        if "torch" in item.keywords and not have_torch():
            item.add_marker(pytest.mark.skip(reason="python3-torch is not installed"))
        if "mpi" in item.keywords and not have_mpi():
            item.add_marker(pytest.mark.skip(reason="Open MPI (mpirun) is not installed"))


@pytest.fixture
def torch2():
    """torch 2.6's version in the root of scripts/torch2-root.sh (skips or fails without it)."""
    from torch2_util import require_torch2
    return require_torch2()
