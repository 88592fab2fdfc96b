"""Several nodes: one fgrun per host, the hosts being network namespaces with addresses of
their own (netns.py). Static and c10d rendezvous, ranks as torchrun gives them, keep-alives
noticing a dead node, new nodes joining, and the failures: a node that never comes, an
endpoint nobody serves, bad command lines."""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import bin_path, free_port, have_mpi
from launcher_util import (alive, error_lines, fgrun_env, finish_agent, run, wait_for_files,
                           worker)
from netns import cluster  # noqa: F401  (the fixture)

TIMEOUT = 60  # per agent; every case here takes a few seconds
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Under `make asan`: Open MPI's own leaks are suppressed, which needs full malloc stacks.
SAN_ENV = {"ASAN_OPTIONS": "fast_unwind_on_malloc=0",
           "LSAN_OPTIONS": f"suppressions={ROOT}/tests/lsan.supp:print_suppressions=0"}
# Keep-alives every 0.2 s and a node dead after 10 missed ones (2 s: a loaded machine may
# delay a healthy agent's beats for a second): the elastic cases take
# seconds, not torchrun's default 15.
FAST = ("keep_alive_interval=0.2,keep_alive_max_attempt=10,last_call_timeout=0.5,"
        "join_timeout=30,read_timeout=10")
# For cases that need all three of 2:3 nodes in round 0: a last call long enough for the
# slowest agent to start on a loaded machine (a round with MAX nodes closes at once anyway).
ALL3 = FAST.replace("last_call_timeout=0.5", "last_call_timeout=5")


def agent_env(tmp_path=None, **extra):
    env = fgrun_env(GLOO_SOCKET_IFNAME="eth0", **extra)
    if tmp_path is not None:
        env["FG_TEST_DIR"] = str(tmp_path)
    return env


def start_agent(c, host, *args, env):
    return c.start(host, [bin_path("fgrun"), *args], env=env)


def finish(p, timeout=TIMEOUT):
    return finish_agent(p, timeout)


def read_env(path):
    data = open(path, "rb").read().decode()
    return dict(item.split("=", 1) for item in data.split("\0") if "=" in item)


def static_args(c, node_rank, nnodes, port, *more):
    return ["--nnodes", str(nnodes), "--node_rank", str(node_rank), "--master_addr",
            c.addrs[0], "--master_port", str(port), *more]


def c10d_args(c, nnodes, port, run_id, *more, conf=FAST):
    return ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"{c.addrs[0]}:{port}",
            "--rdzv_id", run_id, "--nnodes", nnodes, "--rdzv_conf", conf, *more]


# Workers that mark where they ran (and their pid), then check the collectives over gloo
# across the hosts; ROUNDS sleeps through round 0 until its agent stops it.
MARK = 'echo $$ > "$FG_TEST_DIR/r$TORCHELASTIC_RESTART_COUNT.n$GROUP_RANK.rank$RANK"; '
CONFORM = MARK + 'exec "$FGCONFORM" --quick --parts world'
ROUNDS = (MARK + 'if [ "$TORCHELASTIC_RESTART_COUNT" = 0 ]; then exec sleep 60; fi; '
          'exec "$FGCONFORM" --quick --parts world')


# --- static rendezvous ---------------------------------------------------------------------

