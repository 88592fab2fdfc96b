"""torchrun's options newer than torch 1.13 (torch main's torch/distributed/run.py):
--numa-binding as real CPU affinity, --event-log-handler console, --local-addr in the c10d
rendezvous, and the refusals: --logs-specs, --nproc-per-node xpu, bad values."""
import json
import os
import subprocess

import pytest

from conftest import free_port
from launcher_util import error_lines, finish_agent, fgrun_env, run, start, stderr_lines

MODES = ["node", "socket", "exclusive", "core-complex"]
DUMP_CPUS = "grep Cpus_allowed_list /proc/self/status | cut -f2 > $OUT/cpus.$LOCAL_RANK"


def cpus(text):
    """'0-2,5' -> {0, 1, 2, 5}"""
    out = set()
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def bound(fgrun, tmp_path, nproc, *args, taskset=None):
    """Runs nproc workers that write their Cpus_allowed_list; returns (the job, their sets,
    what fgrun said each would get)."""
    head = ["taskset", "-c", taskset] if taskset else []
    cp = subprocess.run([*head, fgrun, f"--master_port={free_port()}", f"--nproc_per_node={nproc}",
                         *args, "--no_python", "sh", "-c", DUMP_CPUS], env=fgrun_env(OUT=tmp_path),
                        capture_output=True, text=True, timeout=120)
    said = {}
    for line in cp.stderr.splitlines():
        if "--numa_binding" in line and "local rank" in line:
            rank, _, listed = line.split("local rank ")[1].partition(" on CPUs ")
            said[int(rank)] = cpus(listed)
    got = {r: cpus((tmp_path / f"cpus.{r}").read_text()) for r in range(nproc)
           if (tmp_path / f"cpus.{r}").exists()}
    return cp, got, said


def numa_nodes():
    """{node id: its CPUs that this process may use}, as /sys tells; one node without it."""
    allowed = os.sched_getaffinity(0)
    base = "/sys/devices/system/node"
    nodes = {}
    for name in os.listdir(base) if os.path.isdir(base) else []:
        if name.startswith("node") and name[4:].isdigit():
            mine = cpus(open(f"{base}/{name}/cpulist").read()) & allowed
            if mine:
                nodes[int(name[4:])] = mine
    return nodes or {0: allowed}


def cores_of(cpu_set):
    """The physical cores (SMT siblings together) among cpu_set."""
    out = {}
    for c in cpu_set:
        path = f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"
        key = min(cpus(open(path).read())) if os.path.exists(path) else c
        out.setdefault(key, set()).add(c)
    return list(out.values())


def test_without_numa_binding_workers_keep_fgruns_cpus(fgrun, tmp_path):
    cp, got, said = bound(fgrun, tmp_path, 2)
    assert cp.returncode == 0, cp.stderr
    assert said == {} and got == {0: os.sched_getaffinity(0), 1: os.sched_getaffinity(0)}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_binds_every_worker_before_it_starts(fgrun, tmp_path, mode):
    """The workers run on the CPUs fgrun says, within its own, from their first instruction
    (a shell reads its own status); node, socket and core-complex stay within one node."""
    cp, got, said = bound(fgrun, tmp_path, 2, f"--numa-binding={mode}")
    cores = sum(len(cores_of(n)) for n in numa_nodes().values())
    if mode == "exclusive" and cores < 2:
        assert cp.returncode == 2 and "physical core" in cp.stderr, cp.stderr
        return
    assert cp.returncode == 0, cp.stderr
    assert got == said and len(got) == 2, cp.stderr
    allowed = os.sched_getaffinity(0)
    for r, s in got.items():
        assert s and s <= allowed
        if mode in ("node", "core-complex"):
            assert any(s <= n for n in numa_nodes().values()), (r, s, numa_nodes())
        if mode == "node":
            assert s in numa_nodes().values()


def test_exclusive_gives_each_worker_cores_of_its_own(fgrun, tmp_path):
    """As many workers as the node has cores: one whole core each, none shared - also on a
    machine with one NUMA node."""
    node = max(numa_nodes().values(), key=len)
    n = len(cores_of(node)) if len(numa_nodes()) == 1 else 1
    cp, got, said = bound(fgrun, tmp_path, n, "--numa_binding", "exclusive")
    assert cp.returncode == 0, cp.stderr
    assert got == said
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, cores_of(node)))[:n]
    for a in got:
        for b in got:
            assert a == b or not got[a] & got[b]


