"""pipeline-split: a causal LM split into stages, one training step, checked against a
single-process run of the whole model.

Both schedules at 2 and 4 stages under fgrun on gloo, one stage as a plain process,
float32, one case under mpirun on mpi, every fault (each must fail its own check, by
name, on the right stages, without hanging), and a stage count that does not match."""
import re

import pytest

from conftest import bin_path
from scenario_util import fgrun_job, mpirun_job, run_job


def pipeline_args(*extra, backend="gloo"):
    return ["--backend", backend, "pipeline-split", *extra]


def assert_passed(rc, out, stages, tol=1e-5):
    assert rc == 0 and "ALL CHECKS PASSED" in out, f"exit {rc}; output:\n{out}"
    assert "[FAIL]" not in out, out
    # rank 0 shows every stage: the mask and the gradients of each, the loss of the last
    assert out.count("[PASS]") == 2 * stages + 1, f"expected every stage's checks:\n{out}"
    for s in range(stages):
        assert f"[PASS] stage {s}: the block mask carried from stage 0 is identical" in out
    errors = [float(e) for e in re.findall(r"max relative error (\S+) in", out)]
    assert len(errors) == stages and max(errors) < tol, out
    assert re.search(rf"\[PASS\] stage {stages - 1}: loss \S+ equals the single-process", out)


@pytest.mark.smoke
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("stages", [2, 4])
def test_schedules_match_the_reference_gloo(stages, schedule):
    rc, out = fgrun_job(stages, *pipeline_args("--schedule", schedule))
    assert_passed(rc, out, stages)
    assert f"schedule {schedule} over {stages} stages" in out


def test_one_stage_is_a_single_process():
    rc, out = run_job([bin_path("fgscenario"), *pipeline_args("--stages", "1")])
    assert_passed(rc, out, 1)
    assert "(layers 0-3, embedding, head)" in out


def test_float32_and_fewer_microbatches_than_stages():
    """1F1B with 2 microbatches on 3 stages: the warm-up is cut short by the microbatches."""
    rc, out = fgrun_job(3, *pipeline_args("--schedule", "1f1b", "--microbatches", "2",
                                          "--dtype", "float32", "--layers", "5"))
    assert_passed(rc, out, 3, tol=1e-4)
    assert "float32" in out


@pytest.mark.mpi
def test_1f1b_under_mpirun():
    rc, out = mpirun_job(4, *pipeline_args("--schedule", "1f1b", backend="mpi"))
    assert_passed(rc, out, 4)


def grad_check(stage, ok):
    return re.compile(rf"\[{'PASS' if ok else 'FAIL'}\] stage {stage} \(.*\): \d+ parameter "
                      r"gradients match the reference")


# fault -> (stages whose gradient check fails, stage whose mask check fails or None)
FAULTS = {
    "corrupt-grad": ([2], None),              # the middle stage perturbs one element
    "corrupt-mask": ([0, 1, 2, 3], 3),        # the last stage's attention sees its future
    "drop-microbatch": ([0, 1, 2, 3], None),  # the last stage skips one backward
    "wrong-schedule-order": ([0, 1, 2], None),  # stage 3 sends microbatch 0's gradient twice
}


@pytest.mark.fault
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_its_check(fault):
    bad_grads, bad_mask = FAULTS[fault]
    rc, out = fgrun_job(4, *pipeline_args("--schedule", "1f1b", "--fault", fault))
    assert rc == 1 and "SOME CHECKS FAILED" in out, f"exit {rc}; output:\n{out}"
    for s in range(4):
        assert grad_check(s, s not in bad_grads).search(out), f"stage {s}:\n{out}"
        verdict = "FAIL" if s == bad_mask else "PASS"
        assert f"[{verdict}] stage {s}: the block mask carried from stage 0" in out, out
    if bad_mask is not None:
        assert "differs from its own: kv_num_blocks[seq 0][q block 0] is 0, expected 1" in out


@pytest.mark.fault
def test_fault_bites_with_one_stage():
    """One stage: drop-microbatch still bites (it needs no neighbour)."""
    rc, out = run_job([bin_path("fgscenario"),
                       *pipeline_args("--stages", "1", "--fault", "drop-microbatch")])
    assert rc == 1 and grad_check(0, False).search(out), out


def test_stage_count_must_match_the_world():
    rc, out = fgrun_job(4, *pipeline_args("--stages", "3"))
    assert rc == 2, f"exit {rc}; output:\n{out}"
    assert "--stages 3 does not match the world size 4 (one stage per rank)" in out


def test_bad_options_are_usage_errors():
    for args in (["--schedule", "zigzag"], ["--dim", "30", "--heads", "4"],
                 ["--dtype", "float16"], ["--microbatches", "0"]):
        rc, out = run_job([bin_path("fgscenario"), *pipeline_args(*args)])
        assert rc == 2 and "error:" in out, f"{args}: exit {rc}; output:\n{out}"