# Without GLOO_SOCKET_IFNAME the ranks must find an address the other host reaches: the
# namespaces share this machine's host name, which resolves to none of theirs.
@pytest.mark.parametrize("ifname", ["eth0", None], ids=["GLOO_SOCKET_IFNAME", "no_ifname"])
def test_static_two_nodes_run_the_dispatcher_2x2_over_gloo(cluster, ifname):
    c = cluster(2)
    port = 29500
    env = agent_env(FG_BACKEND="gloo")
    if ifname is None:
        del env["GLOO_SOCKET_IFNAME"]
    agents = [start_agent(c, i, *static_args(c, i, 2, port, "--nproc_per_node", "2"),
                          "dataloader-dispatcher", "--dp", "2", "--mp", "2", env=env)
              for i in range(2)]
    results = [finish(p) for p in agents]
    for i, (rc, out, err) in enumerate(results):
        assert rc == 0, f"node {i}: exit {rc}\n{err}"
    out0, err0 = results[0][1], results[0][2]
    assert "ALL CHECKS PASSED" in out0 and "4 ranks, gloo" in out0, out0
    assert f"this node hosts the store on {c.addrs[0]}:{port}" in err0
    assert f"joining the store at {c.addrs[0]}:{port}" in results[1][2]
    # Console lines carry the node and the global rank (only rank 0 prints).
    assert {l[:15] for l in out0.splitlines()} == {"[node0 rank0]:d"}, out0
    assert "this is node 1 (%s) with ranks 2 to 3" % c.addrs[1] in results[1][2]


