/* nproc.h - how many workers "--nproc_per_node auto|cpu|gpu" means on this machine. */
#ifndef FG_LAUNCHER_NPROC_H
#define FG_LAUNCHER_NPROC_H

#include <stddef.h>

#include "launcher/options.h"

/* GPUs a CUDA program would see: the devices under root (normally "/") in
 * proc/driver/nvidia/gpus, else dev/nvidia<N>, narrowed by cuda_visible (the value of
 * CUDA_VISIBLE_DEVICES, NULL when unset) the way CUDA reads it: up to the first entry
 * that is not a usable device. */
int fg_gpu_count(const char *root, const char *cuda_visible);

/* Sets o->nproc for auto, cpu and gpu. Returns 0, or -ENODEV with a message when gpu was
 * asked for and there is none. */
int fg_resolve_nproc(fg_launch_opts *o, char *err, size_t errlen);

#endif
