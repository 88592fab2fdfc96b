"""The nccl backend: it is built and linked wherever CUDA and NCCL are, it fails cleanly
(FG_ENODEV, "no CUDA device") on a machine without a GPU, and with a GPU it passes the
world-size-1 conformance checks.

The programs under test are fgconform (when this build has it) and tests/drivers/nccl_smoke;
both take --backend and --skip-if-no-device."""
import os
import subprocess

import pytest

from conftest import BUILD

CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")
SMOKE = os.path.join(os.path.abspath(BUILD), "tests", "drivers", "nccl_smoke")
FGCONFORM = os.path.join(os.path.abspath(BUILD), "bin", "fgconform")
TIMEOUT = 300


def clean_env(**extra):
    """The environment of a lone process: no launcher's rank variables, a short timeout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                        "MASTER_PORT", "FG_BACKEND", "GROUP_RANK")
           and not k.startswith(("TORCHELASTIC_", "OMPI_", "PMIX_", "SLURM_"))}
    env["FG_TIMEOUT"] = "60"
    env.update(extra)
    return env


def run(args, **extra):
    r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(**extra))
    return r.returncode, r.stdout + r.stderr


def smoke():
    if not os.path.exists(SMOKE):
        pytest.fail(f"{SMOKE} is missing: run make first")
    return SMOKE


def build_has_nccl():
    rc, out = run([smoke(), "backends"])
    assert rc == 0, out
    return "nccl" in out.split()


_gpu = None


def have_gpu():
    """True when the nccl backend is built and finds a CUDA device (one NCCL init)."""
    global _gpu
    if _gpu is None:
        _gpu = False
        if build_has_nccl():
            rc, out = run([smoke(), "--skip-if-no-device", "init"])
            _gpu = rc == 0 and "SKIP" not in out
    return _gpu


def programs():
    """fgconform and the smoke driver, each with its arguments for one check of nccl."""
    progs = [pytest.param([SMOKE], id="nccl_smoke")]
    if os.path.exists(FGCONFORM):
        progs.append(pytest.param([FGCONFORM], id="fgconform"))
    return progs


def not_a_crash(rc, out):
    """A clean failure: an exit status, not a signal, and no abort or sanitizer report."""
    assert rc > 0, f"exit status {rc} (negative: killed by a signal)\n{out}"
    for bad in ("Segmentation fault", "Aborted", "core dumped", "AddressSanitizer",
                "terminate called"):
        assert bad not in out, out


def test_nccl_is_built_and_linked_where_cuda_is():
    """The Makefile builds the nccl backend when CUDA_HOME has CUDA and NCCL, and the
    programs then load libnccl and libcudart (they run at all)."""
    cuda = all(os.path.exists(os.path.join(CUDA_HOME, "include", h))
               for h in ("nccl.h", "cuda_runtime.h"))
    built = build_has_nccl()
    flags_file = os.path.join(os.path.abspath(BUILD), ".flags")  # the Makefile's record
    if os.path.exists(flags_file):
        assert built == ("-DFG_HAVE_NCCL" in open(flags_file).read()), \
            f"fg_comm_backends() and {flags_file} disagree about nccl"
    if cuda and not built:
        if os.environ.get("FG_BUILD"):
            pytest.skip(f"{BUILD} was built without CUDA (another CUDA_HOME)")
        pytest.fail(f"CUDA and NCCL are under {CUDA_HOME} but the build has no nccl backend")
    if not cuda and not built:
        pytest.skip(f"no CUDA/NCCL under {CUDA_HOME}")


@pytest.mark.parametrize("prog", programs())
def test_no_device_is_a_clean_skip(prog):
    if not build_has_nccl():
        pytest.skip("this build has no nccl backend")
    if have_gpu():
        pytest.skip("this machine has a CUDA device")
    rc, out = run(prog + ["--backend", "nccl", "--skip-if-no-device"])
    assert rc == 0, out
    assert "no CUDA device" in out, out


@pytest.mark.parametrize("prog", programs())
def test_no_device_fails_cleanly_with_the_reason(prog):
    if not build_has_nccl():
        pytest.skip("this build has no nccl backend")
    if have_gpu():
        pytest.skip("this machine has a CUDA device")
    rc, out = run(prog + ["--backend", "nccl"])
    not_a_crash(rc, out)
    assert "no CUDA device" in out, out


def test_without_the_backend_init_says_it_was_not_compiled_in():
    if build_has_nccl():
        pytest.skip("this build has the nccl backend")
    rc, out = run([smoke(), "--backend", "nccl", "init"])
    not_a_crash(rc, out)
    assert "not compiled into this build" in out, out


@pytest.mark.gpu
def test_world_of_one_passes_every_check():
    if not have_gpu():
        pytest.skip("no CUDA device")
    rc, out = run([smoke(), "--backend", "nccl", "all"], NCCL_CHECK_POINTERS="1")
    assert rc == 0, out
    assert "ok all" in out, out


@pytest.mark.gpu
@pytest.mark.skipif(not os.path.exists(FGCONFORM), reason="this build has no fgconform")
@pytest.mark.parametrize("mesh", [[], ["--mesh", "1x1"]], ids=["world", "mesh1x1"])
def test_fgconform_world_of_one(mesh):
    if not have_gpu():
        pytest.skip("no CUDA device")
    rc, out = run([FGCONFORM, "--backend", "nccl"] + mesh)
    assert rc == 0, out


@pytest.mark.gpu
def test_a_rank_without_its_gpu_is_refused_by_name():
    if not have_gpu():
        pytest.skip("no CUDA device")
    rc, out = run([smoke(), "--backend", "nccl", "--local-rank", "64", "init"])
    not_a_crash(rc, out)
    assert "FG_ENODEV" in out and "needs GPU 64 but this machine has" in out, out


@pytest.mark.gpu
def test_bad_arguments_leave_the_communicator_usable():
    if not have_gpu():
        pytest.skip("no CUDA device")
    rc, out = run([smoke(), "--backend", "nccl", "refused"])
    assert rc == 0 and "ok refused" in out, out
