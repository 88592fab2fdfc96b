"""Ranks that srun starts itself, no agent, on a real Slurm cluster (slurm.py: slurmctld, a
slurmd per node, each node a host of its own): libfg finds the store from Slurm's variables
alone (the step's first node, a port derived from SLURM_JOB_ID, or MASTER_PORT), Open MPI's
ranks start under srun --mpi=pmix, a rank's exit status is srun's, and bad input (a port in
use, a WORLD_SIZE srun disagrees with, rank 0 off the first node, more fgrun agents than
--nnodes) ends with a clear error and nothing left running."""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import BUILD, bin_path, have_mpi
from slurm import slurm, slurm_session  # noqa: F401  (the fixtures)

pytestmark = pytest.mark.slurm
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
PORT_BASE, PORT_SPAN = 15000, 10000  # common/slurm.h, docs/cluster.md
TIMEOUT = 120
# Under `make asan`: Open MPI's own leaks are suppressed, which needs full malloc stacks.
MPI_SAN_ENV = {"ASAN_OPTIONS": "fast_unwind_on_malloc=0",
               "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0"}
TWO_BY_TWO = ["--nodes=2", "--ntasks-per-node=2"]
FAULT_WORKER = os.path.abspath(os.path.join(BUILD, "tests", "drivers", "fault_worker"))
MARKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "marker.sh")


def srun(c, *argv, env=None, timeout=TIMEOUT):
    """srun on the login node; returns (exit status, stdout + stderr)."""
    cp = c.run(["srun", *argv], env=env or c.env(), timeout=timeout)
    return cp.returncode, cp.stdout + cp.stderr


def assert_passed(rc, out, ranks, backend):
    assert rc == 0, f"exit {rc}:\n{out}"
    assert f"every scenario passed (4 scenarios, {ranks} ranks, {backend}" in out, out


def test_srun_ranks_find_their_store_from_slurm_alone(slurm):
    """No MASTER_ADDR, no MASTER_PORT, no --mpi: rank 0 serves on the first node of the step
    at 15000 + SLURM_JOB_ID % 10000, the others find it there, across both nodes."""
    env = slurm.env()
    assert not any(k in env for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"))
    assert_passed(*srun(slurm, *TWO_BY_TWO, bin_path("fgscenario"), "all", env=env), 4, "gloo")


def test_layouts_srun_chooses_give_each_rank_its_nodes_share(slurm, tmp_path):
    """-n3 on two nodes is 2+1 (SLURM_STEP_TASKS_PER_NODE=2,1): gloo must listen on the
    node's address, not loopback, and every rank must learn its local rank and size."""
    probe = os.path.join(SCRIPTS, "slurm_layout.sh")
    rc, out = srun(slurm, "--nodes=2", "--ntasks=3", "sh", "-c",
                   f'{bin_path("fgconform")} --quick --parts world && {probe} "$0"',
                   str(tmp_path))
    assert rc == 0, out
    assert "checks passed on 3 ranks (gloo)" in out, out
    seen = sorted(open(tmp_path / f"layout.{r}").read().split() for r in range(3))
    assert [s[1] for s in seen] == ["n1", "n1", "n2"], seen


def test_an_explicit_master_port_wins(slurm, tmp_path):
    """MASTER_PORT replaces the derived port: with the derived one held by another process on
    the first node, the ranks still meet."""
    port = str(find_free_port(slurm))
    rc, out, _ = slurm.sbatch(os.path.join(SCRIPTS, "slurm_hold_port.sh"), bin_path("fgscenario"),
                              "--timeout", "20", "all", options=TWO_BY_TWO, out_dir=tmp_path,
                              env=slurm.env(MASTER_PORT=port))
    assert "holding port" in out, out
    assert_passed(rc, out, 4, "gloo")


def test_two_jobs_at_once_do_not_collide(slurm, tmp_path):
    """Two jobs on the same two nodes at the same moment (each batch script waits for the
    other's before its srun): each job's ranks meet on the port of their own job id."""
    script = os.path.join(SCRIPTS, "slurm_meet_then_srun.sh")
    env = slurm.env(MEET_DIR=str(tmp_path), MEET_COUNT=2)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: slurm.sbatch(script, bin_path("fgscenario"), "all",
                                                    options=TWO_BY_TWO, out_dir=tmp_path,
                                                    env=env), range(2)))
    (_, _, a), (_, _, b) = runs
    assert a % PORT_SPAN != b % PORT_SPAN
    for rc, out, _ in runs:
        assert "both jobs running" in out, out
        assert_passed(rc, out, 4, "gloo")


