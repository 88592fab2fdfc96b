"""Worker output: prefixes, filters, tee/redirects, log files, and bytes that arrive intact."""
import os
import re
import subprocess

from conftest import SYSTEM_PYTHON
from launcher_util import fgrun_env, run, start, worker, TIMEOUT

EMIT = [SYSTEM_PYTHON, worker("emit.py")]


def lines(b):
    return b.decode(errors="replace").splitlines()


def test_lines_carry_the_rank_prefix(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=3", worker("print_lines.sh"))
    assert cp.returncode == 0
    assert sorted(lines(cp.stdout)) == [f"[rank{r}]:out from rank {r}" for r in range(3)]
    assert {f"[rank{r}]:err from rank {r}" for r in range(3)} <= set(lines(cp.stderr))


def test_no_prefix_and_a_custom_template(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--no_prefix", worker("print_lines.sh"))
    assert sorted(lines(cp.stdout)) == ["out from rank 0", "out from rank 1"]
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--role=trainer",
             "--log-line-prefix-template", "${role_name}-${local_rank}/${rank}| ",
             worker("print_lines.sh"))
    assert sorted(lines(cp.stdout)) == ["trainer-0/0| out from rank 0",
                                        "trainer-1/1| out from rank 1"]


def test_local_ranks_filter_limits_the_console(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=4", "--local_ranks_filter=1,3",
             worker("print_lines.sh"))
    assert cp.returncode == 0
    assert sorted(lines(cp.stdout)) == ["[rank1]:out from rank 1", "[rank3]:out from rank 3"]
    worker_err = [l for l in lines(cp.stderr) if l.startswith("[rank")]
    assert sorted(worker_err) == ["[rank1]:err from rank 1", "[rank3]:err from rank 3"]


def test_ranks_never_interleave_within_a_line(fgrun):
    cp = run(fgrun, "--standalone", "--nproc_per_node=4", *EMIT, "flood")
    assert cp.returncode == 0, cp.stderr.decode()
    pattern = re.compile(r"^\[rank(\d)\]:(\d):(\d+):(\d+)$")
    counts = {}
    for stream in (cp.stdout, cp.stderr):
        for line in lines(stream):
            if line.startswith("fgrun:"):
                continue
            m = pattern.match(line)
            assert m, f"mangled line: {line[:120]!r}"
            prefix_rank, rank, _, body = m.groups()
            assert prefix_rank == rank and len(line) == len(f"[rank{rank}]:") + 1000
            assert body == rank * len(body)
            counts[rank] = counts.get(rank, 0) + 1
    assert counts == {str(r): 2000 for r in range(4)}


def test_binary_output_passes_through_unchanged(fgrun, tmp_path):
    expected = bytes(range(256)) * 400 + b"\r\n\x00tail without newline"
    cp = run(fgrun, "--standalone", "--no_prefix", *EMIT, "binary")
    assert cp.returncode == 0
    assert cp.stdout == expected
    # with the prefix, only prefixes are added: one at the start of each line
    cp = run(fgrun, "--standalone", "--log_dir", str(tmp_path), "--tee=1", *EMIT, "binary")
    assert cp.stdout.replace(b"[rank0]:", b"") == expected
    assert cp.stdout.count(b"[rank0]:") == expected.count(b"\n") + 1
    (run_dir,) = os.listdir(tmp_path)
    assert open(tmp_path / run_dir / "attempt_0/0/stdout.log", "rb").read() == expected


def test_a_last_line_without_newline_is_flushed(fgrun):
    cp = run(fgrun, "--standalone", *EMIT, "partial")
    assert cp.stdout == b"[rank0]:first line\n[rank0]:no newline at the end"
    cp = run(fgrun, "--standalone", "--no_prefix", *EMIT, "partial")
    assert cp.stdout == b"first line\nno newline at the end"


def test_long_lines_leave_in_pieces_and_whole(fgrun):
    expected = b"x" * 300000 + b"\nend\n"
    cp = run(fgrun, "--standalone", *EMIT, "longline")
    assert cp.returncode == 0
    assert cp.stdout.startswith(b"[rank0]:xxx")
    assert cp.stdout.replace(b"[rank0]:", b"") == expected
    assert cp.stdout.endswith(b"\n[rank0]:end\n")
    assert cp.stdout.count(b"[rank0]:") == 2  # pieces of one line carry one prefix
    cp = run(fgrun, "--standalone", "--no_prefix", *EMIT, "longline")
    assert cp.stdout == expected


def test_log_dir_layout_with_tee(fgrun, tmp_path):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--rdzv_id=job1",  # ignored (standalone)
             "--log_dir", str(tmp_path), "--tee", "3", worker("print_lines.sh"))
    assert cp.returncode == 0
    (run_dir,) = os.listdir(tmp_path)  # the uuid of --standalone names it
    for r in range(2):
        d = tmp_path / run_dir / "attempt_0" / str(r)
        assert open(d / "stdout.log").read() == f"out from rank {r}\n"
        assert open(d / "stderr.log").read() == f"err from rank {r}\n"
    assert sorted(lines(cp.stdout)) == ["[rank0]:out from rank 0", "[rank1]:out from rank 1"]
    assert str(tmp_path / run_dir) in cp.stderr.decode()  # fgrun says where logs go