def test_static_ranks_with_different_process_counts_and_roles(cluster, tmp_path):
    """torchrun's role_info all-gather: global ranks by node rank, role ranks per role."""
    c = cluster(3)
    port = 29500
    layout = [(2, "trainer"), (1, "reader"), (3, "trainer")]  # (nproc, role) by node rank
    agents = [start_agent(c, i, *static_args(c, i, 3, port, "--nproc_per_node", str(n),
                                             "--role", role, "--rdzv_id", "job7",
                                             "--max_restarts", "2"),
                          "--no_python", worker("env_dump.sh"), env=agent_env(tmp_path))
              for i, (n, role) in enumerate(layout)]
    for i, p in enumerate(agents):
        rc, _, err = finish(p)
        assert rc == 0, f"node {i}: {err}"
    expected = {  # rank: (GROUP_RANK, LOCAL_RANK, ROLE_RANK, ROLE_WORLD_SIZE, role)
        0: (0, 0, 0, 5, "trainer"), 1: (0, 1, 1, 5, "trainer"), 2: (1, 0, 0, 1, "reader"),
        3: (2, 0, 2, 5, "trainer"), 4: (2, 1, 3, 5, "trainer"), 5: (2, 2, 4, 5, "trainer")}
    for rank, (group, local, role_rank, role_world, role) in expected.items():
        e = read_env(tmp_path / f"env.{rank}")
        got = {k: e[k] for k in ("RANK", "GROUP_RANK", "LOCAL_RANK", "ROLE_RANK",
                                 "ROLE_WORLD_SIZE", "ROLE_NAME", "WORLD_SIZE",
                                 "GROUP_WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                 "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                                 "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS")}
        assert got == {
            "RANK": str(rank), "GROUP_RANK": str(group), "LOCAL_RANK": str(local),
            "ROLE_RANK": str(role_rank), "ROLE_WORLD_SIZE": str(role_world),
            "ROLE_NAME": role, "WORLD_SIZE": "6", "GROUP_WORLD_SIZE": "3",
            "LOCAL_WORLD_SIZE": str(layout[group][0]), "MASTER_ADDR": c.addrs[0],
            "MASTER_PORT": str(port), "TORCHELASTIC_RUN_ID": "job7",
            "TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "2"}, rank


def test_static_failure_restarts_every_node_in_a_new_round(cluster, tmp_path):
    c = cluster(2)
    script = ('echo $$ > "$FG_TEST_DIR/r$TORCHELASTIC_RESTART_COUNT.rank$RANK"; '
              'if [ "$TORCHELASTIC_RESTART_COUNT" = 0 ]; then '
              # rank 1 fails once rank 0 (the other node) has written its file: on a slow
              # machine (ASan) the restart would otherwise stop rank 0 before its echo.
              '  if [ "$RANK" = 1 ]; then i=0; while [ ! -e "$FG_TEST_DIR/r0.rank0" ] && '
              '    [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; exit 3; fi; '
              '  exec sleep 60; fi')
    agents = [start_agent(c, i, *static_args(c, i, 2, 29500, "--max_restarts", "1",
                                             "--rdzv_conf", FAST),
                          "--no_python", "sh", "-c", script, env=agent_env(tmp_path))
              for i in range(2)]
    (rc0, _, err0), (rc1, _, err1) = [finish(p) for p in agents]
    assert rc0 == 0 and rc1 == 0, err0 + err1
    assert "rank 1 exited with code 3; forming a new round (restart 1 of 1)" in err1
    assert "node 1 (%s" % c.addrs[1] in err0 and "is restarting" in err0, err0
    assert sorted(os.listdir(tmp_path)) == ["r0.rank0", "r0.rank1", "r1.rank0", "r1.rank1"]


def test_static_failure_without_restarts_fails_every_node(cluster):
    c = cluster(2)
    script = 'if [ "$RANK" = 1 ]; then exit 3; fi; exec sleep 60'
    agents = [start_agent(c, i, *static_args(c, i, 2, 29500, "--rdzv_conf", FAST),
                          "--no_python", "sh", "-c", script, env=agent_env())
              for i in range(2)]
    (rc0, _, err0), (rc1, _, err1) = [finish(p) for p in agents]
    assert rc1 == 3 and "rank 1 (local_rank 0" in err1, err1
    # The other node stops its worker and ends with the failing worker's status.
    assert rc0 == 3, err0
    (line,) = error_lines(subprocess.CompletedProcess([], rc0, b"", err0.encode()))
    assert re.fullmatch(r"fgrun: error: job failed: node 1 \(%s, pid \d+\): rank 1 exited "
                        r"with code 3" % re.escape(c.addrs[1]), line), line


def test_the_store_hosts_agent_killed_ends_the_other_node_cleanly(cluster, tmp_path):
    """Node 0's agent, which hosts the store, is SIGKILLed while both nodes' workers sleep.
    Expected: its worker dies with it (parent-death signal); node 1 loses the store, stops its
    worker and exits non-zero with an error naming the store's address (0.2 s here); nothing
    of the job is left."""
    c = cluster(2)
    script = 'echo $$ > "$FG_TEST_DIR/w.rank$RANK"; exec sleep 60'
    agents = [start_agent(c, i, *static_args(c, i, 2, 29500, "--rdzv_conf", FAST),
                          "--no_python", "sh", "-c", script, env=agent_env(tmp_path))
              for i in range(2)]
    marks = [tmp_path / f"w.rank{r}" for r in range(2)]
    wait_for_files(marks)
    workers = [int(open(m).read()) for m in marks]
    killed_at = time.monotonic()
    os.kill(agents[0].pid, signal.SIGKILL)
    rc1, _, err1 = finish(agents[1])
    took = time.monotonic() - killed_at
    agents[0].wait(timeout=TIMEOUT)
    assert rc1 != 0, err1
    assert c.addrs[0] in err1 and "fgrun: error:" in err1, err1
    # It knows at once (the connection closes): no retrying a store that is gone for the
    # read timeout (10 s here, 60 s by default) to record how it ended.
    assert took < 5, f"node 1 took {took:.1f}s to give up"
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), "a worker outlived its agent"


def test_static_nodes_present_the_store_token(cluster):
    c = cluster(2)
    node0 = start_agent(c, 0, *static_args(c, 0, 2, 29500, "--store_token", "s3cret",
                                           "--rdzv_conf", "join_timeout=3"),
                        "--no_python", "true", env=agent_env())
    wrong = start_agent(c, 1, *static_args(c, 1, 2, 29500, "--store_token", "wrong"),
                        "--no_python", "true", env=agent_env())
    rc, _, err = finish(wrong)
    assert rc == 1
    assert f"fgrun: error: cannot use the rendezvous store at {c.addrs[0]}:29500 (" in err, err
    assert "refused the store token" in err
    right = start_agent(c, 1, *static_args(c, 1, 2, 29500, "--store_token", "s3cret"),
                        "--no_python", "true", env=agent_env())
    for p in (node0, right):
        rc, _, err = finish(p)
        assert rc == 0, err


