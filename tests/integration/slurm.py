"""A real Slurm cluster for the tests: Debian bookworm's Slurm 22.05 (slurmctld, one slurmd per
node) and munge, started per test session and stopped by pid.

Every node is a host of its own: a network namespace on a private bridge (netns.py) with its
own address, a UTS namespace with its own host name (n1, n2, ...) and a mount namespace whose
/etc/hosts names every host of the cluster, so node names resolve as they do on a cluster,
and whose /dev/shm is a tmpfs of its own, as a host's is.
slurmctld runs on one more host, "head", which is also the login node the tests submit from.
One munged serves them all: its socket is a file, which network namespaces do not hide.

Nothing is shared with a Slurm or munge the machine may run: the cluster has its own
SLURM_CONF, munge key and socket, and state, spool, log and TmpFS directories, all under one
temporary directory; its daemons listen on Slurm's default ports inside its own namespaces,
where no other process can be. close() stops the daemons it started, by pid, kills whatever is
still running in the cluster's namespaces (only the cluster's own processes can be there) and
removes the namespaces and the directory.
"""
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, SYSTEM_PYTHON
from launcher_util import kill_all
from netns import Cluster, namespaces_unavailable

# What the tests' own environment must not hand to a job: a Slurm job or launcher around them.
LEAKED_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "PMIX_", "OMPI_", "TORCHELASTIC_",
                   "PET_")
LEAKED = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "GROUP_RANK", "FG_BACKEND"}
DAEMONS = ["slurmctld", "slurmd", "munged", "mungekey", "sbatch", "srun", "scontrol"]
HEAD = "head"
START_TIMEOUT = 60  # seconds for every node to show idle; a second or two when healthy
# What a test may change: conf(...) keys replace these.
DEFAULT_CONF = {
    "KillWait": 5,          # SIGTERM to SIGKILL when a job ends or is cancelled
    "MinJobAge": 4,         # < 8 keeps sbatch --wait polling every 2 s rather than 8, 32
    "SlurmdTimeout": 300,   # a lost node is DOWN after this long
    "MessageTimeout": 10,
}


