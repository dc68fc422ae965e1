/* Small pieces both HTTP fronts (serve/http.c, orch/orch_server.c) use around libmicrohttpd:
 * the listening socket, bearer-key checks, a connection's socket and hang-up test. */
#ifndef ND_SRV_NET_H
#define ND_SRV_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "core/nd.h"

/* Resolves host, binds and listens (SO_REUSEADDR, non-blocking, close-on-exec). *fd_out gets
 * the socket, *port_out the bound port (useful with port 0). what names the setting in
 * errors ("--host", "listen.host"). */
int srv_net_listen(const char *host, int port, const char *what, int *fd_out, int *port_out, nd_err *err);
/* Whether an Authorization header value is "Bearer <key>" (constant time in the header's
 * length). An empty or NULL key accepts everything. */
bool srv_net_bearer_ok(const char *authorization, const char *key);
/* Whether the peer of a connected socket has gone (poll POLLRDHUP, no wait); false for fd < 0. */
bool srv_net_hung_up(int fd);

/* The checks a request passes when its headers are in: the bearer key unless the route is
 * open (401), a declared Content-Length within max_body (413). Returns 0, or -1 with e filled. */
struct MHD_Connection;
struct srv_apierr;
int srv_net_check(struct MHD_Connection *mc, bool open_route, const char *key, size_t max_body, struct srv_apierr *e);

/* A request body collected under a byte limit: past the limit the rest is discarded (the
 * handler answers 413 when too_big), up to 4x the limit, then the connection is dropped. */
typedef struct srv_net_body {
    nd_buf buf;
    size_t discarded;
    bool too_big;
} srv_net_body;
/* One upload call of the access handler: 1 when the body is complete (*size was 0), 0 when
 * more is expected (*size is consumed), -1 to drop the connection (out of memory, or too
 * much discarded). */
int srv_net_body_feed(srv_net_body *b, const char *data, size_t *size, size_t max_body);

#endif
