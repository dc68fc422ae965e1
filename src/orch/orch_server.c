/* orch server: lifecycle, libmicrohttpd glue and /metrics of `nindub orchestrate`. The
 * per-request pipeline is orch_request.c. One thread per connection: a non-stream request
 * pumps its upstream transfer in the connection thread; a stream's content reader pumps it
 * between writes, so the sentinel's outbound scan runs on the stream as it passes. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "orch/orch_srv.h"
#include "serve/net.h"

enum oroute { O_CHAT, O_MODELS, O_HEALTH, O_METRICS, O_NONE = -1, O_BAD_METHOD = -2 };

static const struct {
    const char *path, *method;
    int route;
} oroutes[] = {
    {"/v1/chat/completions", "POST", O_CHAT}, {"/chat/completions", "POST", O_CHAT}, {"/v1/models", "GET", O_MODELS},
    {"/models", "GET", O_MODELS},             {"/health", "GET", O_HEALTH},          {"/v1/health", "GET", O_HEALTH},
    {"/metrics", "GET", O_METRICS},
};

typedef struct oconn {
    int route;
    srv_net_body body;
    bool replied;
} oconn;

/* ---------------------------------------------------------------- replies */

void orch_metrics_status(orch_server *s, int status) {
    pthread_mutex_lock(&s->mu);
    s->met.status[status < 400 ? OM_ST_2XX : status < 500 ? OM_ST_4XX : OM_ST_5XX]++;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result reply(orch_server *s, struct MHD_Connection *mc, oconn *c, int status, const char *ctype,
                             const char *body, const char *trace, const char *allow) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body ? strlen(body) : 0, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (trace) MHD_add_response_header(r, "x-nindub-trace", trace);
    if (allow) MHD_add_response_header(r, "Allow", allow);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    if (c) c->replied = true;
    orch_metrics_status(s, status);
    return ret;
}

static enum MHD_Result reply_err(orch_server *s, struct MHD_Connection *mc, oconn *c, const srv_apierr *e,
                                 const char *allow) {
    char *j = srv_error_json(e);
    enum MHD_Result r = reply(s, mc, c, j ? e->status : 500, "application/json",
                              j ? j : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}", NULL, allow);
    nd_free(j);
    return r;
}

