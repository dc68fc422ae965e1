/* Socket helpers shared by the HTTP fronts. See net.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <stdlib.h>

#include "serve/net.h"
#include "serve/srv_internal.h"

int srv_net_listen(const char *host, int port, const char *what, int *fd_out, int *port_out, nd_err *err) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int gai = getaddrinfo(host, ps, &hints, &res);
    if (gai) return nd_seterr(err, ND_EINVAL, "cannot resolve %s %s: %s", what, host, gai_strerror(gai));
    int fd = -1, last = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 256) == 0) break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return nd_seterr(err, ND_EIO, "cannot listen on %s:%d: %s", host, port, strerror(last));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port_out = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

bool srv_net_bearer_ok(const char *h, const char *key) {
    if (!key || !*key) return true;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned)(h[i] ^ key[i % (b ? b : 1)]);
    return diff == 0;
}

bool srv_net_hung_up(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

int srv_net_check(struct MHD_Connection *mc, bool open_route, const char *key, size_t max_body, struct srv_apierr *e) {
    if (!open_route && !srv_net_bearer_ok(MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization"), key))
        return srv_fail(e, 401, "invalid_api_key", NULL, "missing or wrong API key (send Authorization: Bearer KEY)");
    const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > max_body)
        return srv_fail(e, 413, "request_too_large", NULL, "the request body is larger than %zu bytes", max_body);
    return 0;
}

int srv_net_body_feed(srv_net_body *b, const char *data, size_t *size, size_t max_body) {
    size_t n = *size;
    if (!n) return 1;
    *size = 0;
    if (!b->too_big && b->buf.len + n <= max_body) return nd_buf_append(&b->buf, data, n) ? -1 : 0;
    b->too_big = true;
    b->discarded += n;
    return b->discarded > 4 * max_body ? -1 : 0;
}
