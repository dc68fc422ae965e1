/* Server lifecycle: parameters, listen, model load, shutdown. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve/srv_internal.h"

srv_params srv_default_params(void) {
    return (srv_params){.host = "127.0.0.1", .port = 8080, .n_parallel = 4, .shutdown_grace = 5, .draft_p_min = -1};
}

/* The server's drafter from the parameters: defaults of its kind, then the flags. */
static int resolve_spec(const srv_params *q, spec_params *out, nd_err *err) {
    int kind = q->spec_kind;
    if (q->draft_path && *q->draft_path && kind == SPEC_NONE) kind = SPEC_DRAFT;
    if (kind != SPEC_NONE && kind != SPEC_DRAFT && kind != SPEC_NGRAM)
        return nd_seterr(err, ND_EINVAL, "speculative decoding: unknown drafter kind %d", kind);
    if (kind == SPEC_DRAFT && !(q->draft_path && *q->draft_path))
        return nd_seterr(err, ND_EINVAL, "speculative decoding with a draft model needs --draft FILE");
    if (kind == SPEC_NGRAM && q->draft_path && *q->draft_path)
        return nd_seterr(err, ND_EINVAL, "--draft and --spec ngram exclude each other");
    spec_params p = spec_default_params(kind == SPEC_NONE ? SPEC_DRAFT : (spec_kind)kind);
    p.kind = (spec_kind)kind;
    if (q->draft_max) p.draft_max = q->draft_max;
    if (q->draft_p_min >= 0) p.p_min = q->draft_p_min;
    p.draft_min = q->draft_min;
    p.adaptive = !q->draft_fixed;
    p.draft_threads = q->draft_threads ? q->draft_threads : q->n_threads;
    p.draft_async = q->draft_async;
    if (q->ngram_min) p.ngram_min = q->ngram_min;
    if (q->ngram_max) p.ngram_max = q->ngram_max;
    if (p.draft_max < 1 || p.draft_max > SPEC_MAX_DRAFT || p.draft_min < 0 || p.draft_min > p.draft_max)
        return nd_seterr(err, ND_EINVAL, "draft length: need 1 <= --draft-max <= %d and 0 <= --draft-min <= --draft-max "
                         "(got %d, %d)", SPEC_MAX_DRAFT, p.draft_max, p.draft_min);
    if (!(p.p_min <= 1)) return nd_seterr(err, ND_EINVAL, "--draft-p-min must be in [0, 1]");
    if (p.ngram_min < 1 || p.ngram_max < p.ngram_min || p.ngram_max > 16)
        return nd_seterr(err, ND_EINVAL, "n-gram sizes: need 1 <= --ngram-min <= --ngram-max <= 16 (got %d, %d)",
                         p.ngram_min, p.ngram_max);
    if (p.draft_threads < 0) return nd_seterr(err, ND_EINVAL, "--draft-threads must be positive");
    *out = p;
    return 0;
}

static char *dup_or_null(const char *s) { return s ? nd_strdup(s) : NULL; }

/* "path/to/name.gguf" -> "name" */
static char *model_name(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    return nd_strndup(b, n);
}

