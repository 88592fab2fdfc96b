"""The scenario matrix: fgmatrix over configs/*.yaml, and fgscenario's `all`.

The whole gloo matrix under fgrun (fault cases included) with its JUnit XML, JSON and logs;
--list and --filter; a subset on mpi (under mpirun) and on gloo under mpirun; nccl cases
skipped cleanly without a GPU; a fault case that does not fail, and a case that times out,
reported as failures; malformed configs refused with file:line; bad input to fgscenario
said once; and `all` at 1 to 4 ranks."""
import glob
import json
import os
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import bin_path
from scenario_util import (MPI_SAN_ENV, ROOT, fgrun_job, mpirun_job, process_job,
                           processes_with, run_job)

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
MATRIX_TIMEOUT = 400  # the whole matrix: about 25 cases of a second or two


def fgmatrix(*args, timeout=120):
    # MPI_SAN_ENV reaches the cases under mpirun, for `make asan`
    return run_job([bin_path("fgmatrix"), *args], timeout=timeout, env=MPI_SAN_ENV)


def listed_cases(*args):
    rc, out = fgmatrix("--list", *args, *CONFIGS)
    assert rc == 0, out
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def no_gpu():
    return not glob.glob("/proc/driver/nvidia/gpus/*")


# --- the whole gloo matrix, once --------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix")
    rc, out = fgmatrix("--junit", str(d / "results.xml"), "--json", str(d / "results.json"),
                       "--logs", str(d), *CONFIGS, timeout=MATRIX_TIMEOUT)
    return rc, out, d


@pytest.mark.smoke
def test_every_case_passes_on_gloo_under_fgrun(full_run):
    rc, out, _ = full_run
    names = listed_cases()
    assert rc == 0, out
    for i, name in enumerate(names):  # a progress line per case, with its time
        assert re.search(rf"\[\s*{i + 1}/{len(names)}\] {re.escape(name)}\s+PASS\s+\d+\.\d\d s",
                         out), f"{name}:\n{out}"
    assert re.search(rf"\n{len(names)} cases: {len(names)} passed, 0 failed, 0 skipped in "
                     r"\d+\.\d\d s \(slowest: \S+, \d+\.\d\d s\)", out), out
    # the final table: every case with backend, launcher, processes and its seconds
    for name in names:
        assert re.search(rf"\n{re.escape(name)}\s+gloo\s+fgrun\s+\d+ (pass|fail)\s+PASS\s+\d+\.\d\d\n",
                         out), f"{name} is not in the table:\n{out}"


def test_fault_cases_pass_because_their_checks_fail(full_run):
    rc, out, d = full_run
    faults = [n for n in listed_cases("--filter", "fault-")]
    assert len(faults) == 4, faults  # one per scenario
    for name in faults:
        assert re.search(rf"{re.escape(name)}\s+PASS\s+\S+ s  \(fault case\)", out), out
        with open(d / f"{name}.log") as f:
            assert "[FAIL]" in f.read(), name


def test_junit_xml_is_well_formed_and_counts_match(full_run):
    _, _, d = full_run
    names = listed_cases()
    root = ET.parse(d / "results.xml").getroot()
    suite = root.find("testsuite")
    assert root.tag == "testsuites" and suite is not None
    assert int(suite.get("tests")) == len(names)
    assert int(suite.get("failures")) == 0 and int(suite.get("skipped")) == 0
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == names
    assert all(float(c.get("time")) > 0 and not list(c) for c in cases)
    total = float(suite.get("time"))
    assert total >= sum(float(c.get("time")) for c in cases) * 0.99


def test_json_is_well_formed_and_counts_match(full_run):
    _, _, d = full_run
    names = listed_cases()
    with open(d / "results.json") as f:
        r = json.load(f)
    assert (r["passed"], r["failed"], r["skipped"]) == (len(names), 0, 0)
    assert [c["name"] for c in r["cases"]] == names
    for c in r["cases"]:
        assert c["result"] == "PASS" and c["seconds"] > 0 and c["backend"] == "gloo"
        assert c["launcher"] == "fgrun" and re.search(r"configs/\w+\.yaml:\d+$", c["source"])
        assert c["command"].startswith(bin_path("fgrun") + " --standalone --nproc_per_node=")
        assert c["exit_code"] == (1 if c["expect"] == "fail" else 0)
    assert r["total_seconds"] >= sum(c["seconds"] for c in r["cases"]) * 0.99


