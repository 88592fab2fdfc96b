"""The torch 2.6 reference: the Debian trixie root that scripts/torch2-root.sh builds, and its
wrappers (the root's python3 and torchrun, run with the host's files and this environment)."""
import functools
import os
import signal
import subprocess

import pytest

from launcher_util import kill_all, read_pids, wait_for_files

ROOT = (os.environ.get("FG_TORCH2_ROOT") or "/var/lib/fgrun/torch2").rstrip("/")
PYTHON = ROOT + "-python"
TORCHRUN = ROOT + "-torchrun"
REQUIRED = os.environ.get("FG_REQUIRE_TORCH2") == "1"
# Each torch 2.6 process spends about 2 s of CPU importing torch: on a loaded 2-core machine a
# 4-rank job under torchrun takes half a minute. Generous, as correctness tests should be.
TIMEOUT = 300


@functools.lru_cache(maxsize=None)
def torch2_version():
    """torch's version in the root, or why there is none."""
    for w in (PYTHON, TORCHRUN):
        if not os.access(w, os.X_OK):
            return None, f"{w} is missing: run scripts/torch2-root.sh (or scripts/install-deps.sh)"
    r = subprocess.run([PYTHON, "-c", "import torch.distributed, torch; print(torch.__version__)"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return None, f"{PYTHON} cannot import torch.distributed: {r.stderr.strip()[-500:]}"
    version = r.stdout.strip()
    if not version.startswith("2."):
        return None, f"{ROOT} has torch {version}, not 2.x"
    return version, None


def require_torch2():
    """Skips the test without the root; under make check (FG_REQUIRE_TORCH2=1) fails it."""
    version, why = torch2_version()
    if version is None:
        (pytest.fail if REQUIRED else pytest.skip)(why)
    return version


def torch2_env(**extra):
    """The environment for fgrun or torchrun running torch 2.6 workers: nothing of the
    caller's launcher variables, PYTHON_EXEC naming the root's python."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PET_", "TORCHELASTIC_", "MASTER_", "LOCAL_", "GROUP_", "ROLE_"))
           and k not in ("RANK", "WORLD_SIZE", "OMP_NUM_THREADS")}
    env["PYTHON_EXEC"] = PYTHON
    env.update({k: str(v) for k, v in extra.items()})
    return env


def sigterm_when_ready(argv, env, ready_dir, nranks=2):
    """Starts a launcher, sends it SIGTERM once every worker wrote ready.<rank>, and returns
    its exit status and stderr; the launcher and the workers are killed whatever happens."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    ready = [ready_dir / f"ready.{r}" for r in range(nranks)]
    pids = []
    try:
        wait_for_files(ready, timeout=TIMEOUT)
        pids = read_pids(ready)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=TIMEOUT)
    finally:
        p.kill()
        kill_all(pids)
    return p.returncode, err
