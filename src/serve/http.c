/* libmicrohttpd glue: routes, authentication, body limits, streaming responses.
 *
 * One thread per connection (MHD_USE_THREAD_PER_CONNECTION, at most max_conns), so the
 * handlers may block: a non-stream request waits on its task's condition variable, a
 * stream's content reader waits for the next SSE bytes. Both look at the socket every
 * 250 ms while they wait (poll POLLRDHUP) and cancel the task when the client is gone;
 * a failed write does the same through the response's free callback.
 *
 * Limits against hostile clients: body > max_body -> 413 (from Content-Length before
 * reading, or once the chunked body passes the limit; the rest is discarded up to 4x the
 * limit, then the connection is dropped); request line + headers are bounded by the
 * per-connection memory pool (64 KiB, MHD answers 431/413 itself); idle connections,
 * including slowloris clients that dribble a header, are closed after timeout_s; at most
 * max_conns connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/net.h"
#include "serve/srv_internal.h"

enum route { R_CHAT, R_COMPL, R_MODELS, R_TOKENIZE, R_DETOKENIZE, R_HEALTH, R_METRICS };
#define R_NONE (-1)
#define R_BAD_METHOD (-2)

static const struct {
    const char *path;
    const char *method;
    int route;
} routes[] = {
    {"/v1/chat/completions", "POST", R_CHAT}, {"/chat/completions", "POST", R_CHAT},
    {"/v1/completions", "POST", R_COMPL},     {"/completions", "POST", R_COMPL},
    {"/v1/models", "GET", R_MODELS},          {"/models", "GET", R_MODELS},
    {"/tokenize", "POST", R_TOKENIZE},        {"/detokenize", "POST", R_DETOKENIZE},
    {"/health", "GET", R_HEALTH},             {"/v1/health", "GET", R_HEALTH},
    {"/metrics", "GET", R_METRICS},
};

typedef struct conn {
    int route;
    srv_net_body body;
    bool replied;
} conn;

typedef struct stream_rd {
    srv_t *s;
    srv_task *t;
    int fd;
} stream_rd;

static int route_of(const char *url, const char *method, const char **allow) {
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        if (!strcmp(method, routes[i].method)) return routes[i].route;
        *allow = routes[i].method;
        return R_BAD_METHOD;
    }
    return R_NONE;
}

/* ---------------------------------------------------------------- replies */

static enum MHD_Result reply(srv_t *s, struct MHD_Connection *mc, conn *c, int status, const char *ctype,
                             const char *body, const char *allow) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body ? strlen(body) : 0, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (allow) MHD_add_response_header(r, "Allow", allow);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    if (c) c->replied = true;
    pthread_mutex_lock(&s->mu);
    srv_metrics_status_locked(s, status);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static enum MHD_Result reply_json(srv_t *s, struct MHD_Connection *mc, conn *c, int status, char *owned) {
    enum MHD_Result r =
        owned ? reply(s, mc, c, status, "application/json", owned, NULL)
              : reply(s, mc, c, 500, "application/json",
                      "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}", NULL);
    nd_free(owned);
    return r;
}

static enum MHD_Result reply_err(srv_t *s, struct MHD_Connection *mc, conn *c, const srv_apierr *e,
                                 const char *allow) {
    char *j = srv_error_json(e);
    enum MHD_Result r = j ? reply(s, mc, c, e->status, "application/json", j, allow) : reply_json(s, mc, c, 500, NULL);
    nd_free(j);
    return r;
}

/* ---------------------------------------------------------------- helpers */

