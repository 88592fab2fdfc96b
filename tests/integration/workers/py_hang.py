"""A Python program with neither torch nor libfg: rank 0 reports what the interpreter looks
like (PYTHONPATH, whether fgrun's hook is still on sys.path, whether the user's own
sitecustomize ran), then every rank sleeps; rank 1 on another line, after writing
DIR/fault_at."""
import json
import os
import sys
import time

d = os.environ["FG_TEST_DIR"]
rank = int(os.environ["RANK"])
if rank == 0:
    print(json.dumps({"pythonpath": os.environ.get("PYTHONPATH"),
                      "hook_on_path": any("fgrun-pyhook" in p for p in sys.path),
                      "user_sitecustomize": os.environ.get("USER_SITECUSTOMIZE_RAN"),
                      "hook_vars": sorted(k for k in os.environ if k.startswith("FG_PYHOOK"))}),
          flush=True)
time.sleep(0.5)
if rank == 1:
    with open(os.path.join(d, "fault_at.tmp"), "w") as f:
        f.write(f"{time.time():.6f}\n")
    os.rename(os.path.join(d, "fault_at.tmp"), os.path.join(d, "fault_at"))
    time.sleep(600)  # rank 1 waits here
time.sleep(600)  # the others wait here
