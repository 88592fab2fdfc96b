"""torch 2.6's TCPStore client (the root of scripts/torch2-root.sh) against fgstore and against
torch 2.6's own server: one script, the results compared. (libfg's C client against torch
2.6's server: test_store_client.py's torch2-auto cases.)"""
import json
import os
import subprocess

import pytest

from store_util import Fgstore, TorchStore
from torch2_util import PYTHON

pytestmark = pytest.mark.torch2
OPS_SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "torch2_store_ops.py")


def run_ops(server):
    r = subprocess.run([PYTHON, OPS_SCRIPT, server.host, str(server.port)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_torch2_client_gets_the_same_results_from_fgstore_as_from_torch2s_server(torch2):
    theirs = TorchStore(python=PYTHON)
    try:
        expected = run_ops(theirs)
    finally:
        theirs.stop()
    ours_server = Fgstore()
    try:
        ours = run_ops(ours_server)
    finally:
        rc = ours_server.stop()
    assert rc == 0, ours_server.log()
    assert "Sanitizer" not in ours_server.log(), ours_server.log()
    assert ours == expected
    # The comparison means something: the calls did what torch documents.
    assert expected["libuv"] is False  # the root's workaround: torch's classic server
    assert expected["cas"] == ["v2", "v2", "fresh", "x"]
    assert expected["multi_get"] == ["CCC", "A", ""]
    assert expected["append"] == "one-two"
    assert expected["wait_timeout"] == "DistStoreError" and expected["wait_timeout_s"] == 1
    assert expected["after_timeout"] == "ok"
    assert expected["concurrent"][0] == "64"
    assert expected["concurrent"][2] == list(range(64))
    assert all(g == ["yes", str((i + 1) % 64)] for i, g in enumerate(expected["concurrent"][1]))