@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["mpi", "gloo"])
def test_scenarios_under_srun_mpi_pmix(slurm, backend):
    """Open MPI's ranks under srun's PMIx: the mpi backend, and gloo with its store's address
    shared over MPI (rank 0 on n1, ranks on n2 reach it by its address)."""
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    rc, out = srun(slurm, "--mpi=pmix", *TWO_BY_TWO, bin_path("fgscenario"), "--backend",
                   backend, "all", env=slurm.env(**MPI_SAN_ENV))
    assert_passed(rc, out, 4, backend)


def test_each_node_has_a_dev_shm_of_its_own(slurm):
    """Open MPI's shared-memory segments live in /dev/shm: nodes, like real hosts, must not
    share it with each other or with the machine (slurm.py's on())."""
    tag = f"fgshm.{os.getpid()}"
    try:
        rc, out = srun(slurm, "--nodes=2", "--ntasks-per-node=1", "sh", "-c",
                       f'touch /dev/shm/{tag}.$(hostname)')
        assert rc == 0, out
        assert not [f for f in os.listdir("/dev/shm") if f.startswith(tag)]
        for node in ("n1", "n2"):
            rc, out = srun(slurm, f"--nodelist={node}", "--ntasks=1", "ls", "/dev/shm")
            assert rc == 0, out
            assert sorted(f for f in out.split() if f.startswith(tag)) == [f"{tag}.{node}"], out
    finally:
        for f in os.listdir("/dev/shm"):
            if f.startswith(tag):
                os.unlink(os.path.join("/dev/shm", f))


@pytest.mark.mpi
def test_fgconform_under_srun_mpi_pmix(slurm):
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    rc, out = srun(slurm, "--mpi=pmix", *TWO_BY_TWO, bin_path("fgconform"), "--backend", "mpi",
                   "--quick", env=slurm.env(**MPI_SAN_ENV))
    assert rc == 0, out
    assert re.search(r"fgconform: \d+ checks passed on 4 ranks \(mpi\)", out), out


def test_the_mpi_backend_without_pmix_says_to_add_it(slurm):
    rc, out = srun(slurm, "--nodes=1", "--ntasks=2", bin_path("fgscenario"), "--backend", "mpi",
                   "all")
    assert rc != 0
    assert "srun --mpi=pmix" in out, out


def test_a_batch_script_is_one_process(slurm, tmp_path):
    """Run in the batch script itself (no srun), a libfg program is a world of one, though
    the script sees SLURM_PROCID=0 and the job's SLURM_NTASKS=4."""
    wrap = f"--wrap={bin_path('fgscenario')} --timeout 20 build_sync"
    rc, out, _ = slurm.sbatch(None, options=[*TWO_BY_TWO, wrap], out_dir=tmp_path)
    assert rc == 0, out
    assert "ALL CHECKS PASSED" in out and "1 ranks, gloo" in out, out


def test_a_rank_exit_status_is_sruns(slurm):
    """Rank 1 exits 3 mid-run; its peers' allreduce fails naming it and they exit 1; srun,
    whose status is the highest of its tasks', exits 3."""
    rc, out = srun(slurm, *TWO_BY_TWO, FAULT_WORKER, "--victim", "1",
                   "--at", "3", "--fault", "exit3", "--iters", "0", "--pause-ms", "10",
                   "allreduce")
    assert rc == 3, out
    assert "rank 1: exiting with 3 on purpose" in out, out
    assert re.search(r"rank 0: allreduce #3 failed: .*peer rank 1", out), out
    assert "srun: error: n1: task 1: Exited with exit code 3" in out, out


