"""checkpoint-integration: best-checkpoint preservation, save limits, the divergence detector
and atomic checkpoint writes.

basic, spike and all at 1, 2 and 4 ranks under fgrun on gloo, a subset under mpirun on both
CPU backends, every fault (each must fail its own check, by its text), rank 0 killed in the
middle of a save (no checkpoint on disk may look complete while being partial: checked here,
in Python, against each manifest), the non-atomic fault that shows this check bites, the
on-disk layout a clean run leaves, and bad options."""
import os
import re

import pytest

from scenario_util import (assert_check_failed, assert_passed, fgrun_job, listed_faults,
                           mpirun_job, process_job, processes_with)

# [PASS] lines rank 0 prints for each run.
CHECKS = {"basic": 8, "spike": 11}
CHECKS["all"] = CHECKS["basic"] + CHECKS["spike"]


def checkpoint_args(scenario="all", *extra, backend="gloo"):
    return ["--backend", backend, "checkpoint-integration", "--scenario", scenario, *extra]


def assert_run_passed(rc, out, scenario, nproc, backend="gloo"):
    assert_passed(rc, out)
    assert "ALL ASSERTIONS PASSED" in out and "SOME ASSERTIONS FAILED" not in out, out
    assert out.count("[PASS]") == CHECKS[scenario], f"expected {CHECKS[scenario]} checks:\n{out}"
    assert f"({CHECKS[scenario]} checks on rank 0, {nproc} ranks, {backend}," in out, out


