/* group.c - groups carved out of a communicator: by colour, by rank list, and the
 * rows and columns of a device mesh. Every backend gets the same membership,
 * computed here from an allgather of (colour, key). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "common/progress.h"

typedef struct member {
  int64_t colour, key, parent_rank;
} member;

static int by_key(const void *a, const void *b) {
  const member *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->parent_rank > y->parent_rank) - (x->parent_rank < y->parent_rank);
}

static void name_group(fg_comm *child, const char *kind) {
  int n = snprintf(child->name, sizeof child->name, "%s [", kind);
  for (int i = 0; i < child->size && n < (int)sizeof child->name - 8; i++)
    n += snprintf(child->name + n, sizeof child->name - (size_t)n, "%s%d", i ? ", " : "",
                  child->world_ranks[i]);
  snprintf(child->name + n, sizeof child->name - (size_t)n, "%s]",
           n >= (int)sizeof child->name - 8 ? "..." : "");
}

static int split_named(fg_comm *parent, int colour, int key, const char *kind, fg_comm **out) {
  *out = NULL;
  parent->seq++;
  parent->err[0] = '\0';
  FG_OP_MARK(m);
  fg__op_enter(&m, "split", parent->name, parent->seq, parent->err, NULL);
  int child_no = parent->next_child++;
  member mine = {colour < 0 ? -1 : colour, key, parent->rank};
  member *all = calloc((size_t)parent->size, sizeof *all);
  if (!all) return fg__comm_fail(parent, -ENOMEM, "split", "out of memory");
  int rc = fg__comm_allgather_host(parent, &mine, all, sizeof mine);
  if (rc) {
    free(all);
    return rc;
  }
  /* Keep the ranks of my colour, ordered by key, then parent rank. */
  int n = 0;
  for (int r = 0; r < parent->size; r++)
    if (colour >= 0 && all[r].colour == colour) all[n++] = all[r];
  qsort(all, (size_t)n, sizeof *all, by_key);

  fg_comm *child = NULL;
  if (colour >= 0) {
    child = calloc(1, sizeof *child);
    int *ranks = calloc((size_t)n, sizeof *ranks);
    if (!child || !ranks) {
      free(child);
      free(ranks);
      free(all);
      return fg__comm_fail(parent, -ENOMEM, "split", "out of memory");
    }
    child->be = parent->be;
    child->world = parent->world;
    child->size = n;
    child->world_ranks = ranks;
    child->timeout_ms = parent->timeout_ms;
    child->local_rank = parent->local_rank;
    child->local_size = parent->local_size;
    for (int i = 0; i < n; i++) {
      ranks[i] = parent->world_ranks[all[i].parent_rank];
      if (all[i].parent_rank == parent->rank) child->rank = i;
    }
    name_group(child, kind);
    if (parent->store) {
      char prefix[48];
      snprintf(prefix, sizeof prefix, "g%d.%d", child_no, colour);
      if ((rc = fg_store_scope(parent->store, prefix, &child->store)) != 0) {
        fg_comm_destroy(child);
        free(all);
        return fg__comm_fail(parent, rc, "split", "out of memory");
      }
    }
  }
  free(all);
  rc = parent->be->split(parent, child, colour, key);
  if (rc != 0) {
    if (child && child->err[0]) snprintf(parent->err, sizeof parent->err, "%s", child->err);
    if (child) child->be = NULL; /* the backend did not set it up */
    fg_comm_destroy(child);
    return rc;
  }
  *out = child;
  return 0;
}

int fg_comm_split(fg_comm *parent, int colour, int key, fg_comm **out) {
  return split_named(parent, colour, key, "group", out);
}

