"""Hang reports for a torch 2.6 program without libfg (the Debian trixie root of
scripts/torch2-root.sh; its python runs in a mount namespace of its own, so fgrun reads the
ranks' source lines through /proc/<pid>/root): the same cases as Debian's torch 1.13 in
test_hang_python.py. Rank 3 of 4 sleeps before its third all_reduce; the report names it
within --hang_timeout + 2 s, with every rank's Python place grouped by its innermost user
frame, from the hook's marks on torch 2.6's collectives and, without them, from sampled
tracebacks alone."""
import pytest

from hang_util import kill_jobs_left  # noqa: F401 (autouse fixture)
from test_hang_python import marked_torch_case, unmarked_torch_case
from torch2_util import PYTHON, TIMEOUT

pytestmark = [pytest.mark.torch2, pytest.mark.fault]


def test_a_torch26_rank_that_never_arrives_is_named_from_the_hooks_marks(tmp_path, torch2):
    marked_torch_case(tmp_path, python=PYTHON, deadline=TIMEOUT)


def test_without_marks_torch26_tracebacks_name_the_rank_outside_torch_distributed(tmp_path,
                                                                                  torch2):
    unmarked_torch_case(tmp_path, python=PYTHON, deadline=TIMEOUT)
