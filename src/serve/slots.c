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
 *
 * Speculative decoding. A generating slot whose task drafts (task.spec) proposes up to k
 * tokens (spec_draft: n-gram lookup or the shared draft model in the slot's own draft
 * context) and puts [pending, draft...] at positions n_cache.. into the step, a logits row
 * for each. The drafts come out of the step's n_batch budget (at most half of what is left
 * when prompts wait; never past the GEMM threshold, see engine_drafts), and k is also
 * bounded by the slot's context and max_tokens.
 * spec_verify then yields the accepted drafts plus one token, taken one by one exactly as
 * sampled tokens are (EOG, grammar, stop strings, limits, logprobs from their own rows).
 * Rollback: the cache keeps pending + the accepted drafts, and the KV sequence is truncated
 * to it (model_ctx_seq_truncate); the next step writes from there. A grammar works under
 * greedy verification: drafts are filtered by a grammar scratch state (spec_params.allow)
 * and each row is picked by constrained sampling (spec_params.pick) on another scratch
 * copy advanced over the tokens picked before it; the slot's own grammar state advances
 * only as the tokens are taken. Sampled (temperature > 0) requests with a grammar decode
 * plainly (srv_task_new refuses an explicit "speculative" for them).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h" /* K_GEMM_MIN_TOKENS */
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

