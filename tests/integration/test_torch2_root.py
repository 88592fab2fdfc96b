"""The wrappers of scripts/torch2-root.sh themselves: the host's data directories appear inside
the root, also for wrappers started side by side (pytest -n starts many at once)."""
import os
import shutil
import subprocess
import tempfile

import pytest

from torch2_util import PYTHON, ROOT

pytestmark = pytest.mark.torch2


def test_wrappers_started_together_in_a_new_top_level_directory_all_run(torch2):
    # A checkout under a top-level directory the root has never seen (CI clones into /check):
    # every wrapper finds the directory missing in the root and makes it.
    top = tempfile.mkdtemp(prefix="fgrun-t2-", dir="/")
    try:
        script = os.path.join(top, "hello.py")
        with open(script, "w") as f:
            f.write("import os, sys; print(os.getcwd(), sys.version_info[:2] >= (3, 12))\n")
        procs = [subprocess.Popen([PYTHON, script], cwd=top, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(12)]
        results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        for out, err, rc in results:
            assert rc == 0, err
            assert out.split() == [top, "True"], out  # trixie's python 3.13, in our directory
    finally:
        shutil.rmtree(top, ignore_errors=True)
        try:
            os.rmdir(ROOT + top)  # only ever a mount point inside the wrappers' namespaces
        except FileNotFoundError:
            pass