@pytest.mark.torch
def test_static_two_nodes_run_a_torch_script(cluster):
    """torch 1.13's env:// under two agents: the workers use node 0's store."""
    c = cluster(2)
    agents = [start_agent(c, i, *static_args(c, i, 2, 29500, "--nproc_per_node", "2"),
                          worker("torch_ddp.py"), env=agent_env()) for i in range(2)]
    for i, p in enumerate(agents):
        rc, out, err = finish(p, timeout=120)
        assert rc == 0, f"node {i}: {err}"
        assert sorted(out.splitlines()) == [f"[node{i} rank{r}]:rank {r} ok"
                                            for r in (2 * i, 2 * i + 1)], out


def test_a_static_node_that_never_comes_is_named(cluster):
    c = cluster(1)
    t0 = time.monotonic()
    p = start_agent(c, 0, *static_args(c, 0, 3, 29500, "--rdzv_conf", "join_timeout=1.5"),
                    "--no_python", "true", env=agent_env())
    rc, _, err = finish(p)
    assert rc == 1
    assert ("fgrun: error: rendezvous 'none' (round 0) timed out after 1.5 s: 1 of 3 nodes "
            "joined; missing node ranks 1, 2") in err, err
    assert time.monotonic() - t0 < TIMEOUT


# --- c10d rendezvous -----------------------------------------------------------------------

def test_c10d_three_nodes_get_ranks_by_address(cluster, tmp_path):
    c = cluster(3)
    port = free_port()
    env = agent_env(tmp_path, FGCONFORM=bin_path("fgconform"))
    # Started in reverse: arrival order must not matter.
    agents = {i: start_agent(c, i, *c10d_args(c, "2:3", port, "elastic3", conf=ALL3),
                             "--no_python", "sh", "-c", CONFORM, env=env)
              for i in reversed(range(3))}
    results = {i: finish(p) for i, p in agents.items()}
    for i, (rc, out, err) in results.items():
        assert rc == 0, f"node {i}: {err}\n{out}"
        assert f"this is node {i} ({c.addrs[i]}) with ranks {i} to {i}" in err, err
    assert re.search(r"\d+ checks passed on 3 ranks \(gloo\)", results[0][1]), results[0][1]
    assert "this node hosts the store" in results[0][2]
    assert "not an address of this host" in results[1][2]
    assert sorted(os.listdir(tmp_path)) == ["r0.n0.rank0", "r0.n1.rank1", "r0.n2.rank2"]


def kill_one_agent(c, tmp_path, max_restarts):
    """Three nodes (2:3) run round 0; the agent on the third is SIGKILLed."""
    port = free_port()
    env = agent_env(tmp_path, FGCONFORM=bin_path("fgconform"))
    agents = [start_agent(c, i, *c10d_args(c, "2:3", port, "kill", "--max_restarts",
                                           str(max_restarts), conf=ALL3),
                          "--no_python", "sh", "-c", ROUNDS, env=env) for i in range(3)]
    marks = [tmp_path / f"r0.n{i}.rank{i}" for i in range(3)]
    wait_for_files(marks)
    victim_worker = int(open(marks[2]).read())
    os.kill(agents[2].pid, signal.SIGKILL)
    results = [finish(p) for p in agents[:2]]
    agents[2].wait(timeout=TIMEOUT)
    deadline = time.monotonic() + 10
    while alive(victim_worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(victim_worker), "the dead agent's worker outlived it"
    return results


def test_c10d_survivors_reform_after_an_agent_is_killed(cluster, tmp_path):
    c = cluster(3)
    results = kill_one_agent(c, tmp_path, max_restarts=1)
    lost = r"node 2 \(%s, pid \d+\) sent no keep-alive for 2 s; forming a new round " \
           r"\(restart 1 of 1\)" % re.escape(c.addrs[2])
    noticed = [bool(re.search(lost, err)) for _, _, err in results]
    for i, (rc, out, err) in enumerate(results):
        assert rc == 0, f"node {i}: {err}\n{out}"
        assert f"rendezvous round 1: 2 nodes, 2 workers; this is node {i}" in err
        # A survivor that saw the other restart first follows it, using no restart.
        assert noticed[i] or re.search(r"node %d \(.*\) is restarting \(node 2 .*\); forming "
                                       r"a new round\n" % (1 - i), err), err
    assert any(noticed), results
    assert "checks passed on 2 ranks (gloo)" in results[0][1], results[0][1]
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith("r1")) == [
        "r1.n0.rank0", "r1.n1.rank1"]


