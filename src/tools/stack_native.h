/* stack_native.h - a process's native stacks, read from outside (fgrun-stack's half that
 * uses elfutils' libdw).
 *
 * Every thread that can be stopped is seized with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT:
 * no signal is sent, and a process already stopped by SIGSTOP stays stopped: seizing moves
 * it from its group stop into a ptrace stop and detaching puts it back). libdw unwinds the
 * stopped threads (CFI, else frame pointers); the threads are let go before any symbol or
 * line is looked up, so a rank is held only while its frames are walked. A thread in
 * uninterruptible sleep cannot be stopped: it gets its kernel stack (/proc/.../stack, which
 * only root may read) instead. */
#ifndef FG_TOOLS_STACK_NATIVE_H
#define FG_TOOLS_STACK_NATIVE_H

#include <stdio.h>

/* Prints every thread's frames to out, each line behind indent; waits at most stop_ms for
 * a thread to stop. Returns 0, or -1 after printing why nothing could be read. */
int fg_native_stacks(int pid, int stop_ms, const char *indent, FILE *out);

#endif