def test_logs_hold_each_case_output(full_run):
    _, _, d = full_run
    for name in listed_cases():
        with open(d / f"{name}.log") as f:
            assert "CHECKS" in f.read(), name


# --- selecting, other backends and launchers -------------------------------------------------


def test_list_and_filter():
    every = listed_cases()
    assert len(every) == len(set(every)) and len(every) >= 25
    rc, out = fgmatrix("--list", "--filter", "dispatcher-2d", *CONFIGS)
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == 5 and all("dataloader-dispatcher" in l for l in lines), out
    assert re.search(r"dispatcher-2d-2x3-dpdim1 .* 6 procs\s+gloo fgrun\s+expect pass\s+\S+"
                     r"configs/dispatcher\.yaml:\d+", out), out
    rc, out = fgmatrix("--filter", "no-such-case", *CONFIGS)
    assert rc == 2 and "no case matches --filter no-such-case" in out


@pytest.mark.mpi
def test_mpi_backend_runs_under_mpirun(tmp_path):
    rc, out = fgmatrix("--backend", "mpi", "--filter", "checkpoint-all", "--json",
                       str(tmp_path / "r.json"), *CONFIGS)
    assert rc == 0, out
    with open(tmp_path / "r.json") as f:
        cases = json.load(f)["cases"]
    assert [c["processes"] for c in cases] == [1, 2, 4]
    for c in cases:
        assert (c["backend"], c["launcher"], c["result"]) == ("mpi", "mpirun", "PASS")
        assert c["command"].startswith("mpirun --oversubscribe ")


@pytest.mark.mpi
def test_gloo_under_mpirun(tmp_path):
    rc, out = fgmatrix("--launcher", "mpirun", "--filter", "dispatcher-2d-2x2-dpdim1",
                       "--json", str(tmp_path / "r.json"), *CONFIGS)
    assert rc == 0, out
    with open(tmp_path / "r.json") as f:
        (case,) = json.load(f)["cases"]
    assert (case["backend"], case["launcher"], case["result"]) == ("gloo", "mpirun", "PASS")


@pytest.mark.skipif(not no_gpu(), reason="this machine has a GPU: the nccl cases would run")
def test_nccl_cases_skip_without_a_gpu(tmp_path):
    rc, out = fgmatrix("--backend", "nccl", "--junit", str(tmp_path / "r.xml"),
                       os.path.join(ROOT, "configs", "pipeline.yaml"))
    assert rc == 0, out
    assert out.count("SKIP  (no CUDA device)") == 4, out
    assert "4 cases: 0 passed, 0 failed, 4 skipped" in out
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("4", "4", "0")
    assert all(c.find("skipped").get("message") == "no CUDA device"
               for c in suite.findall("testcase"))


# --- cases that must be reported as failures ---------------------------------------------------


