/* options_check.c - the rules that tie fgrun's options together, applied once every value
 * is stored: torchrun's for --nnodes, --node_rank and the rendezvous backend, and where the
 * store listens (--standalone, --rdzv_endpoint or --master_addr and --master_port). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/util.h"
#include "launcher/options.h"

static void make_uuid(char out[40]) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
    uint64_t t = fg__now_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 0; i < 16; i++) b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  snprintf(out, 40,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
}

/* Where the store listens follows from --standalone, --rdzv_* and --master_*. */
static int choose_store_address(fg_launch_opts *o, char *err, size_t errlen) {
  if (o->standalone) {
    o->rdzv_backend = "c10d";
    make_uuid(o->run_id_buf);
    o->rdzv_id = o->run_id_buf;
    snprintf(o->store_host, sizeof o->store_host, "127.0.0.1");
    o->store_port = 0;
    return 0;
  }
  int c10d = strcmp(o->rdzv_backend, "c10d") == 0;
  if (o->rdzv_endpoint) {
    o->store_port = c10d ? 29400 : o->master_port;
    if (fg__split_hostport(o->rdzv_endpoint, o->store_host, sizeof o->store_host,
                          &o->store_port) != 0)
      return fg__fail(err, errlen, -EINVAL, "--rdzv_endpoint: expected HOST:PORT, got '%s'",
                     o->rdzv_endpoint);
    return 0;
  }
  if (c10d)
    return fg__fail(err, errlen, -EINVAL,
                   "--rdzv_backend=c10d needs --rdzv_endpoint HOST:PORT (or use --standalone)");
  int unused = -1;
  if (fg__split_hostport(o->master_addr, o->store_host, sizeof o->store_host, &unused) != 0 ||
      unused != -1)
    return fg__fail(err, errlen, -EINVAL, "--master_addr: expected a host name or address, "
                   "got '%s'", o->master_addr);
  o->store_port = o->master_port;
  return 0;
}

/* torchrun's rules for --nnodes, --node_rank and the backend, made errors where torchrun
 * would let two nodes collide. */
static int check_nodes(fg_launch_opts *o, char *err, size_t errlen) {
  int multi = o->nnodes_max > 1;
  int c10d = strcmp(o->rdzv_backend, "c10d") == 0;
  if (o->standalone && multi)
    return fg__fail(err, errlen, -EINVAL, "--standalone runs one node; for --nnodes %d:%d use "
                   "--rdzv_backend c10d --rdzv_endpoint HOST:PORT", o->nnodes_min, o->nnodes_max);
  if (!c10d && !o->standalone && o->nnodes_min != o->nnodes_max)
    return fg__fail(err, errlen, -EINVAL, "--nnodes %d:%d: the static rendezvous needs a fixed "
                   "number of nodes (use --rdzv_backend c10d for MIN:MAX)",
                   o->nnodes_min, o->nnodes_max);
  if (!c10d && multi && !o->node_rank_given)
    return fg__fail(err, errlen, -EINVAL, "--nnodes %d with the static rendezvous: give each "
                   "node its --node_rank (0 to %d)", o->nnodes_max, o->nnodes_max - 1);
  if (o->node_rank >= o->nnodes_max)
    return fg__fail(err, errlen, -EINVAL, "--node_rank %d: must be below --nnodes (%d)",
                   o->node_rank, o->nnodes_max);
  if (!o->prefix_template)
    o->prefix_template = multi ? "[node${group_rank} rank${rank}]:" : "[rank${rank}]:";
  return fg_read_rdzv_conf(o, err, errlen);
}

int fg__opts_check(fg_launch_opts *o, char *err, size_t errlen) {
  int rc = check_nodes(o, err, errlen);
  if (rc != 0) return rc;
  if (o->module && o->no_python && !o->run_path)
    return fg__fail(err, errlen, -EINVAL, "--no_python and --module cannot be used together");
  if (o->nsignals == 0)
    return fg__fail(err, errlen, -EINVAL, "--signals_to_handle: name at least one signal");
  if (o->hang_kill && o->hang_timeout <= 0)
    return fg__fail(err, errlen, -EINVAL, "--hang_action kill needs --hang_timeout SECONDS");
  return choose_store_address(o, err, errlen);
}
