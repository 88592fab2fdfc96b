/* numa.h - --numa_binding: which CPUs each worker may run on, from the topology in /sys.
 *
 * torchrun's modes (torch/numa/binding.py), computed once before the first worker starts
 * and applied between clone and exec (spawn.h), so the program and every thread it makes
 * start bound. Each worker has a home NUMA node: with at least one NVIDIA GPU per worker,
 * the node of GPU <local rank> (GPUs in PCI address order, as CUDA numbers them by default
 * with CUDA_DEVICE_ORDER=PCI_BUS_ID); otherwise the nodes that have CPUs fgrun may use are
 * shared out in consecutive blocks of local ranks. Then:
 *
 *   node          every allowed CPU of the home node;
 *   socket        every allowed CPU of the home node's socket (physical package);
 *   exclusive     the home node's physical cores (SMT siblings together) divided among the
 *                 workers of that node, the lower local ranks getting one more when they do
 *                 not divide evenly; no two workers share a core;
 *   core-complex  one group of cores sharing the last-level cache, a different one per
 *                 worker of the node while there are enough (largest groups first).
 *
 * "Allowed" is fgrun's own affinity (taskset, cgroups), as torch intersects with its own. */
#ifndef FG_LAUNCHER_NUMA_H
#define FG_LAUNCHER_NUMA_H

#include <sched.h>
#include <stddef.h>

enum fg_numa_mode { FG_NUMA_OFF, FG_NUMA_NODE, FG_NUMA_SOCKET, FG_NUMA_EXCLUSIVE,
                    FG_NUMA_CORE_COMPLEX };

/* "node", "socket", "exclusive" or "core-complex". Returns 0 or -EINVAL with a message that
 * names the modes. */
int fg_numa_parse_mode(const char *v, enum fg_numa_mode *out, char *err, size_t errlen);
const char *fg_numa_mode_name(enum fg_numa_mode mode);

/* Fills cpus[0..nproc) for mode, reading the topology under root ("" for the machine's own
 * /sys and /proc; tests give a directory laid out the same way) and allowed (fgrun's
 * affinity). Returns 0, or a negative errno with a message (no topology, fewer cores than
 * workers for exclusive). */
int fg_numa_plan(enum fg_numa_mode mode, int nproc, const char *root, const cpu_set_t *allowed,
                 cpu_set_t *cpus, char *err, size_t errlen);

/* A CPU set as a list like 0-3,8 (the format of /proc/<pid>/status's Cpus_allowed_list). */
void fg_numa_format(const cpu_set_t *set, char *out, size_t len);

#endif