srv_t *srv_new(const srv_params *p, nd_err *err) {
    if (!p || !p->model_path || !*p->model_path) {
        nd_seterr(err, ND_EINVAL, "a model (-m FILE) is required");
        return NULL;
    }
    srv_params q = *p;
    if (!q.n_parallel) q.n_parallel = 4;
    if (!q.n_batch) q.n_batch = 256;
    if (!q.max_queue) q.max_queue = 64;
    if (!q.max_conns) q.max_conns = 128;
    if (!q.max_body) q.max_body = (size_t)4 << 20;
    if (!q.timeout_s) q.timeout_s = 30;
    if (q.shutdown_grace < 0) q.shutdown_grace = 5;
    if (!q.kv_type) q.kv_type = ND_TYPE_F16;
    if (q.n_parallel < 1 || q.n_parallel > 256 || q.n_batch < 1 || q.n_batch > 65536 || q.max_queue < 1 ||
        q.max_conns < 1 || q.timeout_s < 1 || q.port < 0 || q.port > 65535 || q.n_ctx < 0 || q.n_threads < 0 ||
        (q.kv_type != ND_TYPE_F16 && q.kv_type != ND_TYPE_F32)) {
        nd_seterr(err, ND_EINVAL, "server parameters out of range (parallel 1..256, batch 1..65536, port 0..65535)");
        return NULL;
    }
    spec_params sp;
    if (resolve_spec(&q, &sp, err)) return NULL;
    srv_t *s = nd_calloc(1, sizeof *s);
    if (!s) {
        nd_seterr(err, ND_ENOMEM, "out of memory");
        return NULL;
    }
    s->p = q;
    s->spec = sp;
    s->listen_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_engine, NULL);
    s->state = SRV_LOADING;
    s->model_path = nd_strdup(q.model_path);
    s->draft_path = dup_or_null(sp.kind == SPEC_DRAFT ? q.draft_path : NULL);
    s->host = nd_strdup(q.host ? q.host : "127.0.0.1");
    s->api_key = dup_or_null(q.api_key && *q.api_key ? q.api_key : NULL);
    s->model_id = q.alias && *q.alias ? nd_strdup(q.alias) : model_name(q.model_path);
    if (!s->model_path || !s->host || !s->model_id || (q.api_key && *q.api_key && !s->api_key) ||
        (sp.kind == SPEC_DRAFT && !s->draft_path)) {
        srv_free(s);
        nd_seterr(err, ND_ENOMEM, "out of memory");
        return NULL;
    }
    smp_rng_seed(&s->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s);
    return s;
}

int srv_listen(srv_t *s, nd_err *err) { return srv_http_start(s, err); }

int srv_port(const srv_t *s) { return s ? s->port : 0; }

static chat_tmpl pick_template(const srv_t *s, const gguf_ctx *g) {
    gguf_str j;
    if (!gguf_get_str(g, "tokenizer.chat_template", &j, NULL)) {
        char *z = nd_strndup(j.ptr, j.len);
        chat_tmpl t = z ? chat_tmpl_detect(z) : CHAT_TMPL_NONE;
        nd_free(z);
        if (t != CHAT_TMPL_NONE) return t;
    }
    return chat_tmpl_for_arch(s->m->hp.arch_name, tok_find(s->vocab, "<|eot_id|>", 10) >= 0);
}

static int load(srv_t *s, nd_err *err) {
    gguf_ctx *g = gguf_open(s->model_path, err);
    if (!g) return err->code;
    if (!(s->vocab = tok_load(g, err))) {
        gguf_close(g);
        return nd_preerr(err, "tokenizer: ");
    }
    const model_load_params lp = {.weights = (model_weights)s->p.weights, .no_repack = s->p.no_repack};
    if (!(s->m = model_load_gguf_ex(g, &lp, err))) {
        gguf_close(g);
        return err->code;
    }
    if (tok_n_vocab(s->vocab) > s->m->hp.n_vocab)
        return nd_seterr(err, ND_EFORMAT, "the tokenizer has %d tokens but the model only %lld rows of logits",
                         tok_n_vocab(s->vocab), (long long)s->m->hp.n_vocab);
    s->tmpl = pick_template(s, g);
    if (s->draft_path && !(s->draft = spec_draft_model_load(s->draft_path, s->vocab, s->m->hp.n_vocab, err)))
        return err->code;
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = s->p.n_ctx;
    cp.n_threads = s->p.n_threads;
    cp.kv_type = (uint32_t)s->p.kv_type;
    cp.n_seq = s->p.n_parallel;
    if (!(s->ctx = model_ctx_new(s->m, &cp, err))) return err->code;
    s->n_ctx = model_ctx_n_ctx(s->ctx);
    s->n_vocab = (int32_t)s->m->hp.n_vocab;
    s->n_slots = s->p.n_parallel;
    size_t nb = (size_t)s->p.n_batch + (size_t)s->n_slots;
    s->slots = nd_calloc((size_t)s->n_slots, sizeof *s->slots);
    s->logits = nd_malloc((size_t)s->n_slots * (size_t)s->n_vocab * sizeof(float));
    s->logits_rows = s->n_slots;
    s->b_tok = nd_malloc(nb * sizeof *s->b_tok);
    s->b_seq = nd_malloc(nb * sizeof *s->b_seq);
    s->b_pos = nd_malloc(nb * sizeof *s->b_pos);
    s->b_want = nd_malloc(nb * sizeof *s->b_want);
    s->eog = nd_malloc((size_t)tok_n_vocab(s->vocab) * sizeof *s->eog);
    if (!s->slots || !s->logits || !s->b_tok || !s->b_seq || !s->b_pos || !s->b_want || !s->eog)
        return nd_seterr(err, ND_ENOMEM, "out of memory for %d slots", s->n_slots);
    for (int32_t i = 0; i < tok_n_vocab(s->vocab); i++)
        if (tok_is_eog(s->vocab, i)) s->eog[s->n_eog++] = i;
    for (int i = 0; i < s->n_slots; i++) {
        s->slots[i].id = i;
        s->slots[i].srv = s;
    }
    return srv_engine_start(s, err);
}