def test_exclusive_within_a_taskset_and_too_few_cores(fgrun, tmp_path):
    """fgrun's own affinity bounds the plan; more workers than cores is a usage error naming
    the counts, before any worker starts."""
    cpu = str(min(os.sched_getaffinity(0)))
    cp, got, _ = bound(fgrun, tmp_path, 1, "--numa_binding=exclusive", taskset=cpu)
    assert cp.returncode == 0, cp.stderr
    assert got == {0: {int(cpu)}}
    cp, got, _ = bound(fgrun, tmp_path, 2,
                       "--numa_binding=exclusive", taskset=cpu)
    assert cp.returncode == 2
    assert "--numa_binding exclusive: NUMA node" in cp.stderr
    assert "has 1 physical core fgrun may use, for 2 workers" in cp.stderr, cp.stderr


# --- --event_log_handler ---------------------------------------------------------------------

def events(cp):
    return [json.loads(l) for l in stderr_lines(cp) if l.startswith("{")]


FAIL_WITH_RECORD = ('if [ "$LOCAL_RANK" = 1 ]; then echo \'{"message": {"message": "ValueError: '
                    'boom"}}\' > "$TORCHELASTIC_ERROR_FILE"; exit 3; fi; exec sleep 30')


def test_console_events_name_every_worker_and_the_agent(fgrun):
    cp = run(fgrun, "--event-log-handler=console", f"--master_port={free_port()}", "--nproc_per_node=2", "--rdzv_id=ev1",
             "--no_python", "sh", "-c", FAIL_WITH_RECORD)
    assert cp.returncode == 3, cp.stderr
    evs = events(cp)
    assert [(e["source"], e["metadata"]["state"], e["metadata"]["global_rank"]) for e in evs] == [
        ("WORKER", "TERMINATED", 0), ("WORKER", "FAILED", 1), ("AGENT", "FAILED", None)]
    for e in evs:
        md = e["metadata"]
        assert e["name"] == "torchelastic.worker.status." + md["state"]
        assert (md["run_id"], md["role"], md["rdzv_backend"], md["group_rank"]) == (
            "ev1", "default", "static", 0)
        assert e["timestamp"] > 0 and md["agent_restarts"] == 0
    worker_md = json.loads(evs[1]["metadata"]["metadata"])
    assert worker_md == {"group_world_size": 1, "entry_point": "sh", "local_rank": [1],
                         "role_rank": [1], "role_world_size": [2]}
    assert json.loads(evs[1]["metadata"]["raw_error"]) == {"message": {"message": "ValueError: boom"}}
    assert evs[0]["metadata"]["raw_error"] is None
    assert evs[1]["metadata"]["worker_id"].isdigit()
    assert "rank 1 exited with code 3" in evs[2]["metadata"]["raw_error"]


def test_console_events_follow_a_restart(fgrun, tmp_path):
    script = 'if [ "$TORCHELASTIC_RESTART_COUNT" = 0 ] && [ "$LOCAL_RANK" = 0 ]; then exit 1; fi'
    cp = run(fgrun, "--max_restarts=1", "--standalone", "--nproc_per_node=2", "--no_python", "sh", "-c", script,
             env=fgrun_env(PET_EVENT_LOG_HANDLER="console"))
    assert cp.returncode == 0, cp.stderr
    got = [(e["source"], e["metadata"]["state"], e["metadata"]["agent_restarts"])
           for e in events(cp)]
    assert got[0] == ("WORKER", "FAILED", 0)
    assert got[2:] == [("WORKER", "SUCCEEDED", 1), ("WORKER", "SUCCEEDED", 1),
                       ("AGENT", "SUCCEEDED", 1)]


def test_the_null_handler_is_the_default_and_writes_nothing(fgrun):
    for args in ([], ["--event_log_handler=null"]):
        cp = run(fgrun, *args, "--standalone", "--nproc_per_node=2", "--no_python", "sh", "-c",
                 "exit 1")
        assert cp.returncode == 1 and events(cp) == [], cp.stderr


