"""Shared fixtures for the integration tests: where the binaries are, free ports,
and a check that no process of a job is left behind."""
import functools
import os
import shutil
import socket
import subprocess

import pytest

BUILD = os.environ.get("FG_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
BIN = os.path.abspath(os.path.join(BUILD, "bin"))
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, the one with python3-torch


def bin_path(name):
    path = os.path.join(BIN, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run make first")
    return path


def free_port():
    with socket.socket() as s:
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