static int conn_fd(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---------------------------------------------------------------- chat */

typedef struct ostream {
    oreq q;
    oconn *c;
} ostream;

static void log_request(oreq *q, int status) {
    nd_buf line = {0};
    oq_trace_line(q, &line);
    nd_log(&q->s->p.log, ND_LOG_INFO, "chat %s status=%d %s", q->stream ? "stream" : "json", status,
           line.data ? line.data : "");
    nd_buf_free(&line);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    ostream *st = cls;
    oreq *q = &st->q;
    for (;;) {
        size_t avail = q->out.len - q->out_off;
        if (avail) {
            size_t n = avail < max ? avail : max;
            memcpy(buf, q->out.data + q->out_off, n);
            q->out_off += n;
            if (q->out_off == q->out.len) q->out.len = q->out_off = 0;
            return (ssize_t)n;
        }
        if (q->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        oq_stream_pump(q, 100);
        if (!q->ended && q->out.len == q->out_off && q->x && orch_xfer_done(q->x) == false &&
            nd_time_s() - (q->t_last_out ? q->t_last_out : q->t0) > 15) {
            nd_buf_printf(&q->out, ": keep-alive\n\n"); /* an SSE comment: clients ignore it */
            q->t_last_out = nd_time_s();
        }
    }
}

static void stream_free(void *cls) {
    ostream *st = cls;
    oreq *q = &st->q;
    if (q->x && !orch_xfer_done(q->x)) { /* the client went away mid-stream */
        orch_xfer_abort(q->x);
        orch_xfer_pump(q->x, 0);
    }
    if (!q->t_end) q->t_end = nd_time_s();
    log_request(q, 200);
    oq_account(q);
    oq_free(q);
    nd_free(st);
}

static enum MHD_Result handle_chat(orch_server *s, struct MHD_Connection *mc, oconn *c) {
    srv_apierr e = {0};
    ostream *st = nd_calloc(1, sizeof *st);
    if (!st) {
        srv_fail(&e, 500, NULL, NULL, "out of memory");
        return reply_err(s, mc, c, &e, NULL);
    }
    oreq *q = &st->q;
    oq_init(q, s, conn_fd(mc));
    if (oq_prepare(q, c->body.buf.data, c->body.buf.len, &e) || oq_start(q, &e)) {
        enum MHD_Result r = reply_err(s, mc, c, &e, NULL);
        if (q->body && cJSON_IsObject(q->body) && e.status != 400) {
            q->t_end = nd_time_s();
            oq_account(q);
        }
        log_request(q, e.status);
        oq_free(q);
        nd_free(st);
        return r;
    }
    int status = 0;
    char *out = q->stream ? oq_stream_begin(q, &status) : oq_answer(q, &status);
    nd_buf trace = {0};
    oq_trace_line(q, &trace);
    enum MHD_Result r;
    if (out || !q->stream) {
        if (!q->t_end) q->t_end = nd_time_s();
        r = reply(s, mc, c, status, "application/json", out ? out : "{}", trace.data, NULL);
        cJSON_free(out);
        log_request(q, status);
        oq_account(q);
        oq_free(q);
        nd_free(st);
    } else {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!resp) {
            oq_free(q);
            nd_free(st);
            nd_buf_free(&trace);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        if (trace.data) MHD_add_response_header(resp, "x-nindub-trace", trace.data);
        r = MHD_queue_response(mc, 200, resp);
        MHD_destroy_response(resp);
        c->replied = true;
        orch_metrics_status(s, 200);
    }
    nd_buf_free(&trace);
    return r;
}

/* ---------------------------------------------------------------- other routes */

static char *models_json(const orch_server *s) {
    cJSON *j = cJSON_CreateObject(), *data = j ? cJSON_AddArrayToObject(j, "data") : NULL;
    if (!data) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON_AddStringToObject(j, "object", "list");
    const char *ids[2] = {s->cfg->main_model ? s->cfg->main_model : "main", s->helper ? "helper" : NULL};
    for (int i = 0; i < 2; i++) {
        if (!ids[i]) continue;
        cJSON *m = cJSON_CreateObject();
        if (!m) break;
        cJSON_AddStringToObject(m, "id", ids[i]);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "nindub-orchestrator");
        cJSON_AddItemToArray(data, m);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static char *metrics_text(orch_server *s) {
    nd_buf b = {0};
    const orch_config *c = s->cfg;
    pthread_mutex_lock(&s->mu);
    const orch_metrics *m = &s->met;
    nd_buf_printf(&b, "# TYPE nindub_orch_requests_total counter\nnindub_orch_requests_total %llu\n",
                  (unsigned long long)m->requests);
    nd_buf_printf(&b, "# TYPE nindub_orch_responses_total counter\n");
    static const char *const st[OM_ST_N] = {"2xx", "4xx", "5xx"};
    for (int i = 0; i < OM_ST_N; i++)
        nd_buf_printf(&b, "nindub_orch_responses_total{status=\"%s\"} %llu\n", st[i], (unsigned long long)m->status[i]);
    nd_buf_printf(&b, "# TYPE nindub_orch_route_total counter\n");
    for (size_t i = 0; i <= c->n_routes; i++)
        nd_buf_printf(&b, "nindub_orch_route_total{route=\"%s\"} %llu\n", i < c->n_routes ? c->routes[i].label : "(none)",
                      (unsigned long long)m->by_route[i]);
    nd_buf_printf(&b, "# TYPE nindub_orch_route_path_total counter\n");
    for (int i = 1; i < OM_PATH_N; i++)
        nd_buf_printf(&b, "nindub_orch_route_path_total{path=\"%s\"} %llu\n", orch_route_path_name((orch_route_path)i),
                      (unsigned long long)m->by_path[i]);
    nd_buf_printf(&b, "# TYPE nindub_orch_redactions_total counter\n");
    for (int k = 0; k < ORCH_K_COUNT; k++) {
        if (m->red_in[k])
            nd_buf_printf(&b, "nindub_orch_redactions_total{direction=\"in\",kind=\"%s\"} %llu\n", orch_kind_name(k),
                          (unsigned long long)m->red_in[k]);
        if (m->red_out[k])
            nd_buf_printf(&b, "nindub_orch_redactions_total{direction=\"out\",kind=\"%s\"} %llu\n", orch_kind_name(k),
                          (unsigned long long)m->red_out[k]);
    }
    nd_buf_printf(&b, "# TYPE nindub_orch_restored_total counter\nnindub_orch_restored_total %llu\n",
                  (unsigned long long)m->restored);
    static const char *const uf[] = {"ok", "connect", "timeout", "protocol", "aborted", "internal"};
    nd_buf_printf(&b, "# TYPE nindub_orch_upstream_errors_total counter\n");
    for (int i = 1; i <= ORCH_XFER_INTERNAL; i++)
        nd_buf_printf(&b, "nindub_orch_upstream_errors_total{kind=\"%s\"} %llu\n", uf[i], (unsigned long long)m->up_fail[i]);
    nd_buf_printf(&b, "nindub_orch_upstream_errors_total{kind=\"status\"} %llu\n", (unsigned long long)m->up_status_err);
    nd_buf_printf(&b,
                  "# TYPE nindub_orch_helper_calls_total counter\nnindub_orch_helper_calls_total %llu\n"
                  "# TYPE nindub_orch_helper_failures_total counter\nnindub_orch_helper_failures_total %llu\n"
                  "# TYPE nindub_orch_context_chunks_total counter\nnindub_orch_context_chunks_total{kept=\"yes\"} %llu\n"
                  "nindub_orch_context_chunks_total{kept=\"no\"} %llu\n"
                  "# TYPE nindub_orch_guard_runs_total counter\nnindub_orch_guard_runs_total %llu\n"
                  "# TYPE nindub_orch_guard_fixes_total counter\nnindub_orch_guard_fixes_total %llu\n"
                  "# TYPE nindub_orch_guard_results_total counter\nnindub_orch_guard_results_total{result=\"ok\"} %llu\n"
                  "nindub_orch_guard_results_total{result=\"failing\"} %llu\n"
                  "# TYPE nindub_orch_request_seconds summary\nnindub_orch_request_seconds_sum %.6f\n"
                  "nindub_orch_request_seconds_count %llu\n"
                  "# TYPE nindub_orch_first_byte_seconds summary\nnindub_orch_first_byte_seconds_sum %.6f\n"
                  "nindub_orch_first_byte_seconds_count %llu\n",
                  (unsigned long long)m->helper_calls, (unsigned long long)m->helper_fail, (unsigned long long)m->ctx_kept,
                  (unsigned long long)(m->ctx_in - m->ctx_kept), (unsigned long long)m->guard_runs,
                  (unsigned long long)m->guard_fixes, (unsigned long long)m->guard_ok, (unsigned long long)m->guard_failing,
                  m->seconds_sum, (unsigned long long)m->seconds_n, m->first_byte_sum, (unsigned long long)m->first_byte_n);
    pthread_mutex_unlock(&s->mu);
    return b.data;
}

/* ---------------------------------------------------------------- dispatch */

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    orch_server *s = cls;
    oconn *c = *con_cls;
    srv_apierr e = {0};
    if (!c) {
        if (!(c = nd_calloc(1, sizeof *c))) return MHD_NO;
        *con_cls = c;
        pthread_mutex_lock(&s->mu);
        s->n_inflight++;
        pthread_mutex_unlock(&s->mu);
        const char *allow = NULL;
        c->route = O_NONE;
        for (size_t i = 0; i < sizeof oroutes / sizeof oroutes[0]; i++) {
            if (strcmp(url, oroutes[i].path)) continue;
            c->route = strcmp(method, oroutes[i].method) ? O_BAD_METHOD : oroutes[i].route;
            allow = oroutes[i].method;
            break;
        }
        if (c->route == O_NONE) {
            srv_fail(&e, 404, "not_found", NULL, "no route %.100s %.200s", method, url);
            return reply_err(s, mc, c, &e, NULL);
        }
        if (c->route == O_BAD_METHOD) {
            srv_fail(&e, 405, "method_not_allowed", NULL, "%.200s only accepts %s", url, allow);
            return reply_err(s, mc, c, &e, allow);
        }
        if (srv_net_check(mc, c->route == O_HEALTH, s->p.api_key, s->p.max_body, &e)) return reply_err(s, mc, c, &e, NULL);
        if (c->route == O_HEALTH) return reply(s, mc, c, 200, "application/json", "{\"status\":\"ok\"}", NULL, NULL);
        if (c->route == O_MODELS || c->route == O_METRICS) {
            char *body = c->route == O_MODELS ? models_json(s) : metrics_text(s);
            if (!body) {
                srv_fail(&e, 500, NULL, NULL, "out of memory");
                return reply_err(s, mc, c, &e, NULL);
            }
            enum MHD_Result r = reply(s, mc, c, 200, c->route == O_MODELS ? "application/json" : "text/plain; version=0.0.4",
                                      body, NULL, NULL);
            if (c->route == O_MODELS) cJSON_free(body);
            else nd_free(body);
            return r;
        }
        return MHD_YES;
    }
    if (c->replied) {
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
    return handle_chat(s, mc, c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)mc, (void)why;
    orch_server *s = cls;
    oconn *c = *con_cls;
    if (!c) return;
    pthread_mutex_lock(&s->mu);
    s->n_inflight--;
    pthread_mutex_unlock(&s->mu);
    nd_buf_free(&c->body.buf);
    nd_free(c);
    *con_cls = NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static char *chat_url(const char *base) {
    size_t n = strlen(base);
    while (n && base[n - 1] == '/') n--;
    nd_buf b = {0};
    if (n >= 17 && !strncmp(base + n - 17, "/chat/completions", 17)) nd_buf_append(&b, base, n);
    else nd_buf_printf(&b, "%.*s/chat/completions", (int)n, base);
    return b.data;
}

static bool url_ok(const char *u) { return !strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8); }

orch_server *orch_server_new(const orch_server_params *p, nd_err *err) {
    if (!p || !p->cfg) {
        nd_seterr(err, ND_EINVAL, "orchestrate: no configuration");
        return NULL;
    }
    const orch_config *c = p->cfg;
    if (c->main_url && !url_ok(c->main_url)) {
        nd_seterr(err, ND_EINVAL, "main.url must start with http:// or https:// (got %.200s)", c->main_url);
        return NULL;
    }
    if (!c->main_url && !c->helper_model) {
        nd_seterr(err, ND_EINVAL, "nothing to send requests to: set main.url (--main URL) or a helper model (--helper FILE)");
        return NULL;
    }
    bool routes_on = c->role_router && c->n_routes;
    for (size_t i = 0; routes_on && i < c->n_routes; i++) {
        if (c->routes[i].target == ORCH_TARGET_HELPER && !c->helper_model) {
            nd_seterr(err, ND_EINVAL, "routes[%zu] (%s) targets the helper, but no helper model is configured (helper.model / --helper)",
                      i, c->routes[i].label);
            return NULL;
        }
        if (c->routes[i].target == ORCH_TARGET_URL && !url_ok(c->routes[i].target_url)) {
            nd_seterr(err, ND_EINVAL, "routes[%zu].target must be main, helper or an http(s):// URL", i);
            return NULL;
        }
    }
    if (c->role_pruner && c->pruner_helper && !c->helper_model) {
        nd_seterr(err, ND_EINVAL, "pruner.helper is on but no helper model is configured (helper.model / --helper)");
        return NULL;
    }
    if (routes_on && c->router_helper && !c->helper_model) {
        nd_seterr(err, ND_EINVAL, "router.helper is on but no helper model is configured (helper.model / --helper)");
        return NULL;
    }
    if (orch_upstream_init(err)) return NULL;
    orch_server *s = nd_calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = *p;
    s->cfg = c;
    s->listen_fd = -1;
    if (!s->p.max_conns) s->p.max_conns = 64;
    if (!s->p.max_body) s->p.max_body = 8u << 20;
    if (!s->p.max_messages) s->p.max_messages = 1024;
    if (!s->p.max_context) s->p.max_context = 1000;
    if (!s->p.timeout_s) s->p.timeout_s = 60;
    if (!s->p.helper_parallel) s->p.helper_parallel = 2;
    s->p.api_key = NULL; /* copied below */
    pthread_mutex_init(&s->mu, NULL);
    if (p->api_key && *p->api_key && !(s->p.api_key = nd_strdup(p->api_key))) goto oom;
    const char *key = p->main_key;
    if (!key && c->main_key_env) {
        key = getenv(c->main_key_env);
        if (!key || !*key)
            nd_log(&p->log, ND_LOG_WARN, "main.key_env: %s is not set; requests go to the main endpoint without a key",
                   c->main_key_env);
    }
    if (key && *key && !(s->main_key = nd_strdup(key))) goto oom;
    if (c->main_url && !(s->main_chat_url = chat_url(c->main_url))) goto oom;
    if (!(s->met.by_route = nd_calloc(c->n_routes + 1, sizeof *s->met.by_route))) goto oom;
    if (c->n_routes && !(s->route_urls = nd_calloc(c->n_routes, sizeof *s->route_urls))) goto oom;
    for (size_t i = 0; i < c->n_routes; i++)
        if (c->routes[i].target == ORCH_TARGET_URL && !(s->route_urls[i] = chat_url(c->routes[i].target_url))) goto oom;
    if (c->role_sentinel && !(s->sent = orch_sentinel_new(&c->sentinel, err))) goto fail;
    if (routes_on) {
        if (!(s->router = orch_config_router(c, err))) goto fail;
        nd_buf g = {0};
        if (orch_router_grammar(s->router, &g)) goto oom;
        s->router_gbnf = g.data;
    }
    if (c->role_guard) {
        orch_guard_opts go = c->guard;
        for (int l = 0; l < ORCH_LANG_COUNT; l++)
            if (c->guard_argv[l]) go.argv[l] = (const char *const *)c->guard_argv[l];
        if (!(s->guard = orch_guard_new(&go, err))) goto fail;
    }
    return s;
oom:
    nd_seterr(err, ND_ENOMEM, "orchestrate: out of memory");
fail:
    orch_server_free(s);
    return NULL;
}

static int start_helper(orch_server *s, nd_err *err) {
    srv_params hp = srv_default_params();
    hp.model_path = s->cfg->helper_model;
    hp.alias = "helper";
    hp.host = "127.0.0.1";
    hp.port = 0;
    hp.n_parallel = s->p.helper_parallel;
    hp.n_ctx = s->p.helper_ctx;
    hp.n_threads = s->p.helper_threads;
    hp.log = s->p.log;
    if (!(s->helper = srv_new(&hp, err))) return err ? err->code : ND_EINVAL;
    int rc = srv_listen(s->helper, err);
    if (!rc) rc = srv_load(s->helper, err);
    if (rc) {
        nd_preerr(err, "helper model: ");
        return rc;
    }
    snprintf(s->helper_url, sizeof s->helper_url, "http://127.0.0.1:%d/v1/chat/completions", srv_port(s->helper));
    return 0;
}

int orch_server_start(orch_server *s, nd_err *err) {
    int rc;
    if (s->cfg->helper_model && (rc = start_helper(s, err))) return rc;
    if ((rc = srv_net_listen(s->cfg->listen_host, s->cfg->listen_port, "listen.host", &s->listen_fd, &s->port, err)))
        return rc;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)s->listen_fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->p.max_conns, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)s->p.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        close(s->listen_fd);
        s->listen_fd = -1;
        return nd_seterr(err, ND_EIO, "libmicrohttpd could not start on port %d", s->port);
    }
    nd_log(&s->p.log, ND_LOG_INFO, "orchestrator on http://%s:%d/v1 -> main %s%s%s; roles:%s%s%s%s; %zu routes",
           s->cfg->listen_host, s->port, s->main_chat_url ? s->main_chat_url : "(none: the helper answers)",
           s->helper ? ", helper " : "", s->helper ? s->helper_url : "", s->sent ? " sentinel" : "",
           s->router ? " router" : "", s->cfg->role_pruner ? " pruner" : "", s->guard ? " guard" : "",
           s->router ? s->cfg->n_routes : 0);
    return 0;
}

