/* bench_store_servers.c - the servers `fgbench store` measures: ours (fgstore) and torch's own
 * TCPStore (1.13's python3-torch, 2.6 in the root of scripts/torch2-root.sh), each started on
 * 127.0.0.1 and stopped again, or one started elsewhere. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "tools/bench_store.h"

/* torch's server is the master TCPStore object of a Python process; it prints the port it got
 * and lives until its stdin closes. The same call in 1.13 and 2.6 (whose Debian build has no
 * libuv: the classic server). */
static const char torch_script[] =
    "import datetime, sys\n"
    "import torch.distributed as dist\n"
    "s = dist.TCPStore('127.0.0.1', 0, 1, True, datetime.timedelta(seconds=600),\n"
    "                  wait_for_workers=False)\n"
    "print(s.port, flush=True)\n"
    "sys.stdin.read()\n";

#define START_TIMEOUT_MS 60000 /* importing torch takes seconds on a cold cache */
#define ATTACH_TIMEOUT_MS 5000  /* a --server should be up already */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  int port = -errno;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* Runs argv; with pipes for its stdin and stdout where asked. */
static pid_t spawn(char *const argv[], int *to_child, int *from_child) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  if ((to_child && pipe2(in, O_CLOEXEC) < 0) || (from_child && pipe2(out, O_CLOEXEC) < 0))
    return -errno;
  pid_t pid = fork();
  if (pid == 0) {
    if (to_child) dup2(in[0], STDIN_FILENO);
    if (from_child) dup2(out[1], STDOUT_FILENO);
    execv(argv[0], argv);
    _exit(127);
  }
  if (to_child) {
    close(in[0]);
    *to_child = in[1];
  }
  if (from_child) {
    close(out[1]);
    *from_child = out[0];
  }
  return pid < 0 ? -errno : pid;
}

/* Connects once, retrying while the server starts; settles s->dialect. */
static int await_ready(bench_server *s, fg_store_dialect dialect, int timeout_ms, char *err,
                       size_t errlen) {
  fg_store_options o;
  fg_store_options_init(&o);
  o.dialect = dialect;
  o.connect_timeout_ms = timeout_ms;
  fg_store *st;
  int rc = fg_store_connect(&st, s->host, s->port, &o);
  if (rc < 0) return fg__fail(err, errlen, rc, "%s: %s", s->label, fg_store_errmsg(NULL));
  s->dialect = fg_store_get_dialect(st);
  fg_store_close(st);
  return 0;
}

static void init(bench_server *s, const char *label) {
  memset(s, 0, sizeof *s);
  s->label = label;
  s->stdin_fd = -1;
  snprintf(s->host, sizeof s->host, "127.0.0.1");
}

int bench_server_start_fgstore(bench_server *s, const char *path, char *err, size_t errlen) {
  init(s, "fgstore");
  s->port = free_port();
  if (s->port < 0) return fg__fail(err, errlen, s->port, "no free port: %s", strerror(-s->port));
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  char *argv[] = {(char *)path, "--port", port, "--log_level", "warn", NULL};
  s->pid = spawn(argv, NULL, NULL);
  if (s->pid < 0) return fg__fail(err, errlen, s->pid, "cannot start %s", path);
  int rc = await_ready(s, FG_STORE_DIALECT_V2, START_TIMEOUT_MS, err, errlen);
  if (rc < 0) bench_server_stop(s);
  return rc;
}

/* The port line torch's script prints once its server listens. */
static int read_port(int fd, char *err, size_t errlen) {
  char line[32] = "";
  size_t len = 0;
  int64_t deadline = fg__now_ms() + START_TIMEOUT_MS;
  while (len < sizeof line - 1 && !memchr(line, '\n', len)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int64_t left = deadline - fg__now_ms();
    ssize_t n = -1;
    if (left > 0 && poll(&p, 1, (int)left) == 1) n = read(fd, line + len, sizeof line - 1 - len);
    if (n <= 0)
      return fg__fail(err, errlen, -ECHILD,
                     "torch's TCPStore did not start (is torch installed for that python?)");
    len += (size_t)n;
    line[len] = '\0';
  }
  int port;
  *strchrnul(line, '\n') = '\0';
  if (fg__parse_int(line, 1, 65535, &port) < 0)
    return fg__fail(err, errlen, -EPROTO, "torch's TCPStore script printed '%s'", line);
  return port;
}

