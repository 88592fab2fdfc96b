/* fgstore - the rendezvous store on its own.
 *
 * The same server fgrun's agent hosts, for users who want only the store:
 * torch TCPStore clients (1.13 and >= 2.2 dialects) and libfg clients connect
 * to it. Runs until SIGINT or SIGTERM. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "store/proto.h"
#include "store/server.h"

static const char usage[] =
    "usage: fgstore [options]\n"
    "\n"
    "Runs a key-value store that speaks PyTorch's TCPStore protocol (torch 1.9-2.0 and\n"
    ">= 2.2 clients on one port) until SIGINT or SIGTERM.\n"
    "\n"
    "options:\n"
    "  --host HOST              address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
    "  --port PORT              port (default 29500; 0 lets the OS pick)\n"
    "  --max_key_size SIZE      largest key (default 8K)\n"
    "  --max_value_size SIZE    largest value (default 8M)\n"
    "  --max_request_size SIZE  largest single request, and reply to one (default 64M)\n"
    "  --max_total_size SIZE    keys + values stored in all (default 1G)\n"
    "  --max_buffered_size SIZE\n"
    "                           partly received requests of all clients together\n"
    "                           (default 256M; the first 64K of each is not counted)\n"
    "  --max_connections N      open connections (default 16384)\n"
    "  --idle_timeout SECONDS   close a connection that stops in the middle of a request\n"
    "                           (or owes its token) this long (default 60; 0: never)\n"
    "  --store_token TOKEN      require every client to present TOKEN first (default:\n"
    "                           $FG_STORE_TOKEN; none if unset). torch's own clients\n"
    "                           cannot, so they are refused while a token is set\n"
    "  --log_level LEVEL        error, warn, info or debug (default info)\n"
    "  --version                print the version and exit\n"
    "  -h, --help               print this help and exit\n"
    "\n"
    "SIZE takes K, M or G suffixes. Options also accept dashes (--max-key-size).\n"
    "A connection that breaks a limit or the protocol is closed with one log line\n"
    "naming the peer; other clients are not affected. A connection that is quiet\n"
    "between requests is never closed. The token is never logged; prefer the\n"
    "environment variable to the flag, which other users can see in ps.\n"
    "\n"
    "Memory: about max_total_size x 1.5 + max_buffered_size + 1 KiB per connection\n"
    "(65 KiB while one is in the middle of a request), plus, for a client that does not\n"
    "read its replies, 1 MiB of them and one more (its further requests wait unread).\n";

enum { OPT_HOST = 256, OPT_PORT, OPT_KEY, OPT_VALUE, OPT_REQUEST, OPT_TOTAL, OPT_BUFFERED,
       OPT_CONNS, OPT_IDLE, OPT_TOKEN, OPT_LOG, OPT_VERSION };

static const struct option options[] = {
    {"host", required_argument, 0, OPT_HOST},
    {"port", required_argument, 0, OPT_PORT},
    {"max_key_size", required_argument, 0, OPT_KEY},
    {"max-key-size", required_argument, 0, OPT_KEY},
    {"max_value_size", required_argument, 0, OPT_VALUE},
    {"max-value-size", required_argument, 0, OPT_VALUE},
    {"max_request_size", required_argument, 0, OPT_REQUEST},
    {"max-request-size", required_argument, 0, OPT_REQUEST},
    {"max_total_size", required_argument, 0, OPT_TOTAL},
    {"max-total-size", required_argument, 0, OPT_TOTAL},
    {"max_buffered_size", required_argument, 0, OPT_BUFFERED},
    {"max-buffered-size", required_argument, 0, OPT_BUFFERED},
    {"idle_timeout", required_argument, 0, OPT_IDLE},
    {"idle-timeout", required_argument, 0, OPT_IDLE},
    {"store_token", required_argument, 0, OPT_TOKEN},
    {"store-token", required_argument, 0, OPT_TOKEN},
    {"max_connections", required_argument, 0, OPT_CONNS},
    {"max-connections", required_argument, 0, OPT_CONNS},
    {"log_level", required_argument, 0, OPT_LOG},
    {"log-level", required_argument, 0, OPT_LOG},
    {"version", no_argument, 0, OPT_VERSION},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

static void die_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "fgstore: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see fgstore --help)\n");
  exit(2);
}

static uint64_t size_arg(const char *name, const char *s) {
  uint64_t v;
  if (fg__parse_size(s, &v) != 0 || v == 0) die_usage("bad size for %s", name);
  return v;
}

static fg_server *server;

static void on_signal(uv_signal_t *h, int sig) {
  fg_info("%s received, stopping", fg__signame(sig));
  fg__server_close(server);
  uv_close((uv_handle_t *)h, NULL);
}

static uv_signal_t sigs[2];

static void on_first_signal(uv_signal_t *h, int sig) {
  on_signal(h, sig);
  for (int i = 0; i < 2; i++)
    if (&sigs[i] != h && !uv_is_closing((uv_handle_t *)&sigs[i])) uv_close((uv_handle_t *)&sigs[i], NULL);
}

int main(int argc, char **argv) {
  fg__log_set_program("fgstore");
  fg_server_config cfg;
  fg__server_config_init(&cfg);
  cfg.port = 29500;
  cfg.token = getenv("FG_STORE_TOKEN");
  int opt, level;
  double idle;
  char *token_arg = NULL;
  while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
    switch (opt) {
      case OPT_HOST: cfg.host = optarg; break;
      case OPT_PORT:
        if (fg__parse_int(optarg, 0, 65535, &cfg.port) != 0) die_usage("bad port '%s'", optarg);
        break;
      case OPT_KEY: cfg.max_key = size_arg("--max_key_size", optarg); break;
      case OPT_VALUE: cfg.max_value = size_arg("--max_value_size", optarg); break;
      case OPT_REQUEST: cfg.max_request = size_arg("--max_request_size", optarg); break;
      case OPT_TOTAL: cfg.max_total = size_arg("--max_total_size", optarg); break;
      case OPT_BUFFERED: cfg.max_buffered = size_arg("--max_buffered_size", optarg); break;
      case OPT_IDLE:
        if (fg__parse_seconds(optarg, &idle) != 0 || idle < 0 || idle > 86400 * 365)
          die_usage("bad --idle_timeout '%s'", optarg);
        cfg.idle_timeout_ms = (int)(idle * 1000 + 0.5);
        if (idle > 0 && cfg.idle_timeout_ms == 0) cfg.idle_timeout_ms = 1;
        break;
      case OPT_TOKEN: cfg.token = token_arg = optarg; break;
      case OPT_CONNS:
        if (fg__parse_int(optarg, 1, 1 << 24, &cfg.max_connections) != 0)
          die_usage("bad --max_connections '%s'", optarg);
        break;
      case OPT_LOG:
        if ((level = fg__log_level_parse(optarg)) < 0) die_usage("bad --log_level '%s'", optarg);
        fg__log_set_level((enum fg_log_level)level);
        break;
      case OPT_VERSION: printf("fgstore %s\n", FG_VERSION); return 0;
      case 'h': fputs(usage, stdout); return 0;
      default: fprintf(stderr, "(see fgstore --help)\n"); return 2;
    }
  }
  if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
  if (cfg.token && strlen(cfg.token) > FG_TOKEN_MAX)
    die_usage("the store token is longer than %s bytes", "1024");
  signal(SIGPIPE, SIG_IGN);
  long nofile = fg__raise_nofile();
  if (nofile > 0 && nofile < cfg.max_connections + 64L)
    fg_warn("open-file limit is %ld: fewer than --max_connections=%d clients can connect",
            nofile, cfg.max_connections);

  uv_loop_t *loop = uv_default_loop();
  char err[256];
  if (fg__server_start(loop, &cfg, &server, err, sizeof err) != 0) {
    fg_error("%s", err);
    return 1;
  }
  /* The server keeps its own copy: blank the flag's, which ps shows to every user. */
  if (token_arg) memset(token_arg, 'x', strlen(token_arg));
  /* Before saying it listens: whoever reads that line may stop it at once. */
  int signums[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    uv_signal_init(loop, &sigs[i]);
    uv_signal_start(&sigs[i], on_first_signal, signums[i]);
  }
  fg_info("listening on %s:%d%s", cfg.host, fg__server_port(server),
          cfg.token && *cfg.token ? " (clients must present the store token)" : "");
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
