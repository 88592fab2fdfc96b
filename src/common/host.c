/* host.c - how this host is named to others: the address libfg's rank 0 advertises for the
 * store and gloo listens on, which fgbench's peers must match. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/host.h"

/* The address alone, as text; returns its port, or -1 for a family other than IPv4 and
 * IPv6. */
static int address_text(const struct sockaddr *sa, char *text, size_t len) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    return inet_ntop(AF_INET6, &a->sin6_addr, text, (socklen_t)len) ? ntohs(a->sin6_port) : -1;
  }
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    return inet_ntop(AF_INET, &a->sin_addr, text, (socklen_t)len) ? ntohs(a->sin_port) : -1;
  }
  return -1;
}

void fg__sockaddr_name(const struct sockaddr *sa, char *out, size_t len) {
  char text[INET6_ADDRSTRLEN];
  int port = address_text(sa, text, sizeof text);
  if (port < 0)
    snprintf(out, len, "?:0");
  else if (sa->sa_family == AF_INET6)
    snprintf(out, len, "[%s]:%d", text, port);
  else
    snprintf(out, len, "%s:%d", text, port);
}

int fg__is_loopback(const char *addr) {
  return !strcmp(addr, "localhost") || !strncmp(addr, "127.", 4) || !strcmp(addr, "::1");
}

/* A host name other hosts may reach this one by: it resolves to an address of this host that
 * is not loopback (Debian maps the name to 127.0.1.1; hosts in network namespaces share a
 * name that resolves to some other host's address). Binding it tells it is ours. */
static int name_is_reachable_here(const char *name) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
  if (getaddrinfo(name, NULL, &hints, &ai) != 0) return 0;
  char text[INET6_ADDRSTRLEN] = "";
  const struct sockaddr *sa = ai->ai_addr;
  address_text(sa, text, sizeof text);
  int ok = !fg__is_loopback(text);
  if (ok) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ok = fd >= 0 && bind(fd, sa, ai->ai_addrlen) == 0;
    if (fd >= 0) close(fd);
  }
  freeaddrinfo(ai);
  return ok;
}

void fg__advertised_host(char *host, size_t len) {
  const char *iface = getenv("GLOO_SOCKET_IFNAME");
  char name[256];
  if (!(iface && *iface) && gethostname(name, sizeof name) == 0 && name_is_reachable_here(name)) {
    snprintf(host, len, "%s", name);
    return;
  }
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) != 0) return;
  for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) ||
        (iface && *iface && strcmp(i->ifa_name, iface) != 0))
      continue;
    inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, host, (socklen_t)len);
    break;
  }
  freeifaddrs(ifs);
}
