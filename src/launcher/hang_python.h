/* hang_python.h - where a Python rank is, from the traceback fgrun-stack printed (its
 * hook's faulthandler dump): the main thread's innermost frame in the user's own code, the
 * library function it is in, and whether it is inside torch.distributed. Ranks are then
 * grouped by that frame: "ranks 0-2 at train.py:42 in <module> (in all_reduce); rank 3 at
 * train.py:40 in <module>".
 *
 * The main thread is the one faulthandler calls the current thread (fgrun-stack signals
 * the main thread, and the handler runs there), else the last one listed (the oldest).
 * A frame is the user's unless its file is Python's own or an installed package's
 * (".../lib/python3...", site-packages, dist-packages, "<frozen ...>") or fgrun's own hook
 * (fgrun-pyhook/, whose torch wrapper sits between the user's call and torch's). */
#ifndef FG_LAUNCHER_HANG_PYTHON_H
#define FG_LAUNCHER_HANG_PYTHON_H

#include <stddef.h>

#include "common/buf.h"

typedef struct fg_py_where {
  int ok;              /* a traceback was found */
  char file[256];      /* the innermost user frame ("" when none: all library code) */
  int line;
  char func[64];
  char src[160];       /* its source line, when fgrun-stack could read it */
  char lib_func[64];   /* the innermost frame's function, when that is library code */
  int in_torch_dist;   /* a frame of the main thread is in torch/distributed/ */
} fg_py_where;

/* Reads fgrun-stack's output; returns 0, or -1 (out->ok 0) without a Python traceback. */
int fg_py_parse(const char *text, size_t len, fg_py_where *out);
/* "hang.py:8 in <module> `time.sleep(100)` (in all_reduce)" */
void fg_py_put_where(fg_buf *b, const fg_py_where *w);
/* Two ranks are together when their innermost user frames are the same line. */
int fg_py_same_place(const fg_py_where *a, const fg_py_where *b);
/* "ranks 0-2 at X; rank 3 at Y" over n ranks (ranks ascending), skipping those without a
 * traceback. */
void fg_py_put_groups(fg_buf *b, const int *ranks, const fg_py_where *w, int n);

#endif
