/* floors.c - what the machine allows, measured beside the benchmarks (scripts/bench.sh):
 *
 *   floors memcpy LO HI REPEAT   median time of one memcpy of each power-of-two size from LO
 *                                to HI bytes (one core): a collective's bandwidth floor
 *   floors tcp-rtt SECONDS       1-byte ping-pong over loopback TCP (TCP_NODELAY) between
 *                                this thread and an echo thread: what any request-reply store
 *                                pays at least per request
 *
 * Each prints CSV on stdout. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* --- memcpy ------------------------------------------------------------------------------ */

static double per_copy(char *dst, const char *src, size_t bytes, long iters) {
  double t0 = now();
  for (long i = 0; i < iters; i++) {
    memcpy(dst, src, bytes);
    __asm__ volatile("" : : "r"(dst) : "memory"); /* the copy must happen */
  }
  return (now() - t0) / (double)iters;
}

static int memcpy_floor(size_t lo, size_t hi, int repeat) {
  char *src = aligned_alloc(4096, hi), *dst = aligned_alloc(4096, hi);
  double *t = calloc((size_t)repeat, sizeof *t);
  if (!src || !dst || !t || repeat < 1 || lo < 1) return 1;
  memset(src, 1, hi);
  memset(dst, 2, hi);
  printf("bytes,time_us,GBps\n");
  for (size_t b = lo; b <= hi; b *= 2) {
    long iters = 1;
    while (per_copy(dst, src, b, iters) * (double)iters < 0.005) iters *= 2; /* >= 5 ms */
    for (int r = 0; r < repeat; r++) t[r] = per_copy(dst, src, b, iters);
    qsort(t, (size_t)repeat, sizeof *t, by_value);
    double med = t[repeat / 2];
    printf("%zu,%.4f,%.3f\n", b, med * 1e6, (double)b / med / 1e9);
  }
  return 0;
}

/* --- loopback TCP round trip ------------------------------------------------------------- */

static void *echo(void *arg) {
  int fd = accept(*(int *)arg, NULL, NULL), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char c;
  while (read(fd, &c, 1) == 1 && write(fd, &c, 1) == 1) {
  }
  close(fd);
  return NULL;
}

static int tcp_rtt_floor(double seconds) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
      getsockname(l, (struct sockaddr *)&a, &len))
    return 1;
  pthread_t t;
  pthread_create(&t, NULL, echo, &l);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) return 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  size_t cap = 1 << 22, n = 0;
  double *rtt = malloc(cap * sizeof *rtt), end = now() + seconds;
  char c = 'x';
  while (rtt && n < cap && now() < end) {
    double t0 = now();
    if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1) return 1;
    rtt[n++] = now() - t0;
  }
  close(fd);
  pthread_join(t, NULL);
  if (n == 0) return 1;
  qsort(rtt, n, sizeof *rtt, by_value);
  printf("round_trips,median_us,p10_us,p90_us,per_second_one_connection\n");
  printf("%zu,%.2f,%.2f,%.2f,%.0f\n", n, rtt[n / 2] * 1e6, rtt[n / 10] * 1e6,
         rtt[n * 9 / 10] * 1e6, 1 / rtt[n / 2]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "memcpy"))
    return memcpy_floor(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), atoi(argv[4]));
  if (argc == 3 && !strcmp(argv[1], "tcp-rtt")) return tcp_rtt_floor(atof(argv[2]));
  fprintf(stderr, "usage: floors memcpy LO HI REPEAT | floors tcp-rtt SECONDS\n");
  return 2;
}
