/* orch server internals shared by orch_server.c (HTTP, lifecycle, metrics) and orch_request.c
 * (the per-request pipeline). Not a public header. */
#ifndef ND_ORCH_SRV_H
#define ND_ORCH_SRV_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>

#include "orch/config.h"
#include "orch/guard.h"
#include "orch/orchestrator.h"
#include "orch/router.h"
#include "orch/sentinel.h"
#include "orch/upstream.h"
#include "serve/serve.h"
#include "serve/srv_internal.h" /* srv_apierr, srv_fail, srv_error_json */

#define OQ_MAX_CHOICES 16

enum { OM_ST_2XX, OM_ST_4XX, OM_ST_5XX, OM_ST_N };
enum { OM_PATH_N = 5 };

typedef struct orch_metrics {
    uint64_t requests;                 /* chat requests that passed parsing */
    uint64_t status[OM_ST_N];
    uint64_t *by_route;                /* [n_routes + 1]: last = no router */
    uint64_t by_path[OM_PATH_N];       /* orch_route_path */
    uint64_t red_in[ORCH_K_COUNT], red_out[ORCH_K_COUNT], restored;
    uint64_t up_fail[ORCH_XFER_INTERNAL + 1];
    uint64_t up_status_err;            /* upstream answered non-2xx */
    uint64_t helper_calls, helper_fail;
    uint64_t ctx_in, ctx_kept;
    uint64_t guard_runs, guard_fixes, guard_ok, guard_failing;
    double seconds_sum, first_byte_sum;
    uint64_t seconds_n, first_byte_n;
} orch_metrics;

struct orch_server {
    orch_server_params p;
    const orch_config *cfg;
    char *main_key;                    /* owned, wiped on free */
    char *main_chat_url;               /* <main.url>/chat/completions, NULL when none */
    char **route_urls;                 /* [n_routes]: chat URL of ORCH_TARGET_URL routes */
    orch_sentinel *sent;               /* NULL: sentinel role off */
    orch_router *router;               /* NULL: router role off or no routes */
    orch_guard *guard;                 /* NULL: guard role off */
    char *router_gbnf;                 /* helper grammar */
    srv_t *helper;                     /* in-process helper server, NULL when none */
    char helper_url[96];               /* its chat URL */
    void *mhd;
    int listen_fd, port;
    bool stopped;
    pthread_mutex_t mu;
    int n_inflight;                    /* mu */
    orch_metrics met;                  /* mu */
};

/* One chat request. */
typedef struct oreq {
    orch_server *s;
    cJSON *body;                       /* the request, scrubbed in place into the upstream body */
    bool stream;
    orch_map *map;
    orch_counts c_in, c_out;
    uint32_t restored;
    int route;                         /* -1 = none */
    orch_route_result rr;
    bool helper_failed;
    const char *url, *bearer;          /* target (borrowed from s) */
    const char *target_name;           /* "main", "helper", "url" */
    bool guarded;
    size_t ctx_in, ctx_kept, ctx_tokens;
    size_t ctx_judged, ctx_yes;        /* pruner.helper: chunks the helper judged / called relevant */
    double t0, t_prep, t_first, t_end;
    int fd;                            /* client socket (hang-up checks) */
    /* upstream */
    orch_xfer *x;
    orch_xfer_fail fail;
    char fail_msg[320];
    int up_status;
    /* streaming */
    nd_buf out;                        /* SSE bytes for the client */
    size_t out_off;
    orch_outstream *os[OQ_MAX_CHOICES];
    bool os_done[OQ_MAX_CHOICES];
    cJSON *tmpl;                       /* id/object/created/model of the last chunk */
    bool bad_event, finished, ended;
    double t_last_out;
    nd_buf held;                       /* guarded stream: events after the fence, emitted at the end */
    nd_buf g_line, g_prefix, g_buf;    /* guarded stream: partial line, text sent, text held */
    bool g_buffering, holding;
    /* guard */
    bool guard_ran;
    orch_guard_summary gsum;
} oreq;

/* orch_request.c */
void oq_init(oreq *q, orch_server *s, int fd);
void oq_free(oreq *q);
/* Parses, prunes, scrubs and routes; on error fills e. */
int oq_prepare(oreq *q, const char *body, size_t n, srv_apierr *e);
/* Starts the upstream transfer. */
int oq_start(oreq *q, srv_apierr *e);
/* Non-stream: runs the transfer to its end and builds the answer (status in *status). */
char *oq_answer(oreq *q, int *status);
/* Stream: pumps until the status is known; returns 0 when the stream can start, else an
 * error answer (owned) with *status. */
char *oq_stream_begin(oreq *q, int *status);
/* Stream: moves on for at most wait_ms; appends SSE bytes to q->out; sets q->ended when
 * everything, [DONE] included, is in q->out. */
void oq_stream_pump(oreq *q, int wait_ms);
/* "route=code path=rule target=main sentinel_in=EMAIL=1 ..." for the header and the log. */
int oq_trace_line(const oreq *q, nd_buf *out);
/* Adds the request's figures to the metrics (takes s->mu). */
void oq_account(oreq *q);

/* orch_server.c */
void orch_metrics_status(orch_server *s, int status);

#endif
