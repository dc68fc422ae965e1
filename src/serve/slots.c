/* The engine: tasks, slots and the continuous-batching loop (see serve.h for threads).
 *
 * One step = one model_forward_batch over
 *   - the pending token of every generating slot (one logits row each), then
 *   - prompt chunks of prefilling slots, oldest request first, while the step has room
 *     (n_batch tokens in all; a logits row only for a prompt's last token).
 * Between steps, under srv.mu: cancelled tasks leave their slots, queued tasks enter free
 * ones, output produced by the step is handed to the connection threads.
 *
 * A slot's `cache` mirrors its KV sequence token for token; a new task takes the idle slot
 * whose cache shares the longest prefix with its prompt and only the rest is computed.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sample/stop.h"
#include "serve/srv_internal.h"

/* ================================================================ tasks */

static void task_free(srv_task *t) {
    srv_req_free(&t->req);
    nd_free(t->prompt);
    grammar_free(t->gram);
    pthread_cond_destroy(&t->cv);
    nd_buf_free(&t->sse);
    nd_free(t->text);
    cJSON_Delete(t->logprobs);
    nd_free(t);
}

void srv_task_unref_locked(srv_t *s, srv_task *t) {
    (void)s;
    if (t && --t->refs == 0) task_free(t);
}

void srv_task_cancel_locked(srv_t *s, srv_task *t) {
    if (t->done || t->cancelled) return;
    t->cancelled = true;
    pthread_cond_signal(&s->cv_engine);
}

/* The request's constraint as a parsed grammar (NULL when unconstrained). */
static int task_grammar(const srv_req *r, grammar **out, srv_apierr *e) {
    *out = NULL;
    nd_err err = {0};
    const char *param = "grammar";
    nd_buf gb = {0};
    const char *text = NULL;
    size_t len = 0;
    if (r->grammar) {
        text = r->grammar;
        len = strlen(text);
    } else if (r->rf != SRV_RF_TEXT) { /* json_object: schema NULL = any object */
        param = r->rf == SRV_RF_JSON_OBJECT ? "response_format" : "response_format.json_schema.schema";
        int rc = srv_schema_to_gbnf(r->rf == SRV_RF_JSON_SCHEMA ? r->schema : NULL, &gb, &err);
        if (rc) {
            nd_buf_free(&gb);
            if (rc == ND_ENOMEM) return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
            return srv_fail(e, 400, rc == ND_EUNSUPPORTED ? "unsupported_schema" : "invalid_schema", param,
                            "json_schema: %s", err.msg);
        }
        text = gb.data;
        len = gb.len;
    } else {
        return 0;
    }
    *out = grammar_parse(text, len, NULL, &err);
    nd_buf_free(&gb);
    if (*out) return 0;
    if (err.code == ND_ENOMEM) return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    return srv_fail(e, 400, "invalid_grammar", param, "%s", err.msg);
}

