"""The work of fgrun's sitecustomize (see there): tracebacks on a signal, progress marks
for torch.distributed, and getting out of the way.

The progress file's layout is src/common/progress_slot.h's (version 2): a 16-byte header,
then one 192-byte slot per local rank at (local_rank + 1) * 192, written under a sequence
lock (an odd generation while the rank writes).
"""
import functools
import mmap
import os
import struct
import sys
import threading
import time

MAGIC, VERSION, SLOT_SIZE = 0x47504746, 2, 192
HEADER = struct.Struct("<4I")
# gen state seq t_ns pid rank count root peer flags dtype op group (reserved)
SLOT = struct.Struct("<IIQQiiQiiI12s24s96s8x")
GEN = struct.Struct("<I")
NONE, IN, OUT = 0, 1, 2
FAILED = 1
NO_RANK = -1
assert SLOT.size == SLOT_SIZE

_kept = []  # what must live as long as the process: the dump file


def install(hook_file):
    here = os.path.dirname(os.path.abspath(hook_file))
    _leave_paths(here)
    for step in (_tracebacks_on_signal, _torch_marks):
        try:
            step()
        except Exception:  # a diagnosis never breaks the program
            pass


def _leave_paths(here):
    """The program and its children see sys.path and PYTHONPATH without the hook."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and os.path.abspath(p) != here]
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        os.environ.pop("PYTHONPATH", None)
    os.environ.pop("FG_PYHOOK_DIR", None)


def run_hidden_sitecustomize(hook_file):
    """The sitecustomize Python would have run without the hook (the system's, a
    virtualenv's, the user's on PYTHONPATH), under its own name."""
    import importlib.machinery
    import importlib.util
    here = os.path.dirname(os.path.abspath(hook_file))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)  # its errors surface as Python reports them


def _tracebacks_on_signal():
    path = os.environ.get("FG_PYSTACK_FILE")
    sig = int(os.environ.get("FG_PYSTACK_SIGNAL", "0") or 0)
    if not path or sig <= 0:
        return
    import faulthandler
    f = open(path, "a")  # appended: fgrun reads from where the file ended before it asked
    faulthandler.register(sig, file=f, all_threads=True, chain=False)
    _kept.append(f)


# --- progress marks -----------------------------------------------------------------------

class Slot:
    """This rank's slot in the progress file, or None when anything does not fit."""

    def __init__(self, path, local_rank, rank):
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            need = (local_rank + 2) * SLOT_SIZE
            if os.fstat(fd).st_size < need:
                raise ValueError("progress file too small")
            self.map = mmap.mmap(fd, need)
        finally:
            os.close(fd)
        magic, version, slot_size, nslots = HEADER.unpack_from(self.map, 0)
        if (magic, version, slot_size) != (MAGIC, VERSION, SLOT_SIZE) or local_rank >= nslots:
            raise ValueError("not a progress file of this version")
        self.off = (local_rank + 1) * SLOT_SIZE
        self.pid, self.rank = os.getpid(), rank
        self.gen = GEN.unpack_from(self.map, self.off)[0] & ~1  # this rank is its one writer

    def publish(self, state, seq, op, group, count=0, dtype=b"", root=NO_RANK, peer=NO_RANK,
                flags=0):
        """op, group, dtype: bytes (cut to the slot's fields by struct)."""
        if os.getpid() != self.pid:  # a forked child must not write its parent's slot
            return
        busy = self.gen + 1
        GEN.pack_into(self.map, self.off, busy)
        SLOT.pack_into(self.map, self.off, busy, state, seq, time.monotonic_ns(), self.pid,
                       self.rank, count, root, peer, flags, dtype[:11], op[:23], group[:95])
        self.gen = busy + 1
        GEN.pack_into(self.map, self.off, self.gen)


# The collectives marked, as (argument holding the tensor, argument naming the root, argument
# naming the peer); None: not there. The first positional parameter is found by name.
TORCH_OPS = {
    "all_reduce": ("tensor", None, None),
    "broadcast": ("tensor", "src", None),
    "reduce": ("tensor", "dst", None),
    "all_gather": ("tensor", None, None),
    "all_gather_into_tensor": ("input_tensor", None, None),
    "gather": ("tensor", "dst", None),
    "scatter": ("tensor", "src", None),
    "reduce_scatter": ("output", None, None),
    "reduce_scatter_tensor": ("output", None, None),
    "all_to_all": (None, None, None),
    "all_to_all_single": ("output", None, None),
    "barrier": (None, None, None),
    "monitored_barrier": (None, None, None),
    "send": ("tensor", None, "dst"),
    "recv": ("tensor", None, "src"),
    "all_gather_object": (None, None, None),
    "broadcast_object_list": (None, "src", None),
    "gather_object": (None, "dst", None),
    "scatter_object_list": (None, "src", None),
    "init_process_group": (None, None, None),
    "destroy_process_group": (None, None, None),
}
OP_NAMES = {"init_process_group": "init", "destroy_process_group": "destroy"}