int bench_server_start_torch(bench_server *s, const char *label, const char *python,
                             fg_store_dialect dialect, char *err, size_t errlen) {
  init(s, label);
  int out = -1;
  char *argv[] = {(char *)python, "-c", (char *)torch_script, NULL};
  s->pid = spawn(argv, &s->stdin_fd, &out);
  if (s->pid < 0) return fg__fail(err, errlen, s->pid, "cannot start %s", python);
  int rc = s->port = read_port(out, err, errlen);
  close(out);
  if (rc > 0) rc = await_ready(s, dialect, START_TIMEOUT_MS, err, errlen);
  if (rc < 0) bench_server_stop(s);
  return rc < 0 ? rc : 0;
}

int bench_server_attach(bench_server *s, const char *hostport, char *err, size_t errlen) {
  init(s, hostport);
  s->port = 0;
  if (fg__split_hostport(hostport, s->host, sizeof s->host, &s->port) < 0 || s->port == 0)
    return fg__fail(err, errlen, -EINVAL, "--server wants HOST:PORT, not '%s'", hostport);
  return await_ready(s, FG_STORE_DIALECT_AUTO, ATTACH_TIMEOUT_MS, err, errlen);
}

int bench_server_sockaddr(const bench_server *s, struct sockaddr_storage *ss, socklen_t *len) {
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(s->host, port, &hints, &res) != 0) return -EHOSTUNREACH;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

static int reap(pid_t pid, int ms) {
  for (int64_t until = fg__now_ms() + ms; fg__now_ms() < until;) {
    if (waitpid(pid, NULL, WNOHANG) == pid) return 1;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return 0;
}

void bench_server_stop(bench_server *s) {
  if (s->stdin_fd >= 0) close(s->stdin_fd);
  s->stdin_fd = -1;
  if (s->pid <= 0) return;
  kill(s->pid, SIGTERM);
  if (!reap(s->pid, 10000)) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
  }
  s->pid = 0;
}

long bench_server_rss_kib(const bench_server *s, const char *field) {
  if (s->pid <= 0) return -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
  FILE *f = fopen(path, "r");
  long kib = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':') kib = strtol(line + n + 1, NULL, 10);
  if (f) fclose(f);
  return kib;
}

int bench_pin(pid_t pid, int cpu) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid ? (int)pid : (int)getpid());
  DIR *d = opendir(path);
  if (!d) return -errno;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  int rc = 0, any = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    if (sched_setaffinity((pid_t)atoi(e->d_name), sizeof set, &set) != 0 && errno != ESRCH)
      rc = -errno;
    any = 1;
  }
  closedir(d);
  return rc ? rc : any ? 0 : -ESRCH;
}

/* Nanoseconds on a CPU, summed over the process's threads (schedstat's first field). */
static double schedstat_s(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  double total = 0;
  int found = 0;
  for (struct dirent *e; d && (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char file[384];
    unsigned long long ns;
    snprintf(file, sizeof file, "%s/%s/schedstat", path, e->d_name);
    FILE *f = fopen(file, "r");
    if (f && fscanf(f, "%llu", &ns) == 1) {
      total += (double)ns / 1e9;
      found = 1;
    }
    if (f) fclose(f);
  }
  if (d) closedir(d);
  return found ? total : -1;
}

int bench_server_cpu_split(const bench_server *s, double *user, double *sys) {
  if (s->pid <= 0) return -ESRCH;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)s->pid);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = '\0';
  /* utime and stime are fields 14 and 15, counted after the ')' that ends the name. */
  char *p = strrchr(buf, ')');
  unsigned long utime, stime;
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                   &stime) != 2)
    return -EPROTO;
  *user = (double)utime / (double)sysconf(_SC_CLK_TCK);
  *sys = (double)stime / (double)sysconf(_SC_CLK_TCK);
  return 0;
}

double bench_server_cpu_s(const bench_server *s) {
  if (s->pid <= 0) return -1;
  double precise = schedstat_s(s->pid), user, sys;
  if (precise >= 0) return precise;
  return bench_server_cpu_split(s, &user, &sys) == 0 ? user + sys : -1;
}