static int task_tokens(srv_t *s, srv_task *t, srv_apierr *e) {
    const srv_req *r = &t->req;
    nd_err err = {0};
    if (r->prompt_ids) {
        for (size_t i = 0; i < r->n_prompt_ids; i++)
            if (r->prompt_ids[i] >= tok_n_vocab(s->vocab))
                return srv_fail(e, 400, "invalid_value", "prompt", "prompt[%zu]: token id %d is not in the vocabulary (%d)",
                                i, r->prompt_ids[i], tok_n_vocab(s->vocab));
        if (!(t->prompt = nd_malloc(r->n_prompt_ids * sizeof *t->prompt)))
            return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
        memcpy(t->prompt, r->prompt_ids, r->n_prompt_ids * sizeof *t->prompt);
        t->n_prompt = r->n_prompt_ids;
    } else {
        nd_buf text = {0};
        const char *p = r->prompt;
        size_t n = r->prompt_len;
        if (r->ep == SRV_EP_CHAT) {
            if (chat_format(s->tmpl, r->msgs, r->n_msgs, true, &text, &err)) {
                nd_buf_free(&text);
                return srv_fail(e, err.code == ND_ENOMEM ? 500 : 400, "invalid_value", "messages", "%s", err.msg);
            }
            p = text.data ? text.data : "";
            n = text.len;
        }
        int rc = tok_encode(s->vocab, p, n, true, true, &t->prompt, &t->n_prompt, &err);
        nd_buf_free(&text);
        if (rc) return srv_fail(e, rc == ND_ENOMEM ? 500 : 400, "invalid_value", r->ep == SRV_EP_CHAT ? "messages" : "prompt",
                                "tokenizing: %s", err.msg);
    }
    if (t->n_prompt == 0)
        return srv_fail(e, 400, "invalid_value", r->ep == SRV_EP_CHAT ? "messages" : "prompt", "the prompt is empty");
    if ((int64_t)t->n_prompt >= s->n_ctx)
        return srv_fail(e, 400, "context_length_exceeded", r->ep == SRV_EP_CHAT ? "messages" : "prompt",
                        "the prompt has %zu tokens but a slot's context holds %lld (start the server with a larger -c)",
                        t->n_prompt, (long long)s->n_ctx);
    return 0;
}

int srv_task_new(srv_t *s, srv_req *r, srv_task **out, srv_apierr *e) {
    *out = NULL;
    if (r->model && strcmp(r->model, s->model_id) != 0)
        return srv_fail(e, 404, "model_not_found", "model", "model '%.200s' does not exist (this server has '%s')",
                        r->model, s->model_id);
    srv_task *t = nd_calloc(1, sizeof *t);
    if (!t) return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    pthread_cond_init(&t->cv, NULL);
    t->req = *r;
    memset(r, 0, sizeof *r);
    t->refs = 1;
    t->model_id = s->model_id;
    t->created = (int64_t)time(NULL);
    if (task_tokens(s, t, e) || task_grammar(&t->req, &t->gram, e)) {
        task_free(t);
        return -1;
    }
    t->max_gen = t->req.max_tokens > 0 ? t->req.max_tokens : INT64_MAX;
    pthread_mutex_lock(&s->mu);
    uint64_t rnd = smp_rng_next(&s->rng);
    if (!t->req.seed_set) t->req.sp.seed = smp_rng_next(&s->rng);
    snprintf(t->id, sizeof t->id, "%s-%016llx%llu", t->req.ep == SRV_EP_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)rnd, (unsigned long long)s->next_id++);
    pthread_mutex_unlock(&s->mu);
    *out = t;
    return 0;
}