def test_c10d_survivors_fail_cleanly_without_restarts(cluster, tmp_path):
    c = cluster(3)
    results = kill_one_agent(c, tmp_path, max_restarts=0)
    for i, (rc, out, err) in enumerate(results):
        assert rc == 1, f"node {i}: {err}"
        (line,) = [l for l in err.splitlines() if l.startswith("fgrun: error:")]
        # Whichever survivor sees it first says so; the other may learn it from the
        # job's close, or from the first one's end, both naming the node that failed.
        lost = r"node 2 \(%s, pid \d+\) sent no keep-alive for 2 s" % re.escape(c.addrs[2])
        other = r"node [01] \(10[.0-9]+, pid \d+\)"
        assert re.fullmatch(r"fgrun: error: job failed: (%s \(no restarts left\)|%s: %s|"
                            r"%s failed \(%s\))" % (lost, other, lost, other, lost),
                            line), line


def test_c10d_fewer_than_min_after_a_death_fail_with_the_count(cluster, tmp_path):
    c = cluster(2)
    port = free_port()
    env = agent_env(tmp_path, FGCONFORM=bin_path("fgconform"))
    conf = FAST.replace("join_timeout=30", "join_timeout=2")
    agents = [start_agent(c, i, *c10d_args(c, "2", port, "min", "--max_restarts", "1",
                                           conf=conf),
                          "--no_python", "sh", "-c", ROUNDS, env=env) for i in range(2)]
    wait_for_files([tmp_path / "r0.n0.rank0", tmp_path / "r0.n1.rank1"])
    os.kill(agents[1].pid, signal.SIGKILL)
    rc, _, err = finish(agents[0])
    assert rc == 1, err
    assert "forming a new round (restart 1 of 1)" in err
    assert ("fgrun: error: rendezvous 'min' (round 1) timed out after 2 s: 1 node joined, at "
            "least 2 needed (1 missing)") in err, err


def test_c10d_a_new_node_is_let_in_without_using_a_restart(cluster, tmp_path):
    c = cluster(3)
    port = free_port()
    env = agent_env(tmp_path, FGCONFORM=bin_path("fgconform"))
    first = [start_agent(c, i, *c10d_args(c, "2:3", port, "grow"), "--no_python", "sh", "-c",
                         ROUNDS, env=env) for i in range(2)]
    wait_for_files([tmp_path / "r0.n0.rank0", tmp_path / "r0.n1.rank1"])
    late = start_agent(c, 2, *c10d_args(c, "2:3", port, "grow"), "--no_python", "sh", "-c",
                       ROUNDS, env=env)
    results = [finish(p) for p in first + [late]]
    for i, (rc, out, err) in enumerate(results):
        assert rc == 0, f"node {i}: {err}\n{out}"
        assert f"rendezvous round 1: 3 nodes, 3 workers; this is node {i}" in err, err
    # Whichever member sees the waiting node first re-forms; the other may follow it.
    assert any("1 node is waiting to join (2 of at most 3 running); forming a new round\n"
               in err for _, _, err in results[:2]), results
    assert not any("restart 1 of" in err for _, _, err in results)  # --max_restarts 0 did


