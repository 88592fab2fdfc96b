/* host.h - this host's name for other hosts. */
#ifndef FG_COMMON_HOST_H
#define FG_COMMON_HOST_H
#include <stddef.h>

/* "localhost", 127.x.x.x or ::1. */
int fg__is_loopback(const char *addr);

/* The address rank 0 gives ranks on other hosts, and gloo listens on: GLOO_SOCKET_IFNAME's, as
 * the ranks talk there; else the host name, when it names this host; else the first other IPv4
 * address. host is left as it is when there is none. */
void fg__advertised_host(char *host, size_t len);

/* "1.2.3.4:port" or "[::1]:port"; "?:0" for an address of another family. */
struct sockaddr;
void fg__sockaddr_name(const struct sockaddr *sa, char *out, size_t len);

#endif