int srv_task_submit(srv_t *s, srv_task *t, srv_apierr *e) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->state != SRV_READY) {
        rc = srv_fail(e, 503, s->state == SRV_STOPPING ? "shutting_down" : "unavailable", NULL,
                      s->state == SRV_STOPPING ? "the server is shutting down" : "the model is not loaded");
    } else if (s->q_len >= s->p.max_queue) {
        rc = srv_fail(e, 429, "queue_full", NULL, "%d requests are already waiting for a slot; retry later", s->q_len);
    } else {
        t->refs++; /* the engine's */
        t->t_queued = nd_time_s();
        t->next = NULL;
        if (s->q_tail) s->q_tail->next = t;
        else s->q_head = t;
        s->q_tail = t;
        s->q_len++;
        pthread_cond_signal(&s->cv_engine);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ================================================================ slots */

static int cache_push(srv_slot *sl, int32_t tok) {
    if (sl->n_cache == sl->cap_cache) {
        size_t cap = sl->cap_cache ? 2 * sl->cap_cache : 256;
        int32_t *p = nd_realloc(sl->cache, cap * sizeof *p);
        if (!p) return ND_ENOMEM;
        sl->cache = p;
        sl->cap_cache = cap;
    }
    sl->cache[sl->n_cache++] = tok;
    return 0;
}

static void slot_clear_task_state(srv_slot *sl) {
    smp_free(sl->smp);
    sl->smp = NULL;
    grammar_state_free(sl->gs);
    sl->gs = NULL;
    cJSON_Delete(sl->lp);
    sl->lp = NULL;
    sl->gen.len = 0;
    sl->out.len = 0;
    sl->sent = 0;
    sl->n_gen = 0;
    sl->generating = false;
    sl->role_sent = false;
    sl->fin_set = false;
    sl->cut = false;
    sl->fin = NULL;
    memset(&sl->fin_err, 0, sizeof sl->fin_err);
}

/* Completes t under mu (the engine's reference is dropped). */
static void task_complete_locked(srv_t *s, srv_task *t) {
    t->done = true;
    pthread_cond_broadcast(&t->cv);
    srv_task_unref_locked(s, t);
}

/* Ends a task that never produced output (queued, or cut) with an error. */
static void task_fail_locked(srv_t *s, srv_task *t, int status, const char *code, const char *msg) {
    srv_fail(&t->err, status, code, NULL, "%s", msg);
    if (t->req.stream) {
        srv_sse_error(&t->sse, &t->err);
        srv_sse_done(&t->sse);
    }
    task_complete_locked(s, t);
}

/* Releases a busy slot whose task ended (published or cancelled). mu held. */
static void slot_release_locked(srv_t *s, srv_slot *sl) {
    sl->task = NULL;
    sl->t_used = nd_time_s();
    slot_clear_task_state(sl);
    s->n_busy--;
}

/* Longest common prefix of the slot's cache and the prompt. */
static size_t common_prefix(const srv_slot *sl, const srv_task *t) {
    size_t n = sl->n_cache < t->n_prompt ? sl->n_cache : t->n_prompt, i = 0;
    while (i < n && sl->cache[i] == t->prompt[i]) i++;
    return i;
}

/* Puts t into slot sl (mu held): prefix reuse, sampler, grammar state. */
static int slot_assign_locked(srv_t *s, srv_slot *sl, srv_task *t) {
    nd_err err = {0};
    size_t keep = common_prefix(sl, t);
    if (keep >= t->n_prompt) keep = t->n_prompt - 1; /* the last prompt token gives the logits */
    if (model_ctx_seq_truncate(s->ctx, sl->id, (int64_t)keep, &err)) keep = 0;
    sl->n_cache = keep;
    slot_clear_task_state(sl);
    if (!(sl->smp = smp_new(&t->req.sp, s->n_vocab, &err))) return err.code;
    for (size_t i = 0; i < t->n_prompt; i++) smp_accept(sl->smp, t->prompt[i]);
    if (t->gram && !(sl->gs = grammar_state_new(t->gram, &err))) return err.code;
    if (t->req.logprobs >= 0 && !t->req.stream && !(sl->lp = cJSON_CreateArray())) return ND_ENOMEM;
    tok_stream_init(&sl->ts, s->vocab, 0);
    sl->task = t;
    sl->t_start = nd_time_s();
    t->n_cached = (int64_t)keep;
    s->met.prompt_tokens += t->n_prompt;
    s->met.cached_tokens += keep;
    s->n_busy++;
    return 0;
}

static srv_slot *pick_slot(srv_t *s, const srv_task *t) {
    srv_slot *best = NULL;
    size_t best_lcp = 0;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (sl->task) continue;
        size_t lcp = common_prefix(sl, t);
        if (!best || lcp > best_lcp || (lcp == best_lcp && sl->t_used < best->t_used)) {
            best = sl;
            best_lcp = lcp;
        }
    }
    return best;
}