int srv_load(srv_t *s, nd_err *err) {
    if (s->p.test_load_delay_ms > 0) {
        struct timespec ts = {s->p.test_load_delay_ms / 1000, (long)(s->p.test_load_delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    double t0 = nd_time_s();
    int rc = load(s, err);
    pthread_mutex_lock(&s->mu);
    if (rc) {
        snprintf(s->load_error, sizeof s->load_error, "%s", err ? err->msg : "error");
        if (s->state == SRV_LOADING) s->state = SRV_FAILED;
    } else if (s->state == SRV_LOADING) {
        s->state = SRV_READY;
    }
    pthread_mutex_unlock(&s->mu);
    if (!rc)
        nd_log(&s->p.log, ND_LOG_INFO, "model %s (%s, %lld layers, vocab %d, template %s) loaded in %.2fs; %d slots x %lld "
               "positions, %d threads", s->model_id, s->m->hp.arch_name, (long long)s->m->hp.n_layer, s->n_vocab,
               chat_tmpl_name(s->tmpl), nd_time_s() - t0, s->n_slots, (long long)s->n_ctx, model_ctx_n_threads(s->ctx));
    if (!rc && s->spec.kind != SPEC_NONE)
        nd_log(&s->p.log, ND_LOG_INFO, "speculative decoding by default: %s%s, draft-max %d%s",
               s->spec.kind == SPEC_NGRAM ? "n-gram lookup" : "draft model ",
               s->spec.kind == SPEC_DRAFT ? s->draft_path : "", s->spec.draft_max, s->spec.adaptive ? " (adaptive)" : "");
    return rc;
}

void srv_shutdown(srv_t *s) {
    if (!s || s->shut) return;
    s->shut = true;
    srv_http_quiesce(s); /* no new connections */
    pthread_mutex_lock(&s->mu);
    s->state = SRV_STOPPING;
    s->stop = true;
    s->stop_deadline = nd_time_s() + s->p.shutdown_grace;
    pthread_cond_signal(&s->cv_engine);
    pthread_mutex_unlock(&s->mu);
    srv_engine_stop(s);  /* finishes or cuts running generations, fails queued ones */
    srv_http_stop(s);    /* connection threads drain their output, then exit */
}

void srv_free(srv_t *s) {
    if (!s) return;
    srv_shutdown(s);
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        smp_free(sl->smp);
        grammar_state_free(sl->gs);
        cJSON_Delete(sl->lp);
        nd_buf_free(&sl->gen);
        nd_buf_free(&sl->out);
        nd_free(sl->cache);
        spec_seq_free(sl->spec);
        grammar_state_free(sl->gs_tmp);
    }
    nd_free(s->slots);
    nd_free(s->logits);
    nd_free(s->b_tok);
    nd_free(s->b_seq);
    nd_free(s->b_pos);
    nd_free(s->b_want);
    nd_free(s->eog);
    model_ctx_free(s->ctx);
    spec_draft_model_free(s->draft);
    if (s->m) model_free(s->m);
    tok_free(s->vocab);
    pthread_cond_destroy(&s->cv_engine);
    pthread_mutex_destroy(&s->mu);
    nd_free(s->model_path);
    nd_free(s->draft_path);
    nd_free(s->host);
    nd_free(s->api_key);
    nd_free(s->model_id);
    nd_free(s);
}