int fg_comm_new_group(fg_comm *parent, const int *ranks, int n, fg_comm **out) {
  *out = NULL;
  int member = 0;
  for (int i = 0; i < n; i++) {
    if (ranks[i] < 0 || ranks[i] >= parent->size)
      return fg__comm_fail(parent, -EINVAL, "new_group", "rank %d is not in %s (size %d)",
                           ranks[i], parent->name, parent->size);
    for (int j = 0; j < i; j++)
      if (ranks[j] == ranks[i])
        return fg__comm_fail(parent, -EINVAL, "new_group", "rank %d is listed twice", ranks[i]);
    member |= ranks[i] == parent->rank;
  }
  /* Group ranks follow parent rank order, as torch's new_group sorts its list. */
  return split_named(parent, member ? 0 : -1, parent->rank, "group", out);
}

/* --- meshes -------------------------------------------------------------------------- */

struct fg_mesh {
  int ndims;
  int sizes[2];
  int coords[2];
  char names[2][32];
  fg_comm *groups[2];
};

int fg_mesh_create(fg_comm *world, int ndims, const int *sizes, const char *const *names,
                   fg_mesh **out) {
  *out = NULL;
  if (ndims != 1 && ndims != 2)
    return fg__comm_fail(world, -EINVAL, "mesh", "a mesh has 1 or 2 dimensions, not %d", ndims);
  long product = 1;
  for (int d = 0; d < ndims; d++) {
    if (sizes[d] < 1)
      return fg__comm_fail(world, -EINVAL, "mesh", "dimension %d has size %d", d, sizes[d]);
    product *= sizes[d];
  }
  if (product != world->size) {
    char shape[32];
    if (ndims == 1)
      snprintf(shape, sizeof shape, "%d", sizes[0]);
    else
      snprintf(shape, sizeof shape, "%dx%d", sizes[0], sizes[1]);
    return fg__comm_fail(world, -EINVAL, "mesh", "a %s mesh needs %ld ranks, the world has %d",
                         shape, product, world->size);
  }
  fg_mesh *m = calloc(1, sizeof *m);
  if (!m) return fg__comm_fail(world, -ENOMEM, "mesh", "out of memory");
  m->ndims = ndims;
  for (int d = 0; d < ndims; d++) {
    m->sizes[d] = sizes[d];
    snprintf(m->names[d], sizeof m->names[d], "%s", names && names[d] ? names[d] : d ? "dim1" : "dim0");
  }
  if (ndims == 1) {
    m->coords[0] = world->rank;
  } else {
    m->coords[0] = world->rank / sizes[1];
    m->coords[1] = world->rank % sizes[1];
  }
  for (int d = 0; d < ndims; d++) {
    /* The group of dim d: ranks equal in every other coordinate, ordered by coordinate d. */
    int colour = ndims == 1 ? 0 : m->coords[1 - d];
    char kind[48];
    snprintf(kind, sizeof kind, "mesh %s", m->names[d]);
    int rc = split_named(world, colour, m->coords[d], kind, &m->groups[d]);
    if (rc != 0) {
      fg_mesh_destroy(m);
      return rc;
    }
  }
  *out = m;
  return 0;
}

void fg_mesh_destroy(fg_mesh *m) {
  if (!m) return;
  for (int d = 0; d < 2; d++) fg_comm_destroy(m->groups[d]);
  free(m);
}

int fg_mesh_ndims(const fg_mesh *m) { return m->ndims; }

int fg_mesh_dim(const fg_mesh *m, const char *name) {
  for (int d = 0; d < m->ndims; d++)
    if (!strcmp(m->names[d], name)) return d;
  return -1;
}

fg_comm *fg_mesh_group(const fg_mesh *m, int dim) {
  return dim >= 0 && dim < m->ndims ? m->groups[dim] : NULL;
}

int fg_mesh_coord(const fg_mesh *m, int dim) {
  return dim >= 0 && dim < m->ndims ? m->coords[dim] : -1;
}

int fg_mesh_size(const fg_mesh *m, int dim) {
  return dim >= 0 && dim < m->ndims ? m->sizes[dim] : -1;
}

int fg_mesh_rank_at(const fg_mesh *m, const int *coords) {
  int r = 0;
  for (int d = 0; d < m->ndims; d++) {
    if (coords[d] < 0 || coords[d] >= m->sizes[d]) return -1;
    r = r * m->sizes[d] + coords[d];
  }
  return r;
}
