/* serve/ internals shared by api.c (request/response JSON), slots.c (engine), http.c
 * (libmicrohttpd glue) and metrics.c. Not a public header. */
#ifndef ND_SRV_INTERNAL_H
#define ND_SRV_INTERNAL_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>

#include "model/model.h"
#include "sample/grammar.h"
#include "sample/sample.h"
#include "serve/serve.h"
#include "spec/spec.h"
#include "tokenizer/chat.h"
#include "tokenizer/tok.h"

#define SRV_MAX_STOPS 16
#define SRV_MAX_STOP_LEN 256
#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_MESSAGES 4096
#define SRV_MAX_PROMPT_IDS (1 << 20)

/* ------------------------------------------------------------ errors */

/* An API error: HTTP status + OpenAI error object fields. */
typedef struct srv_apierr {
    int status;       /* 0 = no error */
    const char *type; /* "invalid_request_error", ... (static) */
    const char *code; /* "invalid_value", ... (static) or NULL */
    char param[64];   /* request field at fault, "" = null */
    char msg[480];
} srv_apierr;

/* Fills e (type from the status) and returns -1 so parsers can `return srv_fail(...)`. */
int srv_fail(srv_apierr *e, int status, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* {"error":{"message","type","param","code"}} as a new NUL-terminated string. */
char *srv_error_json(const srv_apierr *e);

/* ------------------------------------------------------------ requests */

typedef enum srv_ep { SRV_EP_CHAT, SRV_EP_COMPLETION } srv_ep;
typedef enum srv_rf { SRV_RF_TEXT, SRV_RF_JSON_OBJECT, SRV_RF_JSON_SCHEMA } srv_rf;
/* The request's "speculative" field (extension). */
typedef enum srv_spec_mode {
    SRV_SPEC_DEFAULT = 0, /* absent / null: the server's drafter, if it has one */
    SRV_SPEC_OFF,         /* false, "off" */
    SRV_SPEC_SERVER,      /* true, or an object without "type": the server's drafter (400 if none) */
    SRV_SPEC_NGRAM,       /* "ngram": prompt lookup, whatever the server's default */
    SRV_SPEC_DRAFT,       /* "draft": the server's draft model (400 if none) */
} srv_spec_mode;

/* A validated request. Every pointer is owned (srv_req_free). */
typedef struct srv_req {
    srv_ep ep;
    char *model;                 /* NULL = not given */
    chat_msg *msgs;              /* chat: [n_msgs], role/content owned */
    size_t n_msgs;
    char *prompt;                /* completion text (NUL-free not required: prompt_len) */
    size_t prompt_len;
    int32_t *prompt_ids;         /* completion given as token ids (range checked later) */
    size_t n_prompt_ids;
    int64_t max_tokens;          /* -1 = until EOG / context full */
    smp_params sp;
    bool seed_set;
    char *stops[SRV_MAX_STOPS];
    int n_stops;
    bool stream, include_usage, ignore_eos;
    int logprobs;                /* -1 off, else number of top alternatives (0..20) */
    srv_rf rf;
    char *schema;                /* json_schema: the schema, printed JSON */
    char *grammar;               /* GBNF text (extension field "grammar") */
    srv_spec_mode spec;          /* extension field "speculative" */
    int spec_draft_max;          /* its draft_max; 0 = the drafter's */
    float spec_p_min;            /* its p_min; < 0 = the drafter's */
} srv_req;

/* Parses and validates a request body (any bytes). Unknown fields are ignored; every
 * known field is type- and range-checked. On error returns -1 with e filled (400), and
 * r is left empty. */
int srv_req_parse(srv_req *r, srv_ep ep, const char *body, size_t len, srv_apierr *e);
void srv_req_free(srv_req *r);

/* ------------------------------------------------------------ tasks */

/* One request in flight. Shared by the connection thread and the engine (refs), fields
 * below `mu` are guarded by srv.mu. */
typedef struct srv_task {
    srv_req req;                 /* immutable after submit */
    int32_t *prompt;             /* [n_prompt] tokens */
    size_t n_prompt;
    grammar *gram;               /* owned, NULL = unconstrained */
    int64_t max_gen;             /* effective token limit (>= 1) */
    spec_params spec;            /* the drafter this request uses (kind SPEC_NONE: none) */
    char id[48];
    int64_t created;             /* unix seconds */
    const char *model_id;        /* the server's (outlives tasks) */
    /* --- mu --- */
    pthread_cond_t cv;           /* signalled when output or completion arrives */
    int refs;
    bool cancelled, done;
    nd_buf sse;                  /* stream: bytes produced so far */
    size_t sse_off;              /* bytes already handed to the connection */
    char *text;                  /* non-stream: the whole text (on done) */
    cJSON *logprobs;             /* non-stream: logprob entries (on done), or NULL */
    const char *finish;          /* "stop" / "length" (on done) */
    int64_t n_cached, n_gen;     /* usage */
    int64_t spec_drafted, spec_accepted; /* usage extension (speculative) */
    srv_apierr err;              /* err.status != 0: failed (on done) */
    double t_queued;
    struct srv_task *next;       /* queue link */
} srv_task;

/* ------------------------------------------------------------ slots */

typedef struct srv_slot {
    int id;                      /* KV sequence id */
    srv_task *task;              /* NULL = idle */
    int32_t *cache;              /* tokens in the KV sequence, [n_cache] */
    size_t n_cache, cap_cache;
    bool generating;             /* prompt fully in the cache */
    int32_t pending;             /* generating: sampled token still to feed */
    smp_chain *smp;
    grammar_state *gs;
    tok_stream ts;
    nd_buf gen;                  /* generated text (after stop trimming) */
    size_t sent;                 /* bytes of gen already emitted */
    int64_t n_gen;
    bool role_sent;
    nd_buf out;                  /* SSE bytes produced this step (engine only) */
    cJSON *lp;                   /* non-stream logprob entries (engine only) */
    double t_used;
    double t_start;
    /* speculative decoding (engine only) */
    struct srv *srv;             /* for the draft filter / pick hooks */
    spec_seq *spec;              /* made the first time the slot drafts; kept across tasks */
    bool spec_on;                /* this task drafts */
    bool spec_begun;             /* spec_seq_begin done for this task */
    int32_t draft[SPEC_MAX_DRAFT];
    int n_draft;                 /* this step's draft */
    grammar_state *gs_tmp;       /* grammar scratch of the draft filter and the pick */
    int tmp_n;                   /* drafted tokens gs_tmp has advanced over */
    int32_t pick_last;           /* the pick's previous token (gs_tmp not advanced over it yet) */
    srv_apierr pick_err;         /* why the pick failed (status 0: it did not) */
    int64_t spec_drafted, spec_accepted;
    int b_first, b_n, b_row;     /* this step: tokens at b_tok[b_first..+b_n), first logits row */
    /* set by the engine step when the task ends, published under mu */
    bool fin_set;
    bool cut;                    /* ended by a stop string (nothing after it is sent) */
    const char *fin;             /* finish reason */
    srv_apierr fin_err;          /* status != 0: failed */
} srv_slot;

/* ------------------------------------------------------------ metrics */

typedef struct srv_metrics {
    uint64_t requests[8];        /* by route (http.c enum route), then unknown */
    uint64_t status[6];          /* 2xx, 400, 401, 404/405, 413, 429/503 */
    uint64_t status_500;
    uint64_t prompt_tokens, cached_tokens, gen_tokens;
    uint64_t steps, batch_tokens, cancelled;
    uint64_t spec_drafted, spec_accepted; /* draft tokens verified / accepted */
    double busy_s;               /* engine time inside forward+sample */
    double tps;                  /* generated tokens/s over the last window */
    double win_t0;
    uint64_t win_tok;
} srv_metrics;

enum { SRV_LOADING, SRV_READY, SRV_FAILED, SRV_STOPPING };

struct srv {
    srv_params p;                /* strings below are owned copies */
    char *model_path, *alias, *host, *api_key, *draft_path;
    pthread_mutex_t mu;
    pthread_cond_t cv_engine;
    int state;                   /* mu */
    char load_error[ND_ERR_MSG];
    /* model: immutable once READY */
    model_t *m;
    tok_vocab *vocab;
    chat_tmpl tmpl;
    model_ctx *ctx;
    int64_t n_ctx;
    int32_t n_vocab;             /* rows of logits */
    int32_t *eog;                /* end-of-generation ids (ignore_eos masks them) */
    spec_draft_model *draft;     /* --draft, or NULL */
    spec_params spec;            /* the server's drafter, flags applied (kind SPEC_NONE: off) */
    int n_eog;
    char *model_id;
    /* engine */
    pthread_t engine;
    bool engine_running;
    bool stop;                   /* mu: engine should wind down */
    double stop_deadline;        /* mu */
    srv_slot *slots;
    int n_slots;
    srv_task *q_head, *q_tail;   /* mu */
    int q_len;                   /* mu */
    int n_busy;                  /* mu */
    float *logits;               /* [logits_rows][n_vocab] */
    int64_t logits_rows;         /* n_slots, grown when drafts need more rows */
    float *lp_scratch;           /* [n_vocab] */
    int32_t *b_tok, *b_seq;      /* [n_batch + n_slots] */
    int64_t *b_pos;
    bool *b_want;
    uint64_t next_id;            /* mu */
    smp_rng rng;                 /* mu */
    /* http */
    void *mhd;                   /* struct MHD_Daemon * */
    int listen_fd;
    int port;
    bool shut;
    int n_inflight;              /* mu: HTTP requests between first call and completion */
    srv_metrics met;             /* mu */
};

/* schema.c: JSON Schema (printed JSON) -> GBNF text appended to out. ND_EUNSUPPORTED /
 * ND_EINVAL / ND_EFORMAT with a message for schemas it cannot or will not convert. */
int srv_schema_to_gbnf(const char *schema_json, nd_buf *out, nd_err *err);

/* slots.c */
int srv_engine_start(srv_t *s, nd_err *err);
void srv_engine_stop(srv_t *s); /* joins; the caller set s->stop */
/* Tokenizes, checks lengths and ids, builds the constraint; takes r (emptied). */
int srv_task_new(srv_t *s, srv_req *r, srv_task **out, srv_apierr *e);
/* Queues t (the caller keeps one reference). 429 when the queue is full, 503 when the
 * server is not ready or stopping. */
int srv_task_submit(srv_t *s, srv_task *t, srv_apierr *e);
/* Drops a reference (mu held); frees at zero. */
void srv_task_unref_locked(srv_t *s, srv_task *t);
void srv_task_cancel_locked(srv_t *s, srv_task *t);

/* api.c: response bodies */
char *srv_json_models(const srv_t *s);
/* The whole non-stream answer (done, no error). */
char *srv_json_final(const srv_task *t);
/* Appends one SSE event "data: {chunk}\n\n" for a stream delta; role: first chunk;
 * finish: NULL or the finish reason; lp: a logprob entry (borrowed) or NULL. */
int srv_sse_delta(nd_buf *out, const srv_task *t, const char *text, size_t len, bool role,
                  const char *finish, const cJSON *lp);
/* The usage chunk (include_usage), an error event, and [DONE]. */
int srv_sse_usage(nd_buf *out, const srv_task *t);
int srv_sse_error(nd_buf *out, const srv_apierr *e);
int srv_sse_done(nd_buf *out);
/* Valid UTF-8 copy of bytes (invalid sequences and NUL become U+FFFD); nd_free. */
char *srv_utf8_clean(const char *s, size_t n);
/* One logprob entry for the chosen token and its top alternatives; lse = log-sum-exp of
 * the logits row. */
cJSON *srv_logprob_entry(const srv_t *s, const float *logits, int32_t tok, int top);

/* /tokenize {"content", "add_special", "parse_special", "with_pieces"} and
 * /detokenize {"tokens"}: response bodies, or NULL with e set. */
char *srv_json_tokenize(const srv_t *s, const char *body, size_t len, srv_apierr *e);
char *srv_json_detokenize(const srv_t *s, const char *body, size_t len, srv_apierr *e);

/* metrics.c */
char *srv_metrics_text(srv_t *s); /* takes mu */
void srv_metrics_status_locked(srv_t *s, int status);

/* http.c */
int srv_http_start(srv_t *s, nd_err *err);
void srv_http_quiesce(srv_t *s);
void srv_http_stop(srv_t *s);

#endif