def test_c10d_a_node_stopped_by_a_signal_leaves_and_the_others_reform(cluster, tmp_path):
    c = cluster(3)
    port = free_port()
    env = agent_env(tmp_path, FGCONFORM=bin_path("fgconform"))
    agents = [start_agent(c, i, *c10d_args(c, "2:3", port, "sig", "--max_restarts", "1",
                                           conf=ALL3),
                          "--no_python", "sh", "-c", ROUNDS, env=env) for i in range(3)]
    wait_for_files([tmp_path / f"r0.n{i}.rank{i}" for i in range(3)])
    agents[2].send_signal(signal.SIGTERM)
    rc2, _, err2 = finish(agents[2])
    assert rc2 == 128 + signal.SIGTERM and "stopped by SIGTERM" in err2
    for i, (rc, out, err) in enumerate(finish(p) for p in agents[:2]):
        assert rc == 0, f"node {i}: {err}"
        assert re.search(r"node 2 \(%s, pid \d+\) left \(stopped by SIGTERM\); forming a "
                         r"new round \(restart 1 of 1\)" % re.escape(c.addrs[2]), err), err


def test_a_failure_after_a_node_finished_cannot_restart(cluster):
    c = cluster(2)
    script = 'if [ "$RANK" = 1 ]; then sleep 0.5; exit 3; fi'
    agents = [start_agent(c, i, *static_args(c, i, 2, 29500, "--max_restarts", "1",
                                             "--rdzv_conf", FAST),
                          "--no_python", "sh", "-c", script, env=agent_env())
              for i in range(2)]
    (rc0, _, err0), (rc1, _, err1) = [finish(p) for p in agents]
    assert rc0 == 0, err0  # its workers succeeded; it waited for node 1 to end
    assert rc1 == 3, err1
    assert re.search(r"fgrun: error: cannot restart: node 0 \(%s, pid \d+\) has finished "
                     r"already, so the group cannot be formed again" % re.escape(c.addrs[0]),
                     err1), err1
    assert "forming a new round" not in err1


def test_c10d_too_few_nodes_time_out_with_the_count(cluster):
    c = cluster(1)
    p = start_agent(c, 0, *c10d_args(c, "2:4", free_port(), "lonely",
                                     conf="join_timeout=1.5,last_call_timeout=0.5"),
                    "--no_python", "true", env=agent_env())
    rc, _, err = finish(p)
    assert rc == 1
    assert ("fgrun: error: rendezvous 'lonely' (round 0) timed out after 1.5 s: 1 node "
            "joined, at least 2 needed (1 missing)") in err, err


def test_c10d_an_endpoint_nobody_serves_is_named(cluster):
    c = cluster(2)
    port = free_port()
    endpoint = f"{c.spare_addr}:{port}"
    p = start_agent(c, 1, "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint,
                    "--nnodes", "2", "--rdzv_conf", "read_timeout=1", "--no_python", "true",
                    env=agent_env())
    rc, _, err = finish(p)
    assert rc == 1
    assert f"joining the store at {endpoint} (not an address of this host here)" in err
    assert f"fgrun: error: cannot reach the rendezvous store at {endpoint} within 1 s" in err


def test_c10d_on_an_fgstore_nobody_hosts(cluster, tmp_path):
    c = cluster(3)
    port = free_port()
    store = c.start(0, [bin_path("fgstore"), "--host", c.addrs[0], "--port", str(port)])
    env = agent_env(tmp_path)
    agents = [start_agent(c, i, *c10d_args(c, "2", port, "ext"), "--no_python",
                          worker("env_dump.sh"), env=env) for i in (1, 2)]
    results = [finish(p) for p in agents]
    store.send_signal(signal.SIGTERM)
    store.wait(timeout=TIMEOUT)
    for rc, _, err in results:
        assert rc == 0, err
        assert "the port is taken" not in err and "not an address of this host" in err
    assert {read_env(tmp_path / f"env.{r}")["MASTER_ADDR"] for r in (0, 1)} == {c.addrs[0]}