/* Between steps (mu held): cancellations, shutdown, admissions. */
static void engine_admit_locked(srv_t *s) {
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (sl->task && sl->task->cancelled) {
            s->met.cancelled++;
            srv_task *t = sl->task;
            slot_release_locked(s, sl);
            task_complete_locked(s, t);
        }
    }
    if (s->stop) {
        while (s->q_head) {
            srv_task *t = s->q_head;
            s->q_head = t->next;
            s->q_len--;
            task_fail_locked(s, t, 503, "shutting_down", "the server is shutting down");
        }
        s->q_tail = NULL;
        if (nd_time_s() >= s->stop_deadline)
            for (int i = 0; i < s->n_slots; i++) {
                srv_slot *sl = &s->slots[i];
                if (!sl->task) continue;
                srv_task *t = sl->task;
                slot_release_locked(s, sl);
                task_fail_locked(s, t, 503, "shutting_down", "the server is shutting down; generation was cut");
            }
        return;
    }
    while (s->q_head) {
        srv_task *t = s->q_head;
        srv_slot *sl = t->cancelled ? NULL : pick_slot(s, t);
        if (!sl && !t->cancelled) break;
        s->q_head = t->next;
        if (!s->q_head) s->q_tail = NULL;
        s->q_len--;
        if (t->cancelled) {
            s->met.cancelled++;
            task_complete_locked(s, t);
            continue;
        }
        int rc = slot_assign_locked(s, sl, t);
        if (rc) {
            slot_clear_task_state(sl);
            task_fail_locked(s, t, 500, "out_of_memory", "out of memory setting up the slot");
        }
    }
}

/* ================================================================ generation */

static void slot_finish(srv_slot *sl, const char *why) {
    if (!sl->fin_set) {
        sl->fin_set = true;
        sl->fin = why;
    }
}

static void slot_fail(srv_slot *sl, int status, const char *code, const char *msg) {
    srv_fail(&sl->fin_err, status, code, NULL, "%s", msg);
    slot_finish(sl, "stop");
}

/* Emits gen[sent..upto) (and a logprob entry) as a stream chunk or into the non-stream
 * state. */
static void slot_emit(srv_slot *sl, size_t upto, cJSON *lp) {
    srv_task *t = sl->task;
    size_t n = upto > sl->sent ? upto - sl->sent : 0;
    if (t->req.stream) {
        bool role = t->req.ep == SRV_EP_CHAT && !sl->role_sent;
        if (n || role || lp) {
            if (srv_sse_delta(&sl->out, t, sl->gen.data + sl->sent, n, role, NULL, lp))
                slot_fail(sl, 500, "out_of_memory", "out of memory");
            sl->role_sent = true;
        }
        cJSON_Delete(lp);
    } else if (lp) {
        cJSON_AddItemToArray(sl->lp, lp);
    }
    sl->sent += n;
}

static void mask_eog(const srv_t *s, float *logits) {
    for (int i = 0; i < s->n_eog; i++) logits[s->eog[i]] = -INFINITY;
}