# --- what is on disk, read independently of the C code ---------------------------------------


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def why_incomplete(path):
    """None if path is a complete checkpoint: a manifest, and every file it lists with the
    recorded size and FNV-1a 64 checksum. Otherwise the reason."""
    try:
        with open(os.path.join(path, "manifest")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return "no manifest"
    if not lines:
        return "empty manifest"
    for line in lines:
        fields = line.split()
        if len(fields) != 3:
            return f"bad manifest line {line!r}"
        name, size, checksum = fields[0], int(fields[1]), int(fields[2], 16)
        try:
            with open(os.path.join(path, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return f"{name} is missing"
        if len(data) != size or fnv1a64(data) != checksum:
            return f"{name}: {len(data)} bytes, checksum {fnv1a64(data):016x} " \
                   f"(manifest: {size}, {checksum:016x})"
    return None


def scan(output_dir):
    """Every checkpoints/ entry under output_dir: {run: {name: None or why incomplete}}."""
    found = {}
    for run in sorted(os.listdir(output_dir)):
        ckpts = os.path.join(output_dir, run, "checkpoints")
        if os.path.isdir(ckpts):
            found[run] = {name: why_incomplete(os.path.join(ckpts, name))
                          for name in sorted(os.listdir(ckpts))}
    return found


def final_dirs(entries):
    return {n: why for n, why in entries.items() if re.fullmatch(r"checkpoint-\d+", n)}


def assert_nothing_partial(found):
    """Every checkpoint-* is complete; anything else is a .tmp-* leftover of a crash."""
    for run, entries in found.items():
        for name, why in entries.items():
            if re.fullmatch(r"checkpoint-\d+", name):
                assert why is None, f"{run}/checkpoints/{name} looks final but: {why}"
            else:
                assert name.startswith(".tmp-checkpoint-"), f"unexpected {run}/{name}"


# --- runs that pass -----------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.parametrize("scenario", ["basic", "spike", "all"])
@pytest.mark.parametrize("nproc", [1, 2, 4])
def test_scenarios_under_fgrun_gloo(nproc, scenario):
    rc, out = fgrun_job(nproc, *checkpoint_args(scenario))
    assert_run_passed(rc, out, scenario, nproc)
    if scenario != "basic":
        assert re.search(r"\[PASS\] the detector triggered on the spike at step 75", out)
        assert re.search(r"training stopped at step \d+ \(short EMA", out)
        assert "[PASS] pre-spike checkpoint-25 survived" in out


@pytest.mark.mpi
@pytest.mark.parametrize("backend,nproc,scenario",
                         [("mpi", 2, "all"), ("mpi", 4, "spike"), ("gloo", 3, "basic")])
def test_scenarios_under_mpirun(backend, nproc, scenario):
    rc, out = mpirun_job(nproc, *checkpoint_args(scenario, backend=backend))
    assert_run_passed(rc, out, scenario, nproc, backend)


def test_one_process_without_a_launcher():
    rc, out = process_job(*checkpoint_args("all"))
    assert_run_passed(rc, out, "all", 1)


def test_kept_outputs_hold_the_expected_checkpoints(tmp_path):
    """basic keeps the two best (75, 100) and the newest within the limit of 3; spike keeps
    25 and 50, the best, and 75, the spike's save before the detector stopped training."""
    out_dir = tmp_path / "kept"
    rc, out = fgrun_job(2, *checkpoint_args("all"), "--keep-outputs", "--output-dir",
                        str(out_dir))
    assert_run_passed(rc, out, "all", 2)
    assert f"outputs kept in {out_dir}" in out
    found = scan(out_dir)
    assert found == {"basic": {f"checkpoint-{s}": None for s in (50, 75, 100)},
                     "spike": {f"checkpoint-{s}": None for s in (25, 50, 75)}}, found
    with open(out_dir / "spike" / "checkpoints" / "checkpoint-50" / "metrics.json") as f:
        assert re.match(r'\{"step": 50, "eval_loss": 4\.32', f.read())
    # The manifest check this file relies on sees one flipped byte.
    model = out_dir / "basic" / "checkpoints" / "checkpoint-75" / "model.bin"
    data = bytearray(model.read_bytes())
    data[1000] ^= 1
    model.write_bytes(bytes(data))
    assert why_incomplete(model.parent).startswith("model.bin: 16384 bytes, checksum ")


def test_default_output_dir_is_removed():
    rc, out = fgrun_job(2, *checkpoint_args("basic"))
    assert_run_passed(rc, out, "basic", 2)
    assert "outputs kept" not in out


# --- a crash in the middle of a save -------------------------------------------------------


def crash_run(tmp_path, *fault):
    out_dir = tmp_path / "crash"
    rc, out = fgrun_job(4, *fault, *checkpoint_args("all"), "--crash-during-save", "50",
                        "--keep-outputs", "--output-dir", str(out_dir))
    return out_dir, rc, out


def test_sigkill_during_save_leaves_no_partial_checkpoint(tmp_path):
    out_dir, rc, out = crash_run(tmp_path)
    assert rc != 0, out
    assert "rank 0" in out and "SIGKILL" in out, f"fgrun should name rank 0's death:\n{out}"
    assert processes_with(str(out_dir)) == [], "a rank outlived the job"
    found = scan(out_dir)
    assert_nothing_partial(found)
    # The crash hit basic's save of step 50: 25 is there, 50 only as its temporary.
    assert final_dirs(found["basic"]) == {"checkpoint-25": None}, found
    assert ".tmp-checkpoint-50" in found["basic"], found
    assert "spike" not in found


@pytest.mark.fault
def test_non_atomic_crash_leaves_a_partial_checkpoint_the_check_finds(tmp_path):
    """The check above bites: writing in place, the crash leaves checkpoint-50 half written."""
    out_dir, rc, out = crash_run(tmp_path, "--fault", "non-atomic")
    assert rc != 0, out
    assert processes_with(str(out_dir)) == []
    found = scan(out_dir)
    assert found["basic"].get("checkpoint-50") == "no manifest", found
    with pytest.raises(AssertionError, match="checkpoint-50 looks final but: no manifest"):
        assert_nothing_partial(found)


# --- faults ---------------------------------------------------------------------------------

# fault -> the check that must fail (its text as printed, up to a point)
FAULTS = {
    "delete-best": "best checkpoint-100 exists and is complete: ",
    "unsorted-best": "best list is sorted by ascending loss [25(5.517), 50(4.321)]",
    "best-overflow": "best list has 3 entries, at most 2",
    "keep-all": "8 checkpoints on disk, at most save_total_limit 3 + preserve_n_best 2",
    "no-detector": "the detector triggered on the spike at step 75 (it did not)",
    "diverge-ranks": "every rank saw the same checkpoint set after each save (no: after "
                     "saving step 25, rank 1's differs from rank 0's)",
    "corrupt-detector": "detector state restored from checkpoint-75: short 4.676259689453627",
    "non-atomic": "no checkpoint looked complete while being written (no: halfway through "
                  "saving step 25: ",
}


def test_every_fault_has_a_test():
    assert sorted(listed_faults("checkpoint-integration")) == sorted(FAULTS)


@pytest.mark.fault
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_its_check(fault):
    rc, out = fgrun_job(2, "--fault", fault, *checkpoint_args("all"))
    assert_check_failed(rc, out, FAULTS[fault])
    assert "SOME ASSERTIONS FAILED" in out


@pytest.mark.fault
@pytest.mark.mpi
def test_fault_under_mpirun():
    rc, out = mpirun_job(2, "--fault", "delete-best", *checkpoint_args("basic", backend="mpi"))
    assert_check_failed(rc, out, FAULTS["delete-best"])


# --- bad options ----------------------------------------------------------------------------


@pytest.mark.parametrize("args,error", [
    (["--scenario", "huge"], "--scenario must be basic, spike or all"),
    (["--crash-during-save", "30"], "--crash-during-save 30 is not a save step (a multiple of "
                                    "--eval-every 25)"),
    (["--eval-every", "0"], "bad value '0' for --eval-every"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
])
def test_bad_options_are_one_usage_error(args, error):
    rc, out = fgrun_job(2, "checkpoint-integration", *args)
    assert rc == 2, f"exit {rc}:\n{out}"
    said = [l for l in out.splitlines() if error in l and not l.lstrip().startswith("|")]
    assert len(said) == 1, out  # rank 0 alone says it (fgrun's "| ..." echo aside)
    assert "[PASS]" not in out and "[FAIL]" not in out