/* The drafter the request gets: its "speculative" field against what the server has. */
static int task_spec(const srv_t *s, srv_task *t, srv_apierr *e) {
    const srv_req *r = &t->req;
    spec_kind kind = SPEC_NONE;
    switch (r->spec) {
    case SRV_SPEC_DEFAULT: kind = s->spec.kind; break;
    case SRV_SPEC_OFF: kind = SPEC_NONE; break;
    case SRV_SPEC_SERVER:
        if (s->spec.kind == SPEC_NONE)
            return srv_fail(e, 400, "speculative_unavailable", "speculative",
                            "'speculative' asks for the server's drafter, but this server was started without "
                            "--draft FILE or --spec ngram (ask for \"ngram\" instead)");
        kind = s->spec.kind;
        break;
    case SRV_SPEC_NGRAM: kind = SPEC_NGRAM; break;
    case SRV_SPEC_DRAFT:
        if (!s->draft)
            return srv_fail(e, 400, "speculative_unavailable", "speculative",
                            "speculative \"draft\" needs a draft model, but this server was started without "
                            "--draft FILE (use \"ngram\", or restart the server with --draft)");
        kind = SPEC_DRAFT;
        break;
    }
    t->spec = spec_default_params(SPEC_NONE);
    if (kind == SPEC_NONE) return 0;
    if (t->gram && r->sp.temp > 0) { /* constrained sampling has no exact verification rule here */
        if (r->spec == SRV_SPEC_DEFAULT) return 0;
        return srv_fail(e, 400, "unsupported_combination", "speculative",
                        "speculative decoding with a grammar or a JSON response_format needs temperature 0; "
                        "set \"temperature\": 0 or drop 'speculative'");
    }
    spec_params p = kind == s->spec.kind ? s->spec : spec_default_params(kind);
    p.adaptive = s->spec.adaptive;
    p.ngram_min = s->spec.ngram_min, p.ngram_max = s->spec.ngram_max;
    p.draft_threads = s->spec.draft_threads;
    p.draft_async = s->spec.draft_async;
    if (r->spec_draft_max) p.draft_max = r->spec_draft_max;
    if (r->spec_p_min >= 0) p.p_min = r->spec_p_min;
    if (p.draft_min > p.draft_max) p.draft_min = p.draft_max;
    p.n_ctx = s->n_ctx;
    t->spec = p;
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
    if (task_tokens(s, t, e) || task_grammar(&t->req, &t->gram, e) || task_spec(s, t, e)) {
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
    grammar_state_free(sl->gs_tmp);
    sl->gs_tmp = NULL;
    sl->spec_on = sl->spec_begun = false;
    sl->n_draft = 0;
    sl->spec_drafted = sl->spec_accepted = 0;
    memset(&sl->pick_err, 0, sizeof sl->pick_err);
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
    sl->spec_on = t->spec.kind != SPEC_NONE;
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

static const char dead_end_msg[] = "the grammar cannot be continued with this model's vocabulary (no allowed token)";

/* Takes tok, picked from the logits row, as the slot's next token: EOG, grammar, text,
 * stop strings, limits; it becomes pending unless the task ends. smp_done: the chain has
 * accepted it already (speculative verification). */
static void slot_take(srv_t *s, srv_slot *sl, int32_t tok, const float *logits, bool smp_done) {
    srv_task *t = sl->task;
    const srv_req *r = &t->req;
    nd_err err = {0};
    cJSON *lp = r->logprobs >= 0 ? srv_logprob_entry(s, logits, tok, r->logprobs) : NULL;
    if (tok >= tok_n_vocab(s->vocab) || tok_is_eog(s->vocab, tok)) {
        cJSON_Delete(lp);
        slot_finish(sl, "stop");
        return;
    }
    if (!smp_done) smp_accept(sl->smp, tok);
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

/* Samples the next token of a slot from its logits row and takes it. */
static void slot_sample(srv_t *s, srv_slot *sl, float *logits) {
    nd_err err = {0};
    if (sl->task->req.ignore_eos && !sl->gs) mask_eog(s, logits);
    int32_t tok = sl->gs ? smp_sample_constrained(sl->smp, logits, sl->gs, s->vocab, &err) : smp_sample(sl->smp, logits);
    if (tok < 0) {
        slot_fail(sl, 400, "grammar_dead_end", dead_end_msg);
        return;
    }
    slot_take(s, sl, tok, logits, false);
}

/* ================================================================ speculative decoding */

/* Draft filter (spec_params.allow): the grammar must accept tok after the pending token
 * and drafted[0..n); an ignore_eos request never drafts EOG. gs_tmp follows the draft. */
static bool slot_allow(void *user, const int32_t *drafted, int n, int32_t tok) {
    srv_slot *sl = user;
    const srv_t *s = sl->srv;
    if (sl->task->req.ignore_eos && tok < tok_n_vocab(s->vocab) && tok_is_eog(s->vocab, tok)) return false;
    if (!sl->gs) return true;
    nd_err err = {0};
    if (n == 0 || n < sl->tmp_n) {
        if (grammar_state_copy(sl->gs_tmp, sl->gs, &err)) return false;
        sl->tmp_n = 0;
    }
    while (sl->tmp_n < n)
        if (grammar_state_accept_token(sl->gs_tmp, s->vocab, drafted[sl->tmp_n++], &err)) return false;
    return grammar_state_accepts_token(sl->gs_tmp, s->vocab, tok);
}

/* Greedy verification under the grammar (spec_params.pick): row i is picked as plain
 * constrained decoding would pick it after the tokens picked for rows 0..i-1 (gs_tmp
 * follows them; the slot's gs advances later, as the tokens are taken). */
static int32_t slot_pick(void *user, smp_chain *smp, const float *row, int i) {
    srv_slot *sl = user;
    const srv_t *s = sl->srv;
    nd_err err = {0};
    int rc = i == 0 ? grammar_state_copy(sl->gs_tmp, sl->gs, &err)
                    : grammar_state_accept_token(sl->gs_tmp, s->vocab, sl->pick_last, &err);
    if (rc) {
        srv_fail(&sl->pick_err, 500, "grammar_error", NULL, "%s", err.msg);
        return rc;
    }
    int32_t tok = smp_sample_constrained(smp, row, sl->gs_tmp, s->vocab, &err);
    if (tok < 0) srv_fail(&sl->pick_err, 400, "grammar_dead_end", NULL, "%s", dead_end_msg);
    sl->pick_last = tok;
    return tok;
}

/* The first speculative step of a task: the slot's spec_seq (made on first use, then
 * re-targeted per task; its draft context keeps its cache) gets the task's drafter and
 * sampling parameters and the history cache + pending. False: plain decoding instead. */
static bool slot_spec_begin(srv_t *s, srv_slot *sl) {
    srv_task *t = sl->task;
    nd_err err = {0};
    spec_params p = t->spec;
    if (sl->gs || t->req.ignore_eos) p.allow = slot_allow, p.allow_user = sl;
    if (sl->gs) p.pick = slot_pick, p.pick_user = sl;
    sl->spec_begun = true;
    if (sl->gs && !(sl->gs_tmp = grammar_state_clone(sl->gs, &err))) goto fail;
    if (!sl->spec) {
        spec_params base = spec_default_params(SPEC_NGRAM);
        if (!(sl->spec = spec_seq_new(&base, NULL, &t->req.sp, s->n_vocab, &err))) goto fail;
    }
    if (spec_seq_retarget(sl->spec, &p, s->draft, &t->req.sp, &err)) goto fail;
    if (cache_push(sl, sl->pending)) {
        nd_seterr(&err, ND_ENOMEM, "out of memory");
        goto fail;
    }
    sl->n_cache--; /* pending is not in the KV sequence yet */
    if (spec_seq_begin(sl->spec, sl->cache, sl->n_cache + 1, &err)) goto fail;
    return true;
fail:
    nd_log(&s->p.log, ND_LOG_WARN, "slot %d: speculative decoding off for %s: %s", sl->id, t->id, err.msg);
    sl->spec_on = false;
    return false;
}

/* The longest draft a generating slot may verify this step: its draft_max, the positions
 * left after the pending token, the tokens left beyond the one verification always gives. */
static int slot_draft_cap(const srv_t *s, const srv_slot *sl) {
    const srv_task *t = sl->task;
    int64_t cap = t->spec.draft_max, room = s->n_ctx - 1 - (int64_t)sl->n_cache, left = t->max_gen - sl->n_gen - 1;
    if (room < cap) cap = room;
    if (left < cap) cap = left;
    return cap > 0 ? (int)cap : 0;
}

/* Draws the slot's draft for this step (max may be 0: the pending token is verified alone,
 * which keeps the sequence's history in step). A failing drafter only costs the draft. */
static int slot_draft(srv_t *s, srv_slot *sl, int max) {
    nd_err err = {0};
    int nd = 0;
    if (spec_draft(sl->spec, max, sl->draft, &nd, &err)) {
        nd_log(&s->p.log, ND_LOG_DEBUG, "slot %d: no draft this step: %s", sl->id, err.msg);
        nd = 0;
    }
    return nd;
}

/* After the step: verifies the slot's draft against its rows [1 + n_draft][n_vocab] and
 * takes the tokens; rolls the cache and KV sequence back to pending + accepted drafts. */
static void slot_verify(srv_t *s, srv_slot *sl, float *rows, uint64_t *accepted) {
    int nd = sl->n_draft;
    size_t V = (size_t)s->n_vocab;
    sl->n_cache -= (size_t)nd; /* pending stays; each accepted draft re-enters below */
    if (sl->task->req.ignore_eos && !sl->gs)
        for (int j = 0; j <= nd; j++) mask_eog(s, rows + (size_t)j * V);
    int32_t out[SPEC_MAX_DRAFT + 1];
    int n_out = 0;
    nd_err err = {0};
    memset(&sl->pick_err, 0, sizeof sl->pick_err);
    int64_t acc0 = spec_seq_stats(sl->spec)->n_accepted;
    int rc = spec_verify(sl->spec, sl->smp, rows, sl->draft, nd, out, &n_out, &err);
    int64_t acc = spec_seq_stats(sl->spec)->n_accepted - acc0;
    sl->spec_drafted += nd;
    sl->spec_accepted += acc;
    *accepted += (uint64_t)acc;
    for (int j = 0; j < n_out && !sl->fin_set; j++) {
        if (j > 0) sl->n_cache++; /* out[j - 1] == draft[j - 1] is in the KV sequence */
        slot_take(s, sl, out[j], rows + (size_t)j * V, true);
    }
    if (rc && !sl->fin_set) {
        if (sl->pick_err.status) {
            sl->fin_err = sl->pick_err;
            slot_finish(sl, "stop");
        } else {
            char msg[ND_ERR_MSG + 40];
            snprintf(msg, sizeof msg, "speculative verification failed: %s", err.msg);
            slot_fail(sl, 500, "internal_error", msg);
        }
    }
    model_ctx_seq_truncate(s->ctx, sl->id, (int64_t)sl->n_cache, NULL);
}

/* Room for `rows` logits rows (grown once drafts need more than one row per slot). */
static bool logits_reserve(srv_t *s, int64_t rows) {
    if (rows <= s->logits_rows) return true;
    uint64_t bytes;
    if (!nd_mul_ok((uint64_t)rows, (uint64_t)s->n_vocab * sizeof(float), &bytes) || bytes > SIZE_MAX) return false;
    float *p = nd_realloc(s->logits, (size_t)bytes);
    if (!p) return false;
    s->logits = p;
    s->logits_rows = rows;
    return true;
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
            t->spec_drafted = sl->spec_drafted;
            t->spec_accepted = sl->spec_accepted;
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
        t->spec_drafted = sl->spec_drafted;
        t->spec_accepted = sl->spec_accepted;
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

/* Drafts of the generating slots that speculate, within the step's budget (at most half of
 * what the pending tokens leave when prompts wait). Drafts never lift a step of fewer than
 * K_GEMM_MIN_TOKENS decodes to the blocked GEMM: below it a token's logits do not depend on
 * the batch, which is what makes greedy verification reproduce plain decoding. Returns the
 * draft tokens in all. */
static int engine_drafts(srv_t *s, const int *dec, int n_dec, bool prompts_wait) {
    int budget = s->p.n_batch - n_dec, want = 0;
    if (prompts_wait) budget /= 2;
    if (n_dec < K_GEMM_MIN_TOKENS && budget > K_GEMM_MIN_TOKENS - 1 - n_dec) budget = K_GEMM_MIN_TOKENS - 1 - n_dec;
    for (int k = 0; k < n_dec; k++) {
        srv_slot *sl = &s->slots[dec[k]];
        sl->n_draft = 0;
        if (sl->spec_on && !sl->spec_begun) slot_spec_begin(s, sl);
        if (sl->spec_on) want += slot_draft_cap(s, sl);
    }
    if (budget > want) budget = want;
    if (budget > 0 && !logits_reserve(s, (int64_t)s->n_slots + budget)) budget = 0;
    int total = 0;
    for (int k = 0; k < n_dec; k++) {
        srv_slot *sl = &s->slots[dec[k]];
        if (!sl->spec_on) continue;
        int cap = slot_draft_cap(s, sl);
        sl->n_draft = slot_draft(s, sl, cap < budget - total ? cap : budget - total);
        total += sl->n_draft;
    }
    return total;
}

/* One forward pass over all busy slots (no lock held; only the engine touches slots). */
static void engine_step(srv_t *s) {
    int n = 0, row = 0, n_dec = 0, dec[1024], pre[1024], n_pre = 0;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        sl->b_n = 0;
        if (!sl->task || sl->fin_set) continue;
        if (sl->generating) dec[n_dec++] = i;
        else pre[n_pre++] = i;
    }
    int n_drafted = engine_drafts(s, dec, n_dec, n_pre > 0);
    for (int k = 0; k < n_dec; k++) { /* [pending, draft...], a logits row each */
        srv_slot *sl = &s->slots[dec[k]];
        sl->b_first = n;
        sl->b_row = row;
        for (int j = 0; j <= sl->n_draft; j++) {
            s->b_tok[n] = j ? sl->draft[j - 1] : sl->pending;
            s->b_seq[n] = sl->id;
            s->b_pos[n] = (int64_t)sl->n_cache + j;
            s->b_want[n++] = true;
        }
        sl->b_n = 1 + sl->n_draft;
        row += sl->b_n;
    }
    sort_by_start(s, pre, n_pre);
    int room = s->p.n_batch - n, n_prompt = 0;
    if (room < 1) room = 1;
    for (int k = 0; k < n_pre && room > 0; k++) {
        srv_slot *sl = &s->slots[pre[k]];
        size_t left = sl->task->n_prompt - sl->n_cache, take = left < (size_t)room ? left : (size_t)room;
        sl->b_first = n;
        sl->b_row = row;
        for (size_t j = 0; j < take; j++) {
            size_t p = sl->n_cache + j;
            s->b_tok[n] = sl->task->prompt[p];
            s->b_seq[n] = sl->id;
            s->b_pos[n] = (int64_t)p;
            s->b_want[n] = p == sl->task->n_prompt - 1;
            row += s->b_want[n++];
        }
        sl->b_n = (int)take;
        room -= (int)take;
        n_prompt += (int)take;
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
    double t_fwd = nd_time_s() - t0;
    int n_gen = 0;
    uint64_t n_accepted = 0;
    for (int i = 0; i < s->n_slots; i++) {
        srv_slot *sl = &s->slots[i];
        if (!sl->b_n) continue;
        bool oom = false;
        for (int j = 0; j < sl->b_n; j++) oom |= cache_push(sl, s->b_tok[sl->b_first + j]) != 0;
        if (oom && !sl->fin_set) slot_fail(sl, 500, "out_of_memory", "out of memory");
        if (sl->fin_set || !s->b_want[sl->b_first + sl->b_n - 1]) continue;
        float *lg = s->logits + (size_t)sl->b_row * (size_t)s->n_vocab;
        int64_t before = sl->n_gen;
        if (sl->generating && sl->spec_on) {
            if (n_prompt == 0) spec_note_target(sl->spec, sl->b_n, t_fwd); /* prompt chunks would skew the costs */
            slot_verify(s, sl, lg, &n_accepted);
        } else {
            sl->generating = true;
            slot_sample(s, sl, lg);
        }
        n_gen += (int)(sl->n_gen - before);
    }
    double dt = nd_time_s() - t0;
    pthread_mutex_lock(&s->mu);
    s->met.steps++;
    s->met.batch_tokens += (uint64_t)n;
    s->met.gen_tokens += (uint64_t)n_gen;
    s->met.spec_drafted += (uint64_t)n_drafted;
    s->met.spec_accepted += n_accepted;
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