/* Samples the next token of a slot from its logits row and handles what it means. */
static void slot_sample(srv_t *s, srv_slot *sl, float *logits) {
    srv_task *t = sl->task;
    const srv_req *r = &t->req;
    nd_err err = {0};
    if (r->ignore_eos && !sl->gs) mask_eog(s, logits);
    int32_t tok = sl->gs ? smp_sample_constrained(sl->smp, logits, sl->gs, s->vocab, &err) : smp_sample(sl->smp, logits);
    if (tok < 0) {
        slot_fail(sl, 400, "grammar_dead_end",
                  "the grammar cannot be continued with this model's vocabulary (no allowed token)");
        return;
    }
    cJSON *lp = r->logprobs >= 0 ? srv_logprob_entry(s, logits, tok, r->logprobs) : NULL;
    if (tok >= tok_n_vocab(s->vocab) || tok_is_eog(s->vocab, tok)) {
        cJSON_Delete(lp);
        slot_finish(sl, "stop");
        return;
    }
    smp_accept(sl->smp, tok);
    if (sl->gs && grammar_state_accept_token(sl->gs, s->vocab, tok, &err)) {
        cJSON_Delete(lp);
        slot_fail(sl, 500, "grammar_error", err.msg);
        return;
    }
    sl->n_gen++;
    size_t before = sl->gen.len, safe;
    if (tok_stream_push(&sl->ts, tok, &sl->gen, &err)) {
        cJSON_Delete(lp);
        slot_fail(sl, 500, "detokenize_error", err.msg);
        return;
    }
    size_t from = before > SRV_MAX_STOP_LEN ? before - SRV_MAX_STOP_LEN : 0; /* a stop may straddle tokens */
    long at = smp_stop_scan((const char *const *)r->stops, r->n_stops, sl->gen.data, sl->gen.len, from, &safe);
    if (at >= 0) {
        sl->gen.len = (size_t)at;
        sl->cut = true;
        slot_emit(sl, sl->gen.len, lp);
        slot_finish(sl, "stop");
        return;
    }
    slot_emit(sl, safe, lp);
    if (sl->n_gen >= t->max_gen) slot_finish(sl, "length");
    else if (sl->gs && !grammar_state_can_continue(sl->gs)) slot_finish(sl, "stop");
    else if ((int64_t)sl->n_cache >= s->n_ctx) slot_finish(sl, "length");
    else sl->pending = tok;
}

/* The tail of a finished task: remaining text, the final chunk(s). */
static void slot_wrap_up(srv_slot *sl) {
    srv_task *t = sl->task;
    nd_err err = {0};
    if (sl->fin_err.status == 0 && !sl->cut) { /* held UTF-8 bytes and held stop prefixes */
        if (tok_stream_flush(&sl->ts, &sl->gen, &err) == 0) slot_emit(sl, sl->gen.len, NULL);
    }
    if (!t->req.stream) return;
    if (sl->fin_err.status) {
        srv_sse_error(&sl->out, &sl->fin_err);
    } else {
        srv_sse_delta(&sl->out, t, "", 0, t->req.ep == SRV_EP_CHAT && !sl->role_sent, sl->fin, NULL);
        if (t->req.include_usage) {
            t->n_gen = sl->n_gen; /* the engine owns these until done; read by the builder */
            srv_sse_usage(&sl->out, t);
        }
    }
    srv_sse_done(&sl->out);
}

/* Under mu after a step: hand output to the connection threads, complete finished tasks. */
static void engine_publish_locked(srv_t *s) {
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        srv_task *t = sl->task;
        if (!t) continue;
        if (sl->out.len) {
            if (nd_buf_append(&t->sse, sl->out.data, sl->out.len) == 0) pthread_cond_broadcast(&t->cv);
            sl->out.len = 0;
        }
        if (!sl->fin_set) continue;
        t->finish = sl->fin;
        t->n_gen = sl->n_gen;
        t->err = sl->fin_err;
        if (!t->req.stream && !t->err.status) {
            t->text = nd_strndup(sl->gen.data ? sl->gen.data : "", sl->gen.len);
            t->logprobs = sl->lp;
            sl->lp = NULL;
            if (!t->text) srv_fail(&t->err, 500, "out_of_memory", NULL, "out of memory");
        }
        slot_release_locked(s, sl);
        task_complete_locked(s, t);
    }
}

static void sort_by_start(srv_t *s, int *idx, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && s->slots[idx[j]].t_start < s->slots[idx[j - 1]].t_start; j--) {
            int x = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = x;
        }
}

