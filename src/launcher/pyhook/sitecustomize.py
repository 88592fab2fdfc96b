"""fgrun's startup hook for Python ranks, on PYTHONPATH only under --hang_timeout.

It has faulthandler dump every thread's traceback when fgrun asks (FG_PYSTACK_SIGNAL, into
FG_PYSTACK_FILE), and makes torch.distributed's collectives mark the rank's progress slot
as libfg's do (FG_PROGRESS_FILE; FG_TORCH_MARKS=0 turns that off). It then takes itself off
sys.path and PYTHONPATH and runs the sitecustomize it hides, if there is one, so the
program sees the interpreter it would have seen. Nothing here may stop the program: every
step that fails is skipped.
"""
import _fgrun_hook

_fgrun_hook.install(__file__)
_fgrun_hook.run_hidden_sitecustomize(__file__)