int orch_server_port(const orch_server *s) { return s->port; }

void orch_server_stop(orch_server *s) {
    if (!s || s->stopped) return;
    s->stopped = true;
    if (s->mhd) {
        MHD_quiesce_daemon(s->mhd);
        for (double t0 = nd_time_s(); nd_time_s() - t0 < 3;) { /* let answers in flight finish */
            pthread_mutex_lock(&s->mu);
            int n = s->n_inflight;
            pthread_mutex_unlock(&s->mu);
            if (n <= 0) break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
    }
    if (s->listen_fd >= 0) close(s->listen_fd);
    s->listen_fd = -1;
    srv_free(s->helper);
    s->helper = NULL;
}

void orch_server_free(orch_server *s) {
    if (!s) return;
    orch_server_stop(s);
    orch_sentinel_free(s->sent);
    orch_router_free(s->router);
    orch_guard_free(s->guard);
    nd_free(s->router_gbnf);
    if (s->main_key) memset(s->main_key, 0, strlen(s->main_key));
    nd_free(s->main_key);
    nd_free((char *)s->p.api_key);
    nd_free(s->main_chat_url);
    for (size_t i = 0; s->route_urls && i < s->cfg->n_routes; i++) nd_free(s->route_urls[i]);
    nd_free(s->route_urls);
    nd_free(s->met.by_route);
    pthread_mutex_destroy(&s->mu);
    nd_free(s);
}