/* One forward pass over all busy slots (no lock held; only the engine touches slots). */
static void engine_step(srv_t *s) {
    int n = 0, n_dec = 0, pre[1024], n_pre = 0;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (!sl->task || sl->fin_set) continue;
        if (sl->generating) {
            s->b_tok[n] = sl->pending;
            s->b_seq[n] = sl->id;
            s->b_pos[n] = (int64_t)sl->n_cache;
            s->b_want[n++] = true;
            n_dec++;
        } else {
            pre[n_pre++] = i;
        }
    }
    sort_by_start(s, pre, n_pre);
    int room = s->p.n_batch - n_dec;
    if (room < 1) room = 1;
    for (int k = 0; k < n_pre && room > 0; k++) {
        srv_slot *sl = &s->slots[pre[k]];
        size_t left = sl->task->n_prompt - sl->n_cache, take = left < (size_t)room ? left : (size_t)room;
        for (size_t j = 0; j < take; j++) {
            size_t p = sl->n_cache + j;
            s->b_tok[n] = sl->task->prompt[p];
            s->b_seq[n] = sl->id;
            s->b_pos[n] = (int64_t)p;
            s->b_want[n++] = p == sl->task->n_prompt - 1;
        }
        room -= (int)take;
    }
    if (n == 0) return;
    double t0 = nd_time_s();
    nd_err err = {0};
    if (model_forward_batch(s->ctx, n, s->b_tok, s->b_seq, s->b_pos, s->b_want, s->logits, &err)) {
        for (int i = 0; i < n; i++) {
            srv_slot *sl = &s->slots[s->b_seq[i]];
            if (sl->fin_set) continue;
            sl->n_cache = 0;
            model_ctx_seq_truncate(s->ctx, sl->id, 0, NULL);
            char msg[ND_ERR_MSG + 32];
            snprintf(msg, sizeof msg, "forward pass failed: %s", err.msg);
            slot_fail(sl, 500, "internal_error", msg);
        }
        return;
    }
    int row = 0, n_gen = 0;
    for (int i = 0; i < n; i++) {
        srv_slot *sl = &s->slots[s->b_seq[i]];
        if (cache_push(sl, s->b_tok[i])) {
            if (!sl->fin_set) slot_fail(sl, 500, "out_of_memory", "out of memory");
            continue;
        }
        if (!s->b_want[i]) continue;
        float *lg = s->logits + (size_t)row++ * (size_t)s->n_vocab;
        if (sl->fin_set) continue;
        sl->generating = true;
        int64_t before = sl->n_gen;
        slot_sample(s, sl, lg);
        n_gen += (int)(sl->n_gen - before);
    }
    double dt = nd_time_s() - t0;
    pthread_mutex_lock(&s->mu);
    s->met.steps++;
    s->met.batch_tokens += (uint64_t)n;
    s->met.gen_tokens += (uint64_t)n_gen;
    s->met.busy_s += dt;
    s->met.win_tok += (uint64_t)n_gen;
    double now = nd_time_s();
    if (s->met.win_t0 == 0) s->met.win_t0 = t0;
    if (now - s->met.win_t0 >= 1.0) {
        s->met.tps = (double)s->met.win_tok / (now - s->met.win_t0);
        s->met.win_tok = 0;
        s->met.win_t0 = now;
    }
    pthread_mutex_unlock(&s->mu);
}

static void *engine_main(void *arg) {
    srv_t *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        engine_admit_locked(s);
        if (s->stop && s->n_busy == 0) break;
        if (s->n_busy == 0) {
            pthread_cond_wait(&s->cv_engine, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        engine_step(s);
        if (s->p.test_step_delay_ms > 0) {
            struct timespec ts = {s->p.test_step_delay_ms / 1000, (long)(s->p.test_step_delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].task && s->slots[i].fin_set) slot_wrap_up(&s->slots[i]);
        pthread_mutex_lock(&s->mu);
        engine_publish_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int srv_engine_start(srv_t *s, nd_err *err) {
    if (pthread_create(&s->engine, NULL, engine_main, s)) return nd_seterr(err, ND_ENOMEM, "cannot start the engine thread");
    s->engine_running = true;
    return 0;
}

void srv_engine_stop(srv_t *s) {
    if (!s->engine_running) return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv_engine);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine, NULL);
    s->engine_running = false;
}