def write_config(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.fault
@pytest.mark.parametrize("args,why", [
    ("[]", "expected the scenario to fail a check, but it passed"),
    ("[--fault, no-such-fault]", "exit status 2 (expected 1 with a failed check)"),
])
def test_fault_case_that_does_not_fail_a_check_is_a_failure(tmp_path, args, why):
    cfg = write_config(tmp_path, "cases:\n  - {name: not-a-fault, scenario: checkpoint-integration,"
                                 f" processes: 1, expect: fail, args: {args}}}\n")
    rc, out = fgmatrix("--json", str(tmp_path / "r.json"), cfg)
    assert rc == 1, out
    assert "not-a-fault                              FAIL" in out and why in out, out
    with open(tmp_path / "r.json") as f:
        assert json.load(f)["cases"][0]["why"] == why


def test_failing_case_shows_its_command_and_output(tmp_path):
    cfg = write_config(tmp_path, "cases:\n  - {name: broken, scenario: checkpoint-integration, "
                                 "processes: 2, args: [--fault, keep-all]}\n")
    rc, out = fgmatrix("--junit", str(tmp_path / "r.xml"), cfg)
    assert rc == 1 and "broken                                   FAIL" in out, out
    assert "exit status 1" in out and "$ " + bin_path("fgrun") in out
    assert "| " in out and "[FAIL] 8 checkpoints on disk" in out, out
    failure = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase/failure")
    assert failure.get("message") == "exit status 1" and "[FAIL]" in failure.text


def test_case_past_its_timeout_is_killed_and_failed(tmp_path):
    out_dir = tmp_path / "slow"
    cfg = write_config(tmp_path, "cases:\n  - {name: too-slow, scenario: build_sync, "
                                 f"processes: 2, timeout: 0.3, args: [--output-dir, {out_dir}]}}\n")
    rc, out = fgmatrix(cfg)
    assert rc == 1 and "FAIL" in out and "timed out after 0.3 s" in out, out
    assert processes_with(str(out_dir)) == [], "the case's ranks outlived its timeout"


# --- malformed configs and bad input -------------------------------------------------------------

MALFORMED = {
    "bad-yaml": ("cases:\n  - {name: a, scenario: build_sync, processes: 2\n", 3, "did not find"),
    "mesh": ("cases:\n  - name: m\n    scenario: dataloader-dispatcher\n    processes: 4\n"
             "    mesh: {dp: 2, mp: 3}\n", 5,
             "case 'm': mesh sizes multiply to 6 but processes is 4"),
    "unknown-field": ("cases:\n  - name: u\n    scenario: build_sync\n    processes: 2\n"
                      "    procs: 4\n", 5, "case: unknown field 'procs'"),
    "duplicate": ("cases:\n  - {name: d, scenario: build_sync, processes: 2}\n"
                  "  - {name: d, scenario: build_sync, processes: 4}\n", 3,
                  "case name 'd' is used twice (also at "),
    "unknown-scenario": ("cases:\n  - {name: s, scenario: build-synk, processes: 2}\n", 2,
                         "case 's': unknown scenario 'build-synk'"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_config_is_refused_with_file_and_line(tmp_path, kind):
    text, line, error = MALFORMED[kind]
    cfg = write_config(tmp_path, text, f"{kind}.yaml")
    rc, out = fgmatrix(cfg)
    assert rc == 2, out
    said = [l for l in out.splitlines() if l.startswith(f"fgmatrix: error: {cfg}:{line}: ")]
    assert len(said) == 1 and error in said[0], out
    assert "PASS" not in out and "FAIL" not in out


@pytest.mark.parametrize("args,error", [
    (["dataloader-dispatcher", "--dp", "3"],
     "dataloader-dispatcher: error: --dp 3 does not divide the world of 4 ranks"),
    (["checkpoint-integrashun"], "fgscenario: error: unknown scenario 'checkpoint-integrashun'"),
    (["--fault", "delete-best", "build_sync"],
     "fgscenario: error: build_sync has no fault 'delete-best'"),
    (["all", "--local"], "fgscenario: error: all runs every scenario with its defaults"),
], ids=["dp-3-of-4", "unknown-scenario", "unknown-fault", "all-with-options"])
def test_bad_input_is_one_clear_error(args, error):
    rc, out = fgrun_job(4, *args)
    assert rc == 2, f"exit {rc}:\n{out}"
    said = [l for l in out.splitlines() if error in l and not l.lstrip().startswith("|")]
    assert len(said) == 1, out  # rank 0 alone says it (fgrun's "| ..." echo aside)
    assert "[PASS]" not in out and "[FAIL]" not in out


# --- fgscenario all ------------------------------------------------------------------------------

SCENARIOS = ["checkpoint-integration", "dataloader-dispatcher", "pipeline-split", "build_sync"]


def assert_all_passed(rc, out, nproc, backend):
    assert rc == 0, f"exit {rc}:\n{out}"
    assert "[FAIL]" not in out
    for name in SCENARIOS:
        assert f"{name}: ALL CHECKS PASSED (" in out and f"{nproc} ranks, {backend}," in out, out
    assert f"all: every scenario passed (4 scenarios, {nproc} ranks, {backend}," in out, out


@pytest.mark.parametrize("nproc", [1, 2, 3, 4])
def test_all_under_fgrun(nproc):
    rc, out = fgrun_job(nproc, "all")
    assert_all_passed(rc, out, nproc, "gloo")
    if nproc == 3:  # odd: pure DP, 3 stages
        assert "pure DP: dp=3 mp=1" in out and "over 3 stages" in out


@pytest.mark.mpi
def test_all_under_mpirun_odd_world():
    rc, out = mpirun_job(3, "--backend", "mpi", "all")
    assert_all_passed(rc, out, 3, "mpi")


def test_help_names_every_scenario():
    rc, out = process_job("--help")
    assert rc == 0
    for name in SCENARIOS + ["all", "list"]:
        assert re.search(rf"\n  {name}\s", out), f"{name}:\n{out}"
    for name in SCENARIOS:
        rc, out = process_job(name, "--help")
        assert rc == 0 and out.startswith(f"usage: fgscenario [options] {name} [options]"), out
        assert "faults (--fault NAME): " in out
    rc, out = process_job()
    assert rc == 2 and out.startswith("usage: fgscenario")