# --- mpirun across the hosts ---------------------------------------------------------------

@pytest.mark.mpi
@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_mpirun_across_hosts(cluster, tmp_path, backend):
    """mpirun on the first host starts the others' ranks through an rsh agent that enters
    their namespace. With gloo, rank 0 serves the store and tells the others an address
    they can reach over MPI."""
    if not have_mpi():
        pytest.skip("Open MPI is not installed")
    c = cluster(2)
    hostfile = tmp_path / "hosts"
    hostfile.write_text("".join(f"{a} slots=2\n" for a in c.addrs))
    net = c.addrs[0].rsplit(".", 1)[0] + ".0/24"
    env = fgrun_env(NETNS_HOSTS=",".join(f"{a}={h}" for a, h in zip(c.addrs, c.hosts)),
                    GLOO_SOCKET_IFNAME="eth0", **SAN_ENV)
    rsh = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_rsh.sh")
    p = c.start(0, ["mpirun", "--allow-run-as-root", "-np", "4", "--hostfile", str(hostfile),
                    "--mca", "plm_rsh_agent", rsh, "--mca", "oob_tcp_if_include", net,
                    "--mca", "btl_tcp_if_include", net,
                    # every namespace has the same host name, so Open MPI would take them
                    # for one host and use shared memory between them
                    "--mca", "btl", "self,tcp", "-x", "GLOO_SOCKET_IFNAME", "-x",
                    "ASAN_OPTIONS", "-x", "LSAN_OPTIONS",
                    bin_path("fgscenario"), "--backend", backend, "dataloader-dispatcher",
                    "--dp", "2", "--mp", "2"], env=env)
    rc, out, err = finish(p)
    assert rc == 0, err + out
    assert f"ALL CHECKS PASSED (5 checks on rank 0, 4 ranks, {backend}" in out, out


# --- the command line ----------------------------------------------------------------------

BAD_INPUT = [
    (["--nnodes", "2"], "--nnodes 2 with the static rendezvous: give each node its "
                        "--node_rank (0 to 1)"),
    (["--nnodes", "2", "--node_rank", "2"], "--node_rank 2: must be below --nnodes (2)"),
    (["--nnodes", "1:3", "--node_rank", "0"], "the static rendezvous needs a fixed number"),
    (["--standalone", "--nnodes", "2"], "--standalone runs one node"),
    (["--rdzv_conf", "join_timeout=soon"], "--rdzv_conf: join_timeout=soon: expected a "
                                           "positive number of seconds"),
    (["--rdzv_conf", "keep_alive_max_attempt=0"], "keep_alive_max_attempt=0"),
    (["--rdzv_conf", "is_host=maybe"], "is_host=maybe"),
    (["--rdzv_conf", "store_type=file"], "store_type=file"),
]


@pytest.mark.parametrize("args,needle", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_multinode_options_exit_2(fgrun, tmp_path, args, needle):
    cp = run(fgrun, *args, worker("marker.sh"), env=fgrun_env(FG_TEST_DIR=tmp_path))
    assert cp.returncode == 2, cp.stderr.decode()
    (line,) = error_lines(cp)
    assert needle in line, line
    assert os.listdir(tmp_path) == []


def test_unknown_rdzv_conf_keys_are_a_warning(fgrun):
    cp = run(fgrun, "--standalone", "--rdzv_conf", "join_timout=5", "--no_python", "true")
    assert cp.returncode == 0
    assert "ignoring unknown key 'join_timout'" in cp.stderr.decode()


def test_static_node_rank_0_must_own_the_master_address(fgrun, cluster):
    c = cluster(2)
    p = start_agent(c, 1, *static_args(c, 0, 2, 29500), "--no_python", "true", env=agent_env())
    rc, _, err = finish(p)
    assert rc == 2
    assert (f"fgrun: error: cannot listen on {c.addrs[0]}:29500: not an address of this host"
            in err), err