static int conn_fd(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void wait_250ms(pthread_cond_t *cv, pthread_mutex_t *mu) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

static int state_of(srv_t *s) {
    pthread_mutex_lock(&s->mu);
    int st = s->state;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static int not_ready(srv_t *s, srv_apierr *e) {
    int st = state_of(s);
    if (st == SRV_READY) return 0;
    if (st == SRV_LOADING) return srv_fail(e, 503, "loading", NULL, "the model is still loading");
    if (st == SRV_STOPPING) return srv_fail(e, 503, "shutting_down", NULL, "the server is shutting down");
    return srv_fail(e, 503, "load_failed", NULL, "the model failed to load: %s", s->load_error);
}

/* ---------------------------------------------------------------- streaming */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_rd *rd = cls;
    srv_t *s = rd->s;
    srv_task *t = rd->t;
    ssize_t ret;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        size_t avail = t->sse.len - t->sse_off;
        if (avail) {
            size_t n = avail < max ? avail : max;
            memcpy(buf, t->sse.data + t->sse_off, n);
            t->sse_off += n;
            if (t->sse_off == t->sse.len) t->sse.len = t->sse_off = 0;
            ret = (ssize_t)n;
            break;
        }
        if (t->done) {
            ret = MHD_CONTENT_READER_END_OF_STREAM;
            break;
        }
        wait_250ms(&t->cv, &s->mu);
        if (!t->done && t->sse.len == t->sse_off && srv_net_hung_up(rd->fd)) {
            srv_task_cancel_locked(s, t);
            ret = MHD_CONTENT_READER_END_WITH_ERROR;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static void stream_free(void *cls) {
    stream_rd *rd = cls;
    pthread_mutex_lock(&rd->s->mu);
    srv_task_cancel_locked(rd->s, rd->t); /* no-op when done */
    srv_task_unref_locked(rd->s, rd->t);
    pthread_mutex_unlock(&rd->s->mu);
    nd_free(rd);
}

static enum MHD_Result reply_stream(srv_t *s, struct MHD_Connection *mc, conn *c, srv_task *t) {
    stream_rd *rd = nd_calloc(1, sizeof *rd);
    struct MHD_Response *r = rd ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, rd, stream_free) : NULL;
    if (!r) {
        nd_free(rd);
        pthread_mutex_lock(&s->mu);
        srv_task_cancel_locked(s, t);
        srv_task_unref_locked(s, t);
        pthread_mutex_unlock(&s->mu);
        return reply_json(s, mc, c, 500, NULL);
    }
    rd->s = s;
    rd->t = t;
    rd->fd = conn_fd(mc);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(mc, 200, r);
    MHD_destroy_response(r); /* the reader's free callback runs when MHD is done with it */
    c->replied = true;
    pthread_mutex_lock(&s->mu);
    srv_metrics_status_locked(s, 200);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

/* ---------------------------------------------------------------- handlers */

static enum MHD_Result handle_generate(srv_t *s, struct MHD_Connection *mc, conn *c) {
    srv_apierr e = {0};
    srv_req req;
    if (srv_req_parse(&req, c->route == R_CHAT ? SRV_EP_CHAT : SRV_EP_COMPLETION, c->body.buf.data, c->body.buf.len, &e))
        return reply_err(s, mc, c, &e, NULL);
    srv_task *t = NULL;
    if (not_ready(s, &e) || srv_task_new(s, &req, &t, &e)) {
        srv_req_free(&req);
        return reply_err(s, mc, c, &e, NULL);
    }
    if (srv_task_submit(s, t, &e)) {
        pthread_mutex_lock(&s->mu);
        srv_task_unref_locked(s, t);
        pthread_mutex_unlock(&s->mu);
        return reply_err(s, mc, c, &e, NULL);
    }
    if (t->req.stream) return reply_stream(s, mc, c, t);
    int fd = conn_fd(mc);
    bool gone = false;
    pthread_mutex_lock(&s->mu);
    while (!t->done) {
        wait_250ms(&t->cv, &s->mu);
        if (!t->done && !gone && srv_net_hung_up(fd)) {
            srv_task_cancel_locked(s, t);
            gone = true;
        }
    }
    pthread_mutex_unlock(&s->mu);
    enum MHD_Result ret;
    if (gone) ret = MHD_NO;
    else if (t->err.status) ret = reply_err(s, mc, c, &t->err, NULL);
    else ret = reply_json(s, mc, c, 200, srv_json_final(t));
    pthread_mutex_lock(&s->mu);
    srv_task_unref_locked(s, t);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static enum MHD_Result handle_health(srv_t *s, struct MHD_Connection *mc, conn *c) {
    srv_apierr e = {0};
    if (not_ready(s, &e)) return reply_err(s, mc, c, &e, NULL);
    char buf[160];
    pthread_mutex_lock(&s->mu);
    snprintf(buf, sizeof buf, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_processing\":%d,\"queue\":%d}",
             s->n_slots - s->n_busy, s->n_busy, s->q_len);
    pthread_mutex_unlock(&s->mu);
    return reply(s, mc, c, 200, "application/json", buf, NULL);
}

static enum MHD_Result handle_tokens(srv_t *s, struct MHD_Connection *mc, conn *c) {
    srv_apierr e = {0};
    if (not_ready(s, &e)) return reply_err(s, mc, c, &e, NULL);
    char *out = c->route == R_TOKENIZE ? srv_json_tokenize(s, c->body.buf.data, c->body.buf.len, &e)
                                       : srv_json_detokenize(s, c->body.buf.data, c->body.buf.len, &e);
    if (!out && e.status) return reply_err(s, mc, c, &e, NULL);
    return reply_json(s, mc, c, 200, out);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    (void)version;
    srv_t *s = cls;
    conn *c = *con_cls;
    srv_apierr e = {0};
    if (!c) { /* headers are in: route, method, auth and declared size are checked now */
        if (!(c = nd_calloc(1, sizeof *c))) return MHD_NO;
        *con_cls = c;
        const char *allow = NULL;
        c->route = route_of(url, method, &allow);
        pthread_mutex_lock(&s->mu);
        s->met.requests[c->route >= 0 ? c->route : R_METRICS + 1]++;
        s->n_inflight++;
        pthread_mutex_unlock(&s->mu);
        if (c->route == R_NONE) {
            srv_fail(&e, 404, "not_found", NULL, "no route %.100s %.200s", method, url);
            return reply_err(s, mc, c, &e, NULL);
        }
        if (c->route == R_BAD_METHOD) {
            srv_fail(&e, 405, "method_not_allowed", NULL, "%.200s only accepts %s", url, allow);
            return reply_err(s, mc, c, &e, allow);
        }
        if (srv_net_check(mc, c->route == R_HEALTH, s->api_key, s->p.max_body, &e)) return reply_err(s, mc, c, &e, NULL);
        if (c->route == R_MODELS) return reply_json(s, mc, c, 200, srv_json_models(s));
        if (c->route == R_HEALTH) return handle_health(s, mc, c);
        if (c->route == R_METRICS) {
            char *m = srv_metrics_text(s);
            enum MHD_Result r = m ? reply(s, mc, c, 200, "text/plain; version=0.0.4", m, NULL) : reply_json(s, mc, c, 500, NULL);
            nd_free(m);
            return r;
        }
        return MHD_YES; /* wait for the body */
    }
    if (c->replied) { /* answered early: swallow whatever still comes */
        *upload_data_size = 0;
        return MHD_YES;
    }
    int fed = srv_net_body_feed(&c->body, upload_data, upload_data_size, s->p.max_body);
    if (fed < 0) return MHD_NO;
    if (fed == 0) return MHD_YES;
    if (c->body.too_big) {
        srv_fail(&e, 413, "request_too_large", NULL, "the request body is larger than %zu bytes", s->p.max_body);
        return reply_err(s, mc, c, &e, NULL);
    }
    if (c->route == R_TOKENIZE || c->route == R_DETOKENIZE) return handle_tokens(s, mc, c);
    return handle_generate(s, mc, c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)mc;
    (void)why;
    srv_t *s = cls;
    conn *c = *con_cls;
    if (!c) return;
    pthread_mutex_lock(&s->mu);
    s->n_inflight--;
    pthread_mutex_unlock(&s->mu);
    nd_buf_free(&c->body.buf);
    nd_free(c);
    *con_cls = NULL;
}

/* ---------------------------------------------------------------- daemon */

int srv_http_start(srv_t *s, nd_err *err) {
    int rc = srv_net_listen(s->host, s->p.port, "--host", &s->listen_fd, &s->port, err);
    if (rc) return rc;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                              MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->p.max_conns,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->p.timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        close(s->listen_fd);
        s->listen_fd = -1;
        return nd_seterr(err, ND_EIO, "libmicrohttpd could not start on port %d", s->port);
    }
    return 0;
}

void srv_http_quiesce(srv_t *s) {
    if (s->mhd) MHD_quiesce_daemon(s->mhd);
}

void srv_http_stop(srv_t *s) {
    /* MHD_stop_daemon closes connections at once: first let answers and the tails of
     * streams (error event, [DONE]) reach their clients, for at most 3 s */
    for (double t0 = nd_time_s(); s->mhd && nd_time_s() - t0 < 3;) {
        pthread_mutex_lock(&s->mu);
        int n = s->n_inflight;
        pthread_mutex_unlock(&s->mu);
        if (n <= 0) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (s->mhd) MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    if (s->listen_fd >= 0) close(s->listen_fd);
    s->listen_fd = -1;
}