@functools.lru_cache(maxsize=None)
def unavailable():
    """None when a Slurm cluster can be started here, else the reason."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing; "
                "scripts/install-deps.sh installs it)")
    for tool in ("nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"util-linux's {tool} is missing"
    return namespaces_unavailable()


def _tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return "(no log)\n"


def _netns_inode(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


class SlurmCluster:
    """nodes compute nodes n1..nN, cpus CPUs each (declared: config_overrides), and a head."""

    def __init__(self, nodes=2, cpus=8, **conf):
        self.names = [HEAD] + [f"n{i + 1}" for i in range(nodes)]
        self.nodes = self.names[1:]
        self.cpus = cpus
        self.conf_values = dict(DEFAULT_CONF, **conf)
        self.dir = tempfile.mkdtemp(prefix=f"fgslurm{os.getpid()}.", dir="/tmp")
        self.daemons = {}  # name -> Popen
        self.net = None
        try:
            os.chmod(self.dir, 0o755)  # munged and slurmd check the directories above theirs
            self.net = Cluster(len(self.names))
            self.addr = dict(zip(self.names, self.net.addrs))
            self.conf_path = os.path.join(self.dir, "slurm.conf")
            self._write_files()
            self._start()
        except BaseException:
            self.close()
            raise

    # --- files ---------------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def _write_files(self):
        for d in ("munge", "state", "log", "jobtmp", *(f"spool/{n}" for n in self.nodes),
                  *(f"tmp/{n}" for n in self.nodes)):
            os.makedirs(self.path(d), mode=0o755, exist_ok=True)
        with open(self.path("hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n")
            f.writelines(f"{self.addr[n]} {n}\n" for n in self.names)
        subprocess.run(["mungekey", "--create", f"--keyfile={self.path('munge', 'munge.key')}"],
                       check=True, capture_output=True, timeout=30)
        v = self.conf_values
        self.serial = int(self.net.tag.rsplit("x", 1)[1]) % 10
        self.cluster_name = f"fg{os.getpid()}x{self.serial}"
        lines = [
            f"ClusterName={self.cluster_name}",
            # Job ids of their own, as separate clusters have: Open MPI and PMIx name files
            # after the host (n1 in every cluster) and the job id.
            f"FirstJobId={100000 + (os.getpid() % 60000) * 1000 + self.serial * 100}",
            f"SlurmctldHost={HEAD}({self.addr[HEAD]})",
            "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.path('state')}",
            f"SlurmdSpoolDir={self.path('spool')}/%n",
            f"TmpFS={self.path('tmp')}/%n",  # PMIx's files: steps on two nodes must not share it
            f"SlurmctldPidFile={self.path('slurmctld.pid')}",
            f"SlurmdPidFile={self.path('slurmd.%n.pid')}",
            f"SlurmctldLogFile={self.path('log', 'slurmctld.log')}",
            f"SlurmdLogFile={self.path('log', 'slurmd.%n.log')}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "SlurmdParameters=config_overrides",  # more CPUs than the machine has
            "SchedulerType=sched/builtin", "MpiDefault=none", "ReturnToService=2",
            "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none", "MailProg=/bin/true",
            "InactiveLimit=0",
            *(f"{k}={v[k]}" for k in sorted(v)),
            *(f"NodeName={n} NodeAddr={self.addr[n]} CPUs={self.cpus} State=UNKNOWN"
              for n in self.nodes),
            "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def munge_socket(self):
        return self.path("munge", "munge.socket")

    # --- processes on the cluster's hosts --------------------------------------------------

    def on(self, host, argv):
        """argv as it runs on host: in its network namespace, with its name, /etc/hosts and a
        /dev/shm of its own (a tmpfs, gone with the node's last process). Open MPI keeps its
        shared-memory segments in /dev/shm, named by host, uid, job and local rank, and
        unlinks them at MPI_Finalize; with one /dev/shm for the nodes of every cluster on
        the machine, a rank under srun --mpi=pmix once failed to open its node peer's segment
        (open(2) ENOENT) and crashed. Real hosts share no /dev/shm."""
        i = self.names.index(host)
        return ["nsenter", f"--net=/run/netns/{self.net.hosts[i]}", "unshare", "--uts", "--mount",
                "sh", "-c", 'hostname "$0" && mount --bind "$1" /etc/hosts'
                ' && mount -t tmpfs -o mode=1777 fg-shm /dev/shm && shift && exec "$@"',
                host, self.path("hosts"), *argv]

    def env(self, **extra):
        """The environment for the cluster's commands and, through sbatch and srun, its jobs:
        this cluster's SLURM_CONF, none of a Slurm job or launcher the tests may run in, our
        binaries on PATH, and TMPDIR in the cluster's directory (fgrun's run directories,
        Open MPI's session directories), so a job killed outright leaves nothing behind."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(LEAKED_PREFIXES) and k not in LEAKED}
        env.update(SLURM_CONF=self.conf_path, PATH=f"{BIN}:{os.environ['PATH']}",
                   PYTHON_EXEC=SYSTEM_PYTHON, TMPDIR=self.path("jobtmp"))
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def _daemon(self, name, host, argv):
        log = open(self.path("log", f"{name}.out"), "wb")
        p = subprocess.Popen(self.on(host, argv), env=self.env(), stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.daemons[name] = p
        return p

    def _start(self):
        m = self.path("munge")
        self._daemon("munged", HEAD, [
            "munged", "--foreground", f"--socket={self.munge_socket}",
            f"--key-file={m}/munge.key", f"--pid-file={m}/munged.pid",
            f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"])
        self._wait(lambda: os.path.exists(self.munge_socket), "munged's socket",
                   ["munged"])
        self._daemon("slurmctld", HEAD, ["slurmctld", "-D", "-f", self.conf_path])
        for n in self.nodes:
            self.start_slurmd(n)
        self.wait_idle()

    def start_slurmd(self, node):
        return self._daemon(f"slurmd.{node}", node, ["slurmd", "-D", "-N", node,
                                                     "-f", self.conf_path])

    def _wait(self, ready, what, watch, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in watch:
                if self.daemons[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.daemons[name].returncode} "
                                       f"before {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"no {what} within {timeout}s:\n{self.logs()}")

    def node_states(self):
        cp = self.run(["sinfo", "--noheader", "--Node", "--format=%N %T"], timeout=30)
        return dict(line.split() for line in cp.stdout.splitlines() if line.strip())

    def wait_idle(self, nodes=None, timeout=START_TIMEOUT):
        nodes = nodes or self.nodes
        self._wait(lambda: all(self.node_states().get(n) == "idle" for n in nodes),
                   f"idle nodes {nodes}", [n for n in self.daemons if n != "munged"], timeout)

    def logs(self):
        return "".join(f"--- {name}\n{_tail(self.path('log', name))}"
                       for name in sorted(os.listdir(self.path("log"))))

    # --- client commands, on the head (the login node) --------------------------------------

    def run(self, argv, env=None, timeout=120, check=False, host=HEAD, **kw):
        """A command on a host (default: the head), text output; a timeout is a failure with
        the daemons' logs."""
        try:
            cp = subprocess.run(self.on(host, argv), env=env or self.env(), capture_output=True,
                                text=True, errors="replace", timeout=timeout, **kw)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{argv} ran past {timeout}s; stdout: {e.stdout}\n"
                                 f"stderr: {e.stderr}\n{self.logs()}") from None
        if check and cp.returncode != 0:
            raise AssertionError(f"{argv} exited {cp.returncode}:\n{cp.stdout}{cp.stderr}")
        return cp

    def start(self, argv, env=None, host=HEAD, **kw):
        """A command on a host, not waited for (stdout and stderr piped, text)."""
        return subprocess.Popen(self.on(host, argv), env=env or self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", **kw)

    def sbatch(self, script, *args, options=(), env=None, out_dir, wait=True, timeout=180):
        """Submits script (args after it; None with --wrap in options); with wait, sbatch
        --wait: returns (exit status, the job's output, job id); else the job id at once."""
        out = os.path.join(out_dir, "slurm-%j.out")
        argv = ["sbatch", "--parsable", f"--output={out}", *options]
        if wait:
            argv.append("--wait")
        cp = self.run([*argv, *([script] if script else []), *args], env=env, timeout=timeout)
        m = re.match(r"(\d+)", cp.stdout)
        if not m:
            raise AssertionError(f"sbatch refused the job ({cp.returncode}):\n"
                                 f"{cp.stdout}{cp.stderr}")
        job = int(m.group(1))
        if not wait:
            return job
        return cp.returncode, self.output(out_dir, job), job

    @staticmethod
    def output(out_dir, job):
        try:
            with open(os.path.join(out_dir, f"slurm-{job}.out"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def jobs(self):
        cp = self.run(["squeue", "--noheader", "--format=%i %T"], timeout=30)
        return dict(line.split() for line in cp.stdout.splitlines() if line.strip())

    # --- what runs where --------------------------------------------------------------------

    def processes(self, hosts=None, daemons=False):
        """Live processes on hosts (default: the compute nodes), without the daemons unless
        asked: pid -> command line."""
        hosts = hosts or self.nodes
        inodes = {os.stat(f"/run/netns/{self.net.hosts[self.names.index(h)]}").st_ino
                  for h in hosts}
        mine = {p.pid for p in self.daemons.values()}
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or (int(entry) in mine and not daemons):
                continue
            if _netns_inode(entry) not in inodes:
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError):
                continue
        return found

    def kill_all(self, hosts):
        """SIGKILLs every process on hosts, daemons included, until none is left (a job's
        processes may fork meanwhile); returns those that survived."""
        left = {}
        for _ in range(50):
            left = self.processes(hosts, daemons=True)
            if not left:
                break
            kill_all(left)
            time.sleep(0.05)
        return left

    def crash(self, node):
        """The node fails: its slurmd and every process on it are killed at once."""
        daemon = self.daemons.pop(f"slurmd.{node}")
        daemon.kill()
        daemon.wait(timeout=30)
        left = self.kill_all([node])
        assert not left, f"processes on {node} survive SIGKILL: {left}"

    def wait_quiet(self, timeout=60):
        """Waits until no job is queued or running and nothing but the daemons runs on the
        nodes; returns what was still there at the deadline (empty when all is quiet)."""
        deadline = time.monotonic() + timeout
        while True:
            jobs, procs = self.jobs(), self.processes()
            if (not jobs and not procs) or time.monotonic() > deadline:
                return jobs, procs
            time.sleep(0.1)

    # --- shutdown ---------------------------------------------------------------------------

    def close(self):
        """Stops the daemons (by pid), then anything left in the namespaces; removes it all."""
        for name in sorted(self.daemons, key=lambda n: n == "munged"):  # munged last
            p = self.daemons[name]
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=20)
        self.daemons = {}
        if self.net:
            self.kill_all(self.names)
            self.net.close()
            self.net = None
        shutil.rmtree(self.dir, ignore_errors=True)

# --- fixtures ------------------------------------------------------------------------------

def _available_or_skip():
    """Skips the test when no cluster can run here; under FG_REQUIRE_SLURM=1 (make check)
    fails it instead."""
    reason = unavailable()
    if reason:
        if os.environ.get("FG_REQUIRE_SLURM") == "1":
            pytest.fail(f"FG_REQUIRE_SLURM=1, but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_session():
    _available_or_skip()
    c = SlurmCluster()
    yield c
    c.close()


def _leave_quiet(c):
    jobs, procs = c.wait_quiet()
    if jobs or procs:
        c.run(["scancel", *jobs], timeout=30)
        kill_all(procs)
        pytest.fail(f"left on the cluster after 60 s: jobs {jobs}, processes {procs}")


@pytest.fixture
def slurm(slurm_session):
    """The session's cluster (two nodes of 8 CPUs). After the test no job may be queued and
    nothing but the daemons may run on its nodes: a process a job left is a failure."""
    yield slurm_session
    _leave_quiet(slurm_session)


@pytest.fixture
def new_slurm():
    """new_slurm(**conf) starts a cluster of the test's own (for tests that kill a node or
    change the configuration); stopped after the test."""
    _available_or_skip()
    made = []

    def make(**conf):
        c = SlurmCluster(**conf)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