# --- --local_addr ------------------------------------------------------------------------------

def test_c10d_orders_nodes_by_their_local_addr(fgrun, tmp_path):
    """Two agents on this host: the first started (lower pid, which orders them when their
    addresses are equal) advertises the higher address, so it becomes node 1."""
    port = free_port()
    common = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
              f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=localaddr", "--no_python", "sh",
              "-c", "echo $GROUP_RANK > $OUT/group.$NAME"]
    agents = {}
    for name, addr in (("first", "10.0.0.2"), ("second", "10.0.0.1")):
        agents[name] = start(fgrun, f"--local-addr={addr}", *common,
                             env=fgrun_env(OUT=tmp_path, NAME=name))
    results = {name: finish_agent(p) for name, p in agents.items()}
    for name, (rc, _, err) in results.items():
        assert rc == 0, err
    assert (tmp_path / "group.first").read_text().strip() == "1"
    assert (tmp_path / "group.second").read_text().strip() == "0"
    assert "10.0.0.2" in results["first"][2], results["first"][2]


# --- refusals and bad values -----------------------------------------------------------------

@pytest.mark.parametrize("args,env,needle", [
    (["--numa_binding=cores"], {}, "--numa_binding: expected node, socket, exclusive or "
                                   "core-complex, got 'cores'"),
    (["--numa-binding", "NODE"], {}, "got 'NODE'"),
    (["--event_log_handler=file"], {}, "--event_log_handler: unknown event log handler 'file' "
                                       "(fgrun has null and console)"),
    ([], {"PET_EVENT_LOG_HANDLER": "syslog"}, "PET_EVENT_LOG_HANDLER: unknown event log handler "
                                              "'syslog'"),
    (["--logs-specs=my_specs"], {}, "--logs_specs: 'my_specs': fgrun cannot load a Python entry "
                                    "point (torchrun.logs_specs)"),
    (["--nproc_per_node=xpu"], {}, "--nproc_per_node: 'xpu': fgrun cannot count Intel XPUs"),
    (["--local_addr="], {}, "--local_addr: expected a host name or address"),
    (["--local-addr=a b"], {}, "got 'a b'"),
    (["--local_addr=" + "h" * 64], {}, "1 to 63 characters"),
], ids=["numa-mode", "numa-case", "event-handler", "event-handler-env", "logs-specs", "xpu",
        "local-addr-empty", "local-addr-space", "local-addr-long"])
def test_bad_values_exit_2_naming_flag_and_value(fgrun, args, env, needle):
    cp = run(fgrun, *args, "--no_python", "true", env=fgrun_env(**env))
    assert cp.returncode == 2, cp.stderr
    assert any(needle in l for l in error_lines(cp)), cp.stderr


def test_logs_specs_says_what_to_use_instead(fgrun):
    cp = run(fgrun, "--logs_specs", "custom", "--no_python", "true")
    assert cp.returncode == 2
    assert "use --log_dir, --redirects, --tee, --local_ranks_filter and " \
           "--log_line_prefix_template instead" in cp.stderr.decode()


def test_help_lists_the_newer_flags(fgrun):
    text = run(fgrun, "--help").stdout.decode()
    for spelling in ("--local-addr, --local_addr ADDR", "--numa-binding, --numa_binding MODE",
                     "--event-log-handler, --event_log_handler NAME", "--logs-specs, --logs_specs"):
        assert spelling in text, spelling


def test_torchrun_2s_prefix_template_variable_is_read(fgrun):
    """TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE, after --log_line_prefix_template and its PET_."""
    env = {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": "<${local_rank}>"}
    cp = run(fgrun, "--standalone", "--no_python", "echo", "hi", env=fgrun_env(**env))
    assert cp.returncode == 0 and cp.stdout.decode() == "<0>hi\n", cp
    cp = run(fgrun, "--standalone", "--log_line_prefix_template=[${rank}]", "--no_python",
             "echo", "hi", env=fgrun_env(**env))
    assert cp.stdout.decode() == "[0]hi\n", cp