# --- bad input ---------------------------------------------------------------------------

def test_the_derived_port_in_use_is_named(slurm, tmp_path):
    """Another process holds 15000 + SLURM_JOB_ID % 10000 on the first node: rank 0 says
    it cannot listen there, naming the port's origin; every rank ends, nothing is left."""
    rc, out, job = slurm.sbatch(os.path.join(SCRIPTS, "slurm_hold_port.sh"),
                                bin_path("fgscenario"), "--timeout", "5", "all",
                                options=TWO_BY_TWO, out_dir=tmp_path)
    port = PORT_BASE + job % PORT_SPAN
    assert f"holding port {port}" in out, out
    assert rc != 0, out
    assert (f"cannot listen on 0.0.0.0:{port}: address already in use (under srun: n1 is the "
            f"first node of SLURM_STEP_NODELIST=n[1-2]; port {port} is 15000 + "
            f"SLURM_JOB_ID={job} % 10000; set MASTER_ADDR or MASTER_PORT") in out, out
    assert "ALL CHECKS PASSED" not in out


def test_a_world_size_srun_disagrees_with_is_refused(slurm):
    rc, out = srun(slurm, *TWO_BY_TWO, bin_path("fgscenario"), "all",
                   env=slurm.env(WORLD_SIZE=8))
    assert rc != 0
    assert out.count("WORLD_SIZE=8 disagrees with the 4 tasks srun started "
                     "(SLURM_STEP_NUM_TASKS=4)") == 4, out


def test_rank_0_off_the_first_node_is_refused(slurm):
    """--distribution=arbitrary puts task 0 on n2: rank 0 says where it is and where the
    others will look, instead of serving a store nobody finds."""
    rc, out = srun(slurm, "--distribution=arbitrary", "--nodelist=n2,n1", "--ntasks=2",
                   bin_path("fgscenario"), "--timeout", "5", "all")
    assert rc != 0
    assert ("rank 0 runs on n2, but the other ranks look for its store on n1, the first node "
            "of SLURM_STEP_NODELIST=n[1-2]: set MASTER_ADDR to rank 0's node") in out, out


def test_more_fgrun_agents_than_nnodes_are_refused(slurm, tmp_path):
    """srun -N2 --ntasks-per-node=2 fgrun --nnodes 2: four agents for a two-node rendezvous.
    Every agent refuses before starting a worker."""
    rc, out = srun(slurm, *TWO_BY_TWO, bin_path("fgrun"), "--nnodes", "2", "--nproc_per_node",
                   "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", "n1", "--no_python",
                   MARKER,
                   env=slurm.env(FG_TEST_DIR=str(tmp_path)))
    assert rc == 2, out
    assert out.count("fgrun: error: srun started 4 fgrun agents on 2 nodes "
                     "(SLURM_STEP_NUM_TASKS=4) but --nnodes 2 takes at most 2") == 4, out
    assert not list(tmp_path.glob("started.*"))


def test_fgrun_forgetting_nnodes_under_srun_is_refused(slurm, tmp_path):
    """The default --nnodes is 1: two agents would each run a world of their own."""
    rc, out = srun(slurm, "--nodes=2", "--ntasks-per-node=1", bin_path("fgrun"),
                   "--nproc_per_node", "1", "--no_python",
                   MARKER,
                   env=slurm.env(FG_TEST_DIR=str(tmp_path)))
    assert rc == 2, out
    assert "(SLURM_STEP_NUM_TASKS=2) but --nnodes 1 takes at most 1" in out, out
    assert not list(tmp_path.glob("started.*"))


# --- helpers -------------------------------------------------------------------------------

def find_free_port(c):
    """A port nothing listens on, on n1 (ports are per node: each is a network namespace)."""
    cp = c.run(["python3", "-c", "import socket; s = socket.socket(); s.bind(('', 0)); "
                "print(s.getsockname()[1])"], host="n1", timeout=30, check=True)
    return int(cp.stdout)