def _torch_marks():
    if os.environ.get("FG_TORCH_MARKS", "1") == "0" or not os.environ.get("FG_PROGRESS_FILE"):
        return
    sys.meta_path.insert(0, _TorchDistributedFinder())


class _TorchDistributedFinder:
    """Wraps torch.distributed's collectives once the module has loaded, whoever imports it
    (torch itself does): nothing is imported early."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch.distributed":
            return None
        sys.meta_path.remove(self)
        import importlib.machinery
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            try:
                _wrap_torch_distributed(module)
            except Exception:
                pass

        spec.loader.exec_module = exec_module
        return spec


class _Marks:
    """Numbers each group's collectives as every rank calls them, and marks the outermost
    one the main thread is in (broadcast_object_list calls broadcast: one mark)."""

    def __init__(self, dist, slot):
        self.dist, self.slot, self.seq, self.depth = dist, slot, {}, 0
        self.main = threading.main_thread().ident
        self.dtypes = {}  # torch.float32 -> b"float32"

    def dtype_name(self, t):
        dt = getattr(t, "dtype", None)
        if dt is None:
            return b""
        name = self.dtypes.get(dt)
        if name is None:
            name = self.dtypes[dt] = str(dt).replace("torch.", "").encode()
        return name

    def group_name(self, group):
        dist = self.dist
        if group is None or group is getattr(dist.GroupMember, "WORLD", None):
            return b"world"
        try:
            ranks = dist.get_process_group_ranks(group)  # torch >= 2.0
        except Exception:
            try:
                ranks = sorted(dist.distributed_c10d._pg_group_ranks[group])  # torch 1.13
            except Exception:
                return b"group"
        return ("group [" + ", ".join(str(r) for r in ranks) + "]").encode()

    def wrap(self, name, fn, tensor_arg, root_arg, peer_arg):
        import inspect
        params = list(inspect.signature(fn).parameters)
        pos = {p: i for i, p in enumerate(params)}
        op = OP_NAMES.get(name, name).encode()
        numbered = op not in (b"init", b"destroy")

        def arg(args, kwargs, key):
            if key is None:
                return None
            if key in kwargs:
                return kwargs[key]
            i = pos.get(key)
            return args[i] if i is not None and i < len(args) else None

        @functools.wraps(fn)
        def marked(*args, **kwargs):
            if self.depth or threading.get_ident() != self.main:
                return fn(*args, **kwargs)
            try:
                group = self.group_name(arg(args, kwargs, "group")) if numbered else b"world"
                seq = 0
                if numbered:
                    seq = self.seq[group] = self.seq.get(group, 0) + 1
                t = arg(args, kwargs, tensor_arg)
                count = t.numel() if hasattr(t, "numel") else 0
                dtype = self.dtype_name(t)
                root, peer = arg(args, kwargs, root_arg), arg(args, kwargs, peer_arg)
                mark = (seq, op, group, count, dtype,
                        root if isinstance(root, int) else NO_RANK,
                        peer if isinstance(peer, int) else NO_RANK)
                self.slot.publish(IN, *mark)
            except Exception:
                return fn(*args, **kwargs)
            self.depth += 1
            failed = FAILED
            try:
                result = fn(*args, **kwargs)
                failed = 0
                return result
            finally:
                self.depth -= 1
                try:
                    self.slot.publish(OUT, *mark, flags=failed)
                except Exception:
                    pass

        return marked


def _wrap_torch_distributed(dist):
    if not getattr(dist, "is_available", lambda: False)():
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "-1"))
    if local_rank < 0:
        return
    slot = Slot(os.environ["FG_PROGRESS_FILE"], local_rank, int(os.environ.get("RANK", "-1")))
    marks = _Marks(dist, slot)
    for name, (tensor_arg, root_arg, peer_arg) in TORCH_OPS.items():
        fn = getattr(dist, name, None)
        if callable(fn):
            setattr(dist, name, marks.wrap(name, fn, tensor_arg, root_arg, peer_arg))