def test_log_dir_is_never_clobbered(fgrun, tmp_path):
    port_args = ["--rdzv_backend=c10d", "--rdzv_endpoint=127.0.0.1:0", "--rdzv_id=myjob"]
    for n in range(3):
        cp = run(fgrun, *port_args, "--log_dir", str(tmp_path), "-t", "1",
                 worker("print_lines.sh"))
        assert cp.returncode == 0, cp.stderr.decode()
    assert sorted(os.listdir(tmp_path)) == ["myjob", "myjob.1", "myjob.2"]
    assert "myjob.2" in cp.stderr.decode()
    for d in ("myjob", "myjob.1", "myjob.2"):
        assert open(tmp_path / d / "attempt_0/0/stdout.log").read() == "out from rank 0\n"


def test_redirects_send_streams_to_files_only(fgrun, tmp_path):
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--log_dir", str(tmp_path),
             "--redirects=1", worker("print_lines.sh"))
    assert cp.returncode == 0
    assert cp.stdout == b""  # stdout went to the files only
    assert {"[rank0]:err from rank 0", "[rank1]:err from rank 1"} <= set(lines(cp.stderr))
    (run_dir,) = os.listdir(tmp_path)
    d = tmp_path / run_dir / "attempt_0"
    assert open(d / "1" / "stdout.log").read() == "out from rank 1\n"
    assert not os.path.exists(d / "1" / "stderr.log")

    # per local rank: rank 0 redirects stderr, rank 1 tees stdout
    cp = run(fgrun, "--standalone", "--nproc_per_node=2", "--log_dir", str(tmp_path / "b"),
             "-r", "0:2", "-t", "1:1", worker("print_lines.sh"))
    (run_dir,) = os.listdir(tmp_path / "b")
    d = tmp_path / "b" / run_dir / "attempt_0"
    assert sorted(os.listdir(d / "0")) == ["stderr.log"]
    assert sorted(os.listdir(d / "1")) == ["stdout.log"]
    assert "[rank0]:err from rank 0" not in lines(cp.stderr)
    assert "[rank1]:err from rank 1" in lines(cp.stderr)
    assert sorted(lines(cp.stdout)) == ["[rank0]:out from rank 0", "[rank1]:out from rank 1"]


def test_tee_without_log_dir_keeps_a_temporary_dir(fgrun):
    cp = run(fgrun, "--standalone", "--tee=2", worker("print_lines.sh"))
    assert cp.returncode == 0
    m = re.search(r"go to (\S+)", cp.stderr.decode())
    assert m, cp.stderr.decode()
    path = m.group(1)
    try:
        assert open(os.path.join(path, "attempt_0/0/stderr.log")).read() == "err from rank 0\n"
    finally:
        subprocess.run(["rm", "-rf", path])


def test_without_logs_the_private_dir_is_removed(fgrun, tmp_path):
    cp = run(fgrun, "--standalone", "--no_python", "sh", "-c",
             'echo "$TORCHELASTIC_ERROR_FILE"')
    error_file = cp.stdout.decode().split(":", 1)[1].strip()
    run_dir = error_file.rsplit("/attempt_0/", 1)[0]
    assert not os.path.exists(run_dir)


def test_a_reader_that_goes_away_does_not_kill_the_job(fgrun, tmp_path):
    p = start(fgrun, "--standalone", "--nproc_per_node=2", *EMIT, "many")
    p.stdout.readline()
    p.stdout.close()  # like `fgrun ... | head -1`
    err = p.stderr.read()
    assert p.wait(timeout=TIMEOUT) == 0, err.decode()
