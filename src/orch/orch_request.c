/* orch request: the per-request pipeline of `nindub orchestrate` (see orchestrator.h).
 *
 * The request JSON is transformed in place into the body sent upstream: context chunks
 * pruned and folded into the last user message, every message text scrubbed, the route's
 * system prompt and default sampling settings added. Answers come back through the
 * sentinel: non-stream answers have every string restored; streams have each choice's
 * delta.content fed through an orch_outstream as chunks arrive. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "orch/orch_srv.h"
#include "orch/pruner.h"
#include "serve/net.h"

/* ---------------------------------------------------------------- small helpers */

static int set_str(cJSON *item, const char *s, size_t n) {
    char *z = nd_strndup(s, n);
    if (!z) return ND_ENOMEM;
    char *r = cJSON_SetValuestring(item, z);
    nd_free(z);
    return r ? 0 : ND_ENOMEM;
}

/* Text of a message's content (string, or the text parts of an array), appended. */
static int content_text(const cJSON *content, nd_buf *out) {
    if (cJSON_IsString(content)) return nd_buf_append(out, content->valuestring, strlen(content->valuestring));
    if (!cJSON_IsArray(content)) return 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(t)) {
            if (out->len && nd_buf_append(out, "\n", 1)) return ND_ENOMEM;
            if (nd_buf_append(out, t->valuestring, strlen(t->valuestring))) return ND_ENOMEM;
        }
    }
    return 0;
}

static cJSON *last_user(cJSON *msgs) {
    cJSON *last = NULL, *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (cJSON_IsString(r) && !strcmp(r->valuestring, "user")) last = m;
    }
    return last;
}

/* ---------------------------------------------------------------- sentinel */

static int scrub_item(oreq *q, cJSON *item, srv_apierr *e) {
    if (!cJSON_IsString(item) || !q->s->sent) return 0;
    nd_buf b = {0};
    nd_err err = {0};
    int rc = orch_sentinel_scrub(q->s->sent, q->map, item->valuestring, strlen(item->valuestring), &b, &q->c_in, &err);
    if (!rc) rc = set_str(item, b.data ? b.data : "", b.len);
    if (b.data) memset(b.data, 0, b.len);
    nd_buf_free(&b);
    if (rc == ND_ERANGE) return srv_fail(e, 413, "too_many_secrets", NULL, "%s", err.msg);
    if (rc) return srv_fail(e, 500, NULL, NULL, "scrubbing the request failed: %s", err.msg);
    return 0;
}

static int scrub_content(oreq *q, cJSON *content, srv_apierr *e) {
    if (cJSON_IsString(content)) return scrub_item(q, content, e);
    if (!cJSON_IsArray(content)) return 0;
    cJSON *part;
    cJSON_ArrayForEach(part, content) {
        if (scrub_item(q, cJSON_GetObjectItemCaseSensitive(part, "text"), e)) return -1;
    }
    return 0;
}

/* Restores every string in a JSON tree (answers, error bodies): placeholders back to the
 * user's values, foreign secrets redacted. */
static int restore_tree(oreq *q, cJSON *node) {
    if (!q->s->sent) return 0;
    if (cJSON_IsString(node) && node->valuestring) {
        nd_buf b = {0};
        orch_outstream *os = orch_outstream_new(q->s->sent, q->map, NULL);
        if (!os) return ND_ENOMEM;
        int rc = orch_outstream_push(os, node->valuestring, strlen(node->valuestring), &b, NULL);
        if (!rc) rc = orch_outstream_finish(os, &b, NULL);
        if (!rc) rc = set_str(node, b.data ? b.data : "", b.len);
        const orch_counts *c = orch_outstream_redacted(os);
        for (int k = 0; k < ORCH_K_COUNT; k++) q->c_out.by_kind[k] += c->by_kind[k];
        q->c_out.total += c->total;
        q->restored += orch_outstream_restored(os);
        orch_outstream_free(os);
        nd_buf_free(&b);
        return rc;
    }
    cJSON *c;
    cJSON_ArrayForEach(c, node) {
        int rc = restore_tree(q, c);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- pruner */

static char *helper_ask(oreq *q, const char *prompt, const char *gbnf, int max_tokens);

#define RELEVANCE_CHUNK_BYTES 2000 /* of a chunk shown to the helper */

/* pruner.helper: the helper judges the best BM25 candidates; the kept set is then filled from
 * the chunks it called relevant (BM25 order), then the ones it did not judge, then the rest,
 * within k and the token budget. */
static int helper_rerank(oreq *q, const char *question, size_t qn, const char *const *chunks, const size_t *lens,
                         orch_prune_result *res) {
    const orch_config *c = q->s->cfg;
    size_t n = res->n, m = 0;
    signed char *verdict = nd_calloc(n ? n : 1, 1); /* 1 yes, -1 no, 0 not judged */
    size_t *order = nd_malloc((n ? n : 1) * sizeof *order);
    if (!verdict || !order) {
        nd_free(verdict);
        nd_free(order);
        return ND_ENOMEM;
    }
    for (size_t r = 0; r < n && m < c->pruner_helper_candidates; r++) {
        size_t i = res->order[r];
        if (res->scores[i] <= 0) break;
        nd_buf p = {0};
        size_t show = lens[i] < RELEVANCE_CHUNK_BYTES ? lens[i] : RELEVANCE_CHUNK_BYTES;
        nd_buf_printf(&p, "Question: %.*s\n\nText:\n%.*s\n\nDoes the text help to answer the question? Answer yes or no.",
                      (int)(qn < 4000 ? qn : 4000), question, (int)show, chunks[i]);
        char *a = p.data ? helper_ask(q, p.data, "root ::= \"yes\" | \"no\"", 2) : NULL;
        if (a) verdict[i] = !strcmp(a, "yes") ? 1 : -1;
        q->ctx_judged += a != NULL;
        q->ctx_yes += a && verdict[i] == 1;
        nd_free(a);
        nd_buf_free(&p);
        m++;
    }
    size_t k = 0;
    for (int pass = 0; pass < 3; pass++) /* yes, not judged, no */
        for (size_t r = 0; r < n; r++) {
            size_t i = res->order[r];
            int want = pass == 0 ? 1 : pass == 1 ? 0 : -1;
            if (verdict[i] == want && res->scores[i] > 0) order[k++] = i;
        }
    /* keep: up to k chunks within the budget, then back in their original order */
    size_t kept = 0, tokens = 0;
    for (size_t r = 0; r < k; r++) {
        size_t i = order[r];
        if (c->pruner_k && kept >= c->pruner_k) break;
        if (c->pruner_budget && tokens + res->tokens[i] > c->pruner_budget) continue;
        res->keep[kept++] = i;
        tokens += res->tokens[i];
    }
    for (size_t a = 1; a < kept; a++) /* insertion sort: kept is small */
        for (size_t b = a; b > 0 && res->keep[b - 1] > res->keep[b]; b--) {
            size_t t = res->keep[b];
            res->keep[b] = res->keep[b - 1];
            res->keep[b - 1] = t;
        }
    res->n_keep = kept;
    res->tokens_kept = tokens;
    nd_free(verdict);
    nd_free(order);
    return 0;
}

static int prune_chunks(oreq *q, const char *question, size_t qn, const char *const *chunks, const size_t *lens,
                        size_t n, orch_prune_result *res, srv_apierr *e) {
    const orch_config *c = q->s->cfg;
    bool helper = c->pruner_helper && q->s->helper;
    orch_prune_opts po = {.k = helper ? 0 : c->pruner_k, .budget_tokens = helper ? 0 : c->pruner_budget,
                          .k1 = c->pruner_k1, .b = c->pruner_b};
    nd_err err = {0};
    int rc = orch_prune(question, qn, chunks, lens, n, &po, res, &err);
    if (rc == ND_ERANGE) return srv_fail(e, 413, "context_too_large", "context", "%s", err.msg);
    if (rc) return srv_fail(e, 500, NULL, NULL, "pruning failed: %s", err.msg);
    if (helper && helper_rerank(q, question, qn, chunks, lens, res)) return srv_fail(e, 500, NULL, NULL, "out of memory");
    q->ctx_in += n;
    q->ctx_kept += res->n_keep;
    q->ctx_tokens += res->tokens_kept;
    return 0;
}

/* The extension field context: [..]: ranked against the last user message; the kept chunks
 * are put in front of that message's text. */
static int prune_context_field(oreq *q, cJSON *user, srv_apierr *e) {
    cJSON *ctx = cJSON_DetachItemFromObjectCaseSensitive(q->body, "context");
    if (!ctx) return 0;
    int rc = 0;
    size_t n = (size_t)cJSON_GetArraySize(ctx);
    const char **chunks = nd_calloc(n ? n : 1, sizeof *chunks);
    size_t *lens = nd_calloc(n ? n : 1, sizeof *lens);
    nd_buf qtext = {0}, nb = {0};
    orch_prune_result res = {0};
    if (!chunks || !lens) {
        rc = srv_fail(e, 500, NULL, NULL, "out of memory");
        goto done;
    }
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ctx) {
        chunks[i] = it->valuestring;
        lens[i++] = strlen(it->valuestring);
    }
    cJSON *content = user ? cJSON_GetObjectItemCaseSensitive(user, "content") : NULL;
    if (content_text(content, &qtext)) {
        rc = srv_fail(e, 500, NULL, NULL, "out of memory");
        goto done;
    }
    if ((rc = prune_chunks(q, qtext.data ? qtext.data : "", qtext.len, chunks, lens, n, &res, e))) goto done;
    if (!res.n_keep || !content) goto done;
    nd_buf_printf(&nb, "Context:\n");
    for (size_t k = 0; k < res.n_keep; k++) {
        nd_buf_printf(&nb, "--- chunk %zu ---\n", k + 1);
        nd_buf_append(&nb, chunks[res.keep[k]], lens[res.keep[k]]);
        if (lens[res.keep[k]] && chunks[res.keep[k]][lens[res.keep[k]] - 1] != '\n') nd_buf_append(&nb, "\n", 1);
    }
    nd_buf_printf(&nb, "--- end of context ---\n\n");
    if (cJSON_IsString(content)) {
        nd_buf_append(&nb, content->valuestring, strlen(content->valuestring));
        if (!nb.data || set_str(content, nb.data, nb.len)) rc = srv_fail(e, 500, NULL, NULL, "out of memory");
    } else if (cJSON_IsArray(content)) {
        cJSON *part = cJSON_CreateObject();
        if (!part || !cJSON_AddStringToObject(part, "type", "text") || !nb.data ||
            !cJSON_AddStringToObject(part, "text", nb.data) || !cJSON_InsertItemInArray(content, 0, part)) {
            cJSON_Delete(part);
            rc = srv_fail(e, 500, NULL, NULL, "out of memory");
        }
    }
done:
    orch_prune_result_free(&res);
    nd_buf_free(&qtext);
    nd_buf_free(&nb);
    nd_free(chunks);
    nd_free(lens);
    cJSON_Delete(ctx);
    return rc;
}

/* Fenced blocks tagged pruner.fence_tag in the last user message: the dropped ones are cut
 * out of the message; the question is the text outside those blocks. */
static int prune_fenced(oreq *q, cJSON *user, srv_apierr *e) {
    const char *tag = q->s->cfg->pruner_fence_tag;
    cJSON *content = user ? cJSON_GetObjectItemCaseSensitive(user, "content") : NULL;
    if (!tag || !*tag || !cJSON_IsString(content)) return 0;
    const char *md = content->valuestring;
    size_t n = strlen(md), tl = strlen(tag);
    orch_code_block *b = NULL;
    size_t nb = 0;
    nd_err err = {0};
    if (orch_guard_extract(md, n, &b, &nb, &err)) return srv_fail(e, 500, NULL, NULL, "%s", err.msg);
    size_t nc = 0;
    for (size_t i = 0; i < nb; i++) nc += b[i].tag_len == tl && !strncasecmp(md + b[i].tag_start, tag, tl);
    int rc = 0;
    if (!nc) goto done;
    const char **chunks = nd_calloc(nc, sizeof *chunks);
    size_t *lens = nd_calloc(nc, sizeof *lens), *idx = nd_calloc(nc, sizeof *idx);
    nd_buf question = {0}, rebuilt = {0};
    orch_prune_result res = {0};
    if (!chunks || !lens || !idx) {
        rc = srv_fail(e, 500, NULL, NULL, "out of memory");
        goto done2;
    }
    size_t k = 0, prev = 0;
    for (size_t i = 0; i < nb; i++) {
        if (!(b[i].tag_len == tl && !strncasecmp(md + b[i].tag_start, tag, tl))) continue;
        chunks[k] = md + b[i].start;
        lens[k] = b[i].end - b[i].start;
        idx[k++] = i;
        nd_buf_append(&question, md + prev, b[i].block_start - prev);
        prev = b[i].block_end;
    }
    nd_buf_append(&question, md + prev, n - prev);
    if ((rc = prune_chunks(q, question.data ? question.data : "", question.len, chunks, lens, nc, &res, e))) goto done2;
    /* rebuild: text outside blocks, kept blocks as they were */
    prev = 0;
    size_t kept_i = 0;
    for (size_t c = 0; c < nc; c++) {
        const orch_code_block *blk = &b[idx[c]];
        bool keep = kept_i < res.n_keep && res.keep[kept_i] == c;
        if (keep) kept_i++;
        nd_buf_append(&rebuilt, md + prev, blk->block_start - prev);
        if (keep) nd_buf_append(&rebuilt, md + blk->block_start, blk->block_end - blk->block_start);
        prev = blk->block_end;
    }
    nd_buf_append(&rebuilt, md + prev, n - prev);
    if (!rebuilt.data || set_str(content, rebuilt.data, rebuilt.len)) rc = srv_fail(e, 500, NULL, NULL, "out of memory");
done2:
    orch_prune_result_free(&res);
    nd_buf_free(&question);
    nd_buf_free(&rebuilt);
    nd_free(chunks);
    nd_free(lens);
    nd_free(idx);
done:
    nd_free(b);
    return rc;
}

/* ---------------------------------------------------------------- the helper model */

/* One constrained question to the in-process helper: the answer's text (owned) or NULL. The
 * helper runs on this machine, so it may see what the main endpoint may not. */
static char *helper_ask(oreq *q, const char *prompt, const char *gbnf, int max_tokens) {
    orch_server *s = q->s;
    nd_buf resp = {0};
    cJSON *req = cJSON_CreateObject(), *msgs = req ? cJSON_AddArrayToObject(req, "messages") : NULL;
    cJSON *m = cJSON_CreateObject();
    char *body = NULL, *answer = NULL, msg[320];
    if (!msgs || !m || !cJSON_AddItemToArray(msgs, m)) {
        cJSON_Delete(m);
        goto done;
    }
    if (!cJSON_AddStringToObject(m, "role", "user") || !cJSON_AddStringToObject(m, "content", prompt) ||
        !cJSON_AddStringToObject(req, "grammar", gbnf) || !cJSON_AddNumberToObject(req, "max_tokens", max_tokens) ||
        !cJSON_AddNumberToObject(req, "temperature", 0) || !(body = cJSON_PrintUnformatted(req)))
        goto done;
    orch_xfer_opts o = {.total_timeout_s = 30};
    int status = 0;
    if (orch_http_post(s->helper_url, NULL, body, strlen(body), &o, &status, &resp, msg, sizeof msg) != ORCH_XFER_OK ||
        status != 200) {
        nd_log(&s->p.log, ND_LOG_WARN, "the helper did not answer (%s)", status ? "non-200 status" : msg);
        goto done;
    }
    cJSON *r = cJSON_ParseWithLength(resp.data ? resp.data : "", resp.len);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "choices"), 0);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "message"), "content");
    if (cJSON_IsString(ct)) answer = nd_strdup(ct->valuestring);
    cJSON_Delete(r);
done:
    pthread_mutex_lock(&s->mu);
    s->met.helper_calls++;
    s->met.helper_fail += !answer;
    pthread_mutex_unlock(&s->mu);
    nd_buf_free(&resp);
    cJSON_free(body);
    cJSON_Delete(req);
    return answer;
}

/* ---------------------------------------------------------------- router */

static void ask_router_helper(oreq *q, const char *text, size_t n) {
    nd_buf prompt = {0};
    q->helper_failed = true;
    if (!orch_router_prompt(q->s->router, text, n, &prompt)) {
        char *a = helper_ask(q, prompt.data, q->s->router_gbnf, 16);
        orch_route_result rr;
        if (a && orch_router_parse_helper(q->s->router, a, strlen(a), &rr) == 0) {
            q->rr = rr;
            q->helper_failed = false;
        }
        nd_free(a);
    }
    nd_buf_free(&prompt);
}

static int route_request(oreq *q, cJSON *user, srv_apierr *e) {
    orch_server *s = q->s;
    const orch_config *c = s->cfg;
    q->route = -1;
    q->rr = (orch_route_result){.label = -1, .path = ORCH_ROUTE_NONE};
    if (s->router) {
        nd_buf text = {0};
        nd_err err = {0};
        if (user && content_text(cJSON_GetObjectItemCaseSensitive(user, "content"), &text))
            return srv_fail(e, 500, NULL, NULL, "out of memory");
        int rc = orch_router_classify(s->router, text.data ? text.data : "", text.len, &q->rr, &err);
        if (!rc && (q->rr.path == ORCH_ROUTE_NONE || q->rr.path == ORCH_ROUTE_DEFAULT) && s->helper && c->router_helper) {
            orch_route_result keep = q->rr;
            ask_router_helper(q, text.data ? text.data : "", text.len);
            if (q->helper_failed) q->rr = keep;
        }
        nd_buf_free(&text);
        if (rc) return srv_fail(e, 500, NULL, NULL, "routing failed: %s", err.msg);
        q->route = q->rr.label;
    }
    const orch_route_cfg *r = q->route >= 0 ? &c->routes[q->route] : NULL;
    int target = r ? r->target : ORCH_TARGET_MAIN;
    if (target == ORCH_TARGET_URL) {
        q->url = s->route_urls[q->route];
        q->target_name = "url";
    } else if (target == ORCH_TARGET_HELPER || !s->main_chat_url) {
        q->url = s->helper_url;
        q->target_name = "helper";
    } else {
        q->url = s->main_chat_url;
        q->bearer = s->main_key;
        q->target_name = "main";
    }
    if (!q->url || !*q->url)
        return srv_fail(e, 503, "no_target", NULL, "route %s has no endpoint to send to (configure main.url or a helper model)",
                        r ? r->label : "(none)");
    q->guarded = r && r->guard && s->guard;
    if (!r) return 0;
    /* route settings: system prompt first, sampling defaults where the request is silent */
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(q->body, "messages");
    if (r->system_prompt) {
        cJSON *first = cJSON_GetArrayItem(msgs, 0);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(first, "role");
        cJSON *fc = cJSON_GetObjectItemCaseSensitive(first, "content");
        if (cJSON_IsString(role) && !strcmp(role->valuestring, "system") && cJSON_IsString(fc)) {
            nd_buf b = {0};
            nd_buf_printf(&b, "%s\n\n%s", r->system_prompt, fc->valuestring);
            int rc = b.data ? set_str(fc, b.data, b.len) : ND_ENOMEM;
            nd_buf_free(&b);
            if (rc) return srv_fail(e, 500, NULL, NULL, "out of memory");
        } else {
            cJSON *m = cJSON_CreateObject();
            if (!m || !cJSON_AddStringToObject(m, "role", "system") ||
                !cJSON_AddStringToObject(m, "content", r->system_prompt) || !cJSON_InsertItemInArray(msgs, 0, m)) {
                cJSON_Delete(m);
                return srv_fail(e, 500, NULL, NULL, "out of memory");
            }
        }
    }
    const orch_sampling *sp = &r->sampling;
    struct {
        const char *key;
        double v;
        bool set;
    } d[] = {{"temperature", sp->temperature, sp->temperature >= 0}, {"top_p", sp->top_p, sp->top_p >= 0},
             {"top_k", sp->top_k, sp->top_k >= 0}, {"max_tokens", sp->max_tokens, sp->max_tokens >= 0},
             {"seed", (double)sp->seed, sp->seed >= 0}};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        if (!d[i].set || cJSON_GetObjectItemCaseSensitive(q->body, d[i].key)) continue;
        if (!strcmp(d[i].key, "max_tokens") && cJSON_GetObjectItemCaseSensitive(q->body, "max_completion_tokens")) continue;
        if (!cJSON_AddNumberToObject(q->body, d[i].key, d[i].v)) return srv_fail(e, 500, NULL, NULL, "out of memory");
    }
    return 0;
}

/* ---------------------------------------------------------------- preparing */

void oq_init(oreq *q, orch_server *s, int fd) {
    memset(q, 0, sizeof *q);
    q->s = s;
    q->fd = fd;
    q->route = -1;
    q->t0 = nd_time_s();
}

void oq_free(oreq *q) {
    cJSON_Delete(q->body);
    cJSON_Delete(q->tmpl);
    orch_map_free(q->map);
    for (int i = 0; i < OQ_MAX_CHOICES; i++) orch_outstream_free(q->os[i]);
    orch_xfer_free(q->x);
    nd_buf_free(&q->out);
    nd_buf_free(&q->held);
    nd_buf_free(&q->g_line);
    nd_buf_free(&q->g_prefix);
    nd_buf_free(&q->g_buf);
    if (q->guard_ran) orch_guard_summary_free(&q->gsum);
    memset(q, 0, sizeof *q);
}

static int check_body(oreq *q, srv_apierr *e) {
    const orch_server_params *p = &q->s->p;
    if (!cJSON_IsObject(q->body)) return srv_fail(e, 400, "invalid_request", NULL, "the request body must be a JSON object");
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(q->body, "messages");
    if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs))
        return srv_fail(e, 400, "invalid_value", "messages", "messages must be a non-empty array");
    if (cJSON_GetArraySize(msgs) > p->max_messages)
        return srv_fail(e, 400, "too_many_messages", "messages", "at most %d messages per request", p->max_messages);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return srv_fail(e, 400, "invalid_value", "messages", "messages[%d] must be an object with a string role", i);
        if (c && !cJSON_IsString(c) && !cJSON_IsArray(c) && !cJSON_IsNull(c))
            return srv_fail(e, 400, "invalid_type", "messages", "messages[%d].content must be a string, an array of parts or null", i);
        if (cJSON_IsArray(c)) {
            const cJSON *part;
            cJSON_ArrayForEach(part, c) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsObject(part) || (t && !cJSON_IsString(t)))
                    return srv_fail(e, 400, "invalid_type", "messages", "messages[%d].content parts must be objects with a string text", i);
            }
        }
        i++;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(q->body, "stream");
    if (st && !cJSON_IsBool(st) && !cJSON_IsNull(st)) return srv_fail(e, 400, "invalid_type", "stream", "stream must be a boolean");
    q->stream = cJSON_IsTrue(st);
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(q->body, "context");
    if (ctx && !cJSON_IsNull(ctx)) {
        if (!cJSON_IsArray(ctx)) return srv_fail(e, 400, "invalid_type", "context", "context must be an array of strings");
        if (cJSON_GetArraySize(ctx) > p->max_context)
            return srv_fail(e, 413, "context_too_large", "context", "at most %d context items per request", p->max_context);
        int k = 0;
        cJSON_ArrayForEach(m, ctx) {
            if (!cJSON_IsString(m)) return srv_fail(e, 400, "invalid_type", "context", "context[%d] must be a string", k);
            k++;
        }
    } else if (ctx) {
        cJSON_DeleteItemFromObjectCaseSensitive(q->body, "context");
    }
    return 0;
}

int oq_prepare(oreq *q, const char *body, size_t n, srv_apierr *e) {
    orch_server *s = q->s;
    q->body = cJSON_ParseWithLength(body ? body : "", n);
    if (!q->body) return srv_fail(e, 400, "invalid_json", NULL, "the request body is not valid JSON");
    if (check_body(q, e)) return -1;
    nd_err err = {0};
    if (!(q->map = orch_map_new(&err))) return srv_fail(e, 500, NULL, NULL, "%s", err.msg);
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(q->body, "messages");
    cJSON *user = last_user(msgs);
    /* pruner (on the user's own text: it stays on this machine) */
    if (s->cfg->role_pruner) {
        if (prune_fenced(q, user, e) || prune_context_field(q, user, e)) return -1;
    } else if (cJSON_GetObjectItemCaseSensitive(q->body, "context")) {
        cJSON_DeleteItemFromObjectCaseSensitive(q->body, "context");
    }
    /* sentinel: every message in order, so placeholders number the same in every turn */
    cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        if (scrub_content(q, cJSON_GetObjectItemCaseSensitive(m, "content"), e)) return -1;
    }
    if (route_request(q, user, e)) return -1;
    if (s->cfg->main_model && !strcmp(q->target_name, "main")) {
        cJSON_DeleteItemFromObjectCaseSensitive(q->body, "model");
        if (!cJSON_AddStringToObject(q->body, "model", s->cfg->main_model)) return srv_fail(e, 500, NULL, NULL, "out of memory");
    }
    q->t_prep = nd_time_s();
    return 0;
}

/* ---------------------------------------------------------------- the guard's fixer */

static const char FIX_PROMPT[] =
    "The code in your answer does not pass the checker. Diagnostics:\n\n%s\n\n"
    "Reply with the complete corrected answer, every code block included.";

static int fix_cb(void *user, const char *answer, size_t n, const char *diag, size_t diag_len, int round, nd_buf *fixed,
                  nd_err *err) {
    oreq *q = user;
    orch_server *s = q->s;
    nd_buf sd = {0}, ask = {0}, resp = {0};
    char *body = NULL, msg[320];
    int rc = ND_ENOMEM;
    /* diagnostics quote the code: scrub them too before they leave */
    if (s->sent) {
        if ((rc = orch_sentinel_scrub(s->sent, q->map, diag, diag_len, &sd, &q->c_in, err))) goto done;
    } else if (nd_buf_append(&sd, diag, diag_len)) {
        goto done;
    }
    if (nd_buf_printf(&ask, FIX_PROMPT, sd.data ? sd.data : "")) goto done;
    cJSON *req = cJSON_Duplicate(q->body, 1);
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages");
    cJSON *a = cJSON_CreateObject(), *u = cJSON_CreateObject();
    char *ans = nd_strndup(answer, n);
    bool ok = req && msgs && a && u && ans && cJSON_AddStringToObject(a, "role", "assistant") &&
              cJSON_AddStringToObject(a, "content", ans) && cJSON_AddStringToObject(u, "role", "user") &&
              cJSON_AddStringToObject(u, "content", ask.data);
    nd_free(ans);
    if (ok) {
        cJSON_AddItemToArray(msgs, a);
        cJSON_AddItemToArray(msgs, u);
        a = u = NULL;
        cJSON_DeleteItemFromObjectCaseSensitive(req, "stream");
        cJSON_DeleteItemFromObjectCaseSensitive(req, "stream_options");
        body = cJSON_PrintUnformatted(req);
    }
    cJSON_Delete(a);
    cJSON_Delete(u);
    cJSON_Delete(req);
    if (!body) {
        rc = nd_seterr(err, ND_ENOMEM, "guard: out of memory");
        goto done;
    }
    orch_xfer_opts o = {.total_timeout_s = s->cfg->main_timeout_s};
    int status = 0;
    orch_xfer_fail f = orch_http_post(q->url, q->bearer, body, strlen(body), &o, &status, &resp, msg, sizeof msg);
    if (f != ORCH_XFER_OK) {
        rc = nd_seterr(err, ND_EIO, "guard fix round %d: %s", round, msg);
        goto done;
    }
    if (status != 200) {
        rc = nd_seterr(err, ND_EIO, "guard fix round %d: the endpoint answered HTTP %d", round, status);
        goto done;
    }
    cJSON *r = cJSON_ParseWithLength(resp.data ? resp.data : "", resp.len);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "choices"), 0);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "message"), "content");
    if (cJSON_IsString(ct)) {
        rc = nd_buf_append(fixed, ct->valuestring, strlen(ct->valuestring)) ? nd_seterr(err, ND_ENOMEM, "guard: out of memory") : 0;
    } else {
        rc = nd_seterr(err, ND_EFORMAT, "guard fix round %d: the endpoint's answer has no message content", round);
    }
    cJSON_Delete(r);
done:
    nd_buf_free(&sd);
    nd_buf_free(&ask);
    nd_buf_free(&resp);
    cJSON_free(body);
    return rc;
}

static void run_guard(oreq *q, const char *answer, size_t n) {
    nd_err err = {0};
    q->guard_ran = true;
    int rc = orch_guard_run(q->s->guard, answer, n, fix_cb, q, q->s->cfg->guard_max_rounds, &q->gsum, &err);
    if (rc) nd_log(&q->s->p.log, ND_LOG_WARN, "guard: %s", err.msg);
}

/* ---------------------------------------------------------------- trace */

int oq_trace_line(const oreq *q, nd_buf *out) {
    const orch_config *c = q->s->cfg;
    int rc = 0;
    if (q->route >= 0)
        rc |= nd_buf_printf(out, "route=%s path=%s conf=%.2f ", c->routes[q->route].label, orch_route_path_name(q->rr.path),
                            q->rr.confidence);
    else
        rc |= nd_buf_printf(out, "route=none ");
    if (q->helper_failed) rc |= nd_buf_printf(out, "helper=failed ");
    rc |= nd_buf_printf(out, "target=%s", q->target_name ? q->target_name : "none");
    if (q->s->sent) {
        rc |= nd_buf_printf(out, " sentinel_in=%u", q->c_in.total);
        for (int k = 0; k < ORCH_K_COUNT; k++)
            if (q->c_in.by_kind[k]) rc |= nd_buf_printf(out, ",%s:%u", orch_kind_name(k), q->c_in.by_kind[k]);
        rc |= nd_buf_printf(out, " sentinel_out=%u", q->c_out.total);
        for (int k = 0; k < ORCH_K_COUNT; k++)
            if (q->c_out.by_kind[k]) rc |= nd_buf_printf(out, ",%s:%u", orch_kind_name(k), q->c_out.by_kind[k]);
        rc |= nd_buf_printf(out, " restored=%u", q->restored);
    }
    if (q->ctx_in) rc |= nd_buf_printf(out, " pruner=%zu/%zu,%zutok", q->ctx_kept, q->ctx_in, q->ctx_tokens);
    if (q->ctx_judged) rc |= nd_buf_printf(out, ",helper:%zu/%zu", q->ctx_yes, q->ctx_judged);
    if (q->guard_ran)
        rc |= nd_buf_printf(out, " guard=%s,fixes:%d,checks:%d", q->gsum.ok ? "ok" : "failing", q->gsum.fixes, q->gsum.n_rounds);
    double end = q->t_end ? q->t_end : nd_time_s();
    rc |= nd_buf_printf(out, " prep_ms=%.1f", (q->t_prep ? q->t_prep - q->t0 : 0) * 1e3);
    if (q->t_first) rc |= nd_buf_printf(out, " first_byte_ms=%.1f", (q->t_first - q->t0) * 1e3);
    rc |= nd_buf_printf(out, " total_ms=%.1f", (end - q->t0) * 1e3);
    if (q->fail) rc |= nd_buf_printf(out, " upstream_error=%d", (int)q->fail);
    return rc ? ND_ENOMEM : 0;
}

static cJSON *trace_json(const oreq *q) {
    cJSON *t = cJSON_CreateObject();
    if (!t) return NULL;
    nd_buf line = {0};
    oq_trace_line(q, &line);
    cJSON_AddStringToObject(t, "trace", line.data ? line.data : "");
    nd_buf_free(&line);
    if (q->route >= 0) {
        cJSON_AddStringToObject(t, "route", q->s->cfg->routes[q->route].label);
        cJSON_AddStringToObject(t, "route_path", orch_route_path_name(q->rr.path));
    }
    cJSON_AddStringToObject(t, "target", q->target_name ? q->target_name : "none");
    cJSON *in = cJSON_AddObjectToObject(t, "redacted_in"), *out = cJSON_AddObjectToObject(t, "redacted_out");
    for (int k = 0; k < ORCH_K_COUNT; k++) {
        if (in && q->c_in.by_kind[k]) cJSON_AddNumberToObject(in, orch_kind_name(k), q->c_in.by_kind[k]);
        if (out && q->c_out.by_kind[k]) cJSON_AddNumberToObject(out, orch_kind_name(k), q->c_out.by_kind[k]);
    }
    cJSON_AddNumberToObject(t, "restored", q->restored);
    if (q->ctx_in) {
        cJSON *p = cJSON_AddObjectToObject(t, "pruner");
        if (p) {
            cJSON_AddNumberToObject(p, "chunks", (double)q->ctx_in);
            cJSON_AddNumberToObject(p, "kept", (double)q->ctx_kept);
            cJSON_AddNumberToObject(p, "tokens_kept", (double)q->ctx_tokens);
            if (q->ctx_judged) {
                cJSON_AddNumberToObject(p, "helper_judged", (double)q->ctx_judged);
                cJSON_AddNumberToObject(p, "helper_relevant", (double)q->ctx_yes);
            }
        }
    }
    if (q->guard_ran) {
        cJSON *g = cJSON_AddObjectToObject(t, "guard");
        nd_buf sum = {0};
        orch_guard_summary_format(&q->gsum, &sum);
        if (g) {
            cJSON_AddBoolToObject(g, "ok", q->gsum.ok);
            cJSON_AddNumberToObject(g, "fixes", q->gsum.fixes);
            cJSON_AddNumberToObject(g, "checks", q->gsum.n_rounds);
            cJSON_AddStringToObject(g, "summary", sum.data ? sum.data : "");
            if (!q->gsum.ok && q->gsum.diag.len) {
                /* the diagnostics quote the code the user will see anyway: restore them */
                nd_buf d = {0};
                if (q->s->sent && !orch_sentinel_restore(q->s->sent, q->map, q->gsum.diag.data, q->gsum.diag.len, &d, NULL, NULL))
                    cJSON_AddStringToObject(g, "diagnostics", d.data ? d.data : "");
                nd_buf_free(&d);
            }
        }
        nd_buf_free(&sum);
    }
    cJSON_AddNumberToObject(t, "total_ms", ((q->t_end ? q->t_end : nd_time_s()) - q->t0) * 1e3);
    return t;
}

/* ---------------------------------------------------------------- upstream */

static int on_event(void *user, const char *data, size_t n);

int oq_start(oreq *q, srv_apierr *e) {
    if (q->stream) {
        cJSON_DeleteItemFromObjectCaseSensitive(q->body, "stream");
        if (!cJSON_AddTrueToObject(q->body, "stream")) return srv_fail(e, 500, NULL, NULL, "out of memory");
    }
    char *body = cJSON_PrintUnformatted(q->body);
    if (!body) return srv_fail(e, 500, NULL, NULL, "out of memory");
    orch_xfer_opts o = {0};
    if (q->stream) o.idle_timeout_s = q->s->cfg->main_timeout_s;
    else o.total_timeout_s = q->s->cfg->main_timeout_s;
    nd_err err = {0};
    q->x = orch_xfer_post(q->url, q->bearer, body, strlen(body), &o, q->stream ? on_event : NULL, q, &err);
    memset(body, 0, strlen(body));
    cJSON_free(body);
    if (!q->x) return srv_fail(e, 500, NULL, NULL, "%s", err.msg);
    return 0;
}

static bool client_gone(const oreq *q) { return srv_net_hung_up(q->fd); }

/* Pumps until headers (or the end); aborts when the client hangs up. */
static void pump_headers(oreq *q) {
    while (!orch_xfer_headers_done(q->x) && !orch_xfer_pump(q->x, 100)) {
        if (client_gone(q)) orch_xfer_abort(q->x);
    }
    if (!q->t_first && orch_xfer_headers_done(q->x)) q->t_first = nd_time_s();
}

/* An error answer for a failed transfer or a non-2xx status. */
static char *upstream_error(oreq *q, int *status) {
    srv_apierr e = {0};
    q->fail = orch_xfer_failure(q->x, q->fail_msg, sizeof q->fail_msg);
    if (q->fail == ORCH_XFER_TIMEOUT) {
        srv_fail(&e, 504, "upstream_timeout", NULL, "the %s endpoint timed out: %s", q->target_name, q->fail_msg);
    } else if (q->fail != ORCH_XFER_OK) {
        srv_fail(&e, 502, "upstream_unavailable", NULL, "the %s endpoint failed: %s", q->target_name, q->fail_msg);
    } else {
        int st = orch_xfer_status(q->x);
        q->up_status = st;
        const nd_buf *b = orch_xfer_body(q->x);
        cJSON *j = cJSON_ParseWithLength(b->data ? b->data : "", b->len);
        if (j && cJSON_IsObject(j) && st >= 400 && st < 500 && st != 401 && st != 403 && !restore_tree(q, j)) {
            char *out = cJSON_PrintUnformatted(j);
            cJSON_Delete(j);
            *status = st;
            return out;
        }
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "message");
        nd_buf m = {0};
        if (cJSON_IsString(msg) && q->s->sent)
            orch_sentinel_restore(q->s->sent, q->map, msg->valuestring, strlen(msg->valuestring), &m, NULL, NULL);
        if (st >= 200 && st < 300)
            srv_fail(&e, 502, "upstream_bad_answer", NULL, "the %s endpoint answered HTTP %d with %s", q->target_name, st,
                     j ? "an unexpected JSON shape" : "a body that is not JSON");
        else
            srv_fail(&e, 502, "upstream_error", NULL, "the %s endpoint answered HTTP %d%s%.300s", q->target_name, st,
                     m.len ? ": " : (j ? "" : " (body is not JSON)"), m.data ? m.data : "");
        nd_buf_free(&m);
        cJSON_Delete(j);
    }
    *status = e.status;
    return srv_error_json(&e);
}

char *oq_answer(oreq *q, int *status) {
    while (!orch_xfer_pump(q->x, 100)) {
        if (!q->t_first && orch_xfer_headers_done(q->x)) q->t_first = nd_time_s();
        if (client_gone(q)) orch_xfer_abort(q->x);
    }
    if (!q->t_first && orch_xfer_headers_done(q->x)) q->t_first = nd_time_s();
    if (orch_xfer_failure(q->x, NULL, 0) != ORCH_XFER_OK || orch_xfer_status(q->x) != 200) return upstream_error(q, status);
    const nd_buf *b = orch_xfer_body(q->x);
    cJSON *j = cJSON_ParseWithLength(b->data ? b->data : "", b->len);
    cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    if (!cJSON_IsObject(j) || !cJSON_IsArray(choices)) {
        cJSON_Delete(j);
        q->up_status = 200;
        srv_apierr e = {0};
        srv_fail(&e, 502, "upstream_bad_answer", NULL, "the %s endpoint answered with %s", q->target_name,
                 j ? "JSON that is not a chat completion" : "a body that is not JSON");
        *status = 502;
        return srv_error_json(&e);
    }
    if (q->guarded) {
        cJSON *ct = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "message"),
                                                     "content");
        if (cJSON_IsString(ct)) {
            run_guard(q, ct->valuestring, strlen(ct->valuestring));
            if (q->gsum.answer.data) set_str(ct, q->gsum.answer.data, q->gsum.answer.len);
        }
    }
    char *out = NULL;
    if (!restore_tree(q, j)) {
        q->t_end = nd_time_s();
        cJSON *t = trace_json(q);
        if (t) cJSON_AddItemToObject(j, "nindub", t);
        out = cJSON_PrintUnformatted(j);
    }
    cJSON_Delete(j);
    *status = out ? 200 : 500;
    if (!out) {
        srv_apierr e = {0};
        srv_fail(&e, 500, NULL, NULL, "out of memory building the answer");
        return srv_error_json(&e);
    }
    return out;
}

/* ---------------------------------------------------------------- streaming */

static int emit_json(oreq *q, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    if (!s) return ND_ENOMEM;
    int rc = nd_buf_printf(&q->out, "data: %s\n\n", s);
    cJSON_free(s);
    q->t_last_out = nd_time_s();
    return rc;
}

/* A chunk like the upstream's last one, with a content delta for choice idx (or none). */
static cJSON *synth_chunk(oreq *q, int idx, const char *text, size_t n, const char *finish) {
    cJSON *c = q->tmpl ? cJSON_Duplicate(q->tmpl, 1) : cJSON_CreateObject();
    if (!c) return NULL;
    if (!cJSON_GetObjectItemCaseSensitive(c, "object")) cJSON_AddStringToObject(c, "object", "chat.completion.chunk");
    cJSON *chs = cJSON_AddArrayToObject(c, "choices");
    if (idx >= 0 && chs) {
        cJSON *ch = cJSON_CreateObject(), *d = ch ? cJSON_AddObjectToObject(ch, "delta") : NULL;
        char *z = text ? nd_strndup(text, n) : NULL;
        if (!ch || !d || (text && !z)) {
            nd_free(z);
            cJSON_Delete(ch);
            cJSON_Delete(c);
            return NULL;
        }
        cJSON_AddNumberToObject(ch, "index", idx);
        if (z) cJSON_AddStringToObject(d, "content", z);
        nd_free(z);
        if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
        else cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(chs, ch);
    }
    return c;
}

static int emit_text(oreq *q, int idx, const nd_buf *b) {
    if (!b->len) return 0;
    cJSON *c = synth_chunk(q, idx, b->data, b->len, NULL);
    int rc = c ? emit_json(q, c) : ND_ENOMEM;
    cJSON_Delete(c);
    return rc;
}

static int os_push(oreq *q, int idx, const char *t, size_t n, nd_buf *out) {
    if (!q->s->sent) return nd_buf_append(out, t, n);
    if (!q->os[idx] && !(q->os[idx] = orch_outstream_new(q->s->sent, q->map, NULL))) return ND_ENOMEM;
    return orch_outstream_push(q->os[idx], t, n, out, NULL);
}

static int os_finish(oreq *q, int idx, nd_buf *out) {
    if (!q->os[idx] || q->os_done[idx]) return 0;
    q->os_done[idx] = true;
    return orch_outstream_finish(q->os[idx], out, NULL);
}

/* Guarded choice 0: complete lines are released until an opening fence of a checked
 * language; from there on the text is held for the compile loop. */
static bool opens_checked_fence(oreq *q, const char *line, size_t n) {
    orch_code_block *b = NULL;
    size_t nb = 0;
    bool yes = false;
    if (!orch_guard_extract(line, n, &b, &nb, NULL) && nb == 1 && b[0].block_start == 0 && b[0].lang >= 0)
        yes = orch_guard_available(q->s->guard, b[0].lang);
    nd_free(b);
    return yes;
}

static int guarded_content(oreq *q, const char *t, size_t n, nd_buf *released) {
    if (q->g_buffering) return nd_buf_append(&q->g_buf, t, n);
    if (nd_buf_append(&q->g_line, t, n)) return ND_ENOMEM;
    size_t off = 0;
    for (;;) {
        const char *nl = memchr(q->g_line.data + off, '\n', q->g_line.len - off);
        if (!nl) break;
        size_t ln = (size_t)(nl - (q->g_line.data + off)) + 1;
        if (opens_checked_fence(q, q->g_line.data + off, ln)) {
            q->g_buffering = true;
            if (nd_buf_append(&q->g_buf, q->g_line.data + off, q->g_line.len - off)) return ND_ENOMEM;
            q->g_line.len = 0;
            return 0;
        }
        if (nd_buf_append(&q->g_prefix, q->g_line.data + off, ln) || os_push(q, 0, q->g_line.data + off, ln, released))
            return ND_ENOMEM;
        off += ln;
    }
    memmove(q->g_line.data, q->g_line.data + off, q->g_line.len - off);
    q->g_line.len -= off;
    return 0;
}

/* Every string under node except delta.content is restored one-shot. */
static int restore_except_content(oreq *q, cJSON *delta) {
    cJSON *c;
    cJSON_ArrayForEach(c, delta) {
        if (c->string && !strcmp(c->string, "content")) continue;
        int rc = restore_tree(q, c);
        if (rc) return rc;
    }
    return 0;
}

static int on_event(void *user, const char *data, size_t n) {
    oreq *q = user;
    if (!q->t_first) q->t_first = nd_time_s();
    if (q->finished) return 0;
    while (n && isspace((unsigned char)*data)) data++, n--;
    if (n >= 6 && !strncmp(data, "[DONE]", 6)) {
        q->finished = true;
        return 0;
    }
    cJSON *j = cJSON_ParseWithLength(data, n);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        q->bad_event = true;
        return 1;
    }
    bool hold = q->guarded && (q->holding || q->g_buffering); /* guarded: everything after the fence waits */
    if (cJSON_GetObjectItemCaseSensitive(j, "error")) { /* an error event: pass it on, restored */
        int rc = restore_tree(q, j);
        char *s = rc ? NULL : cJSON_PrintUnformatted(j);
        if (s) nd_buf_printf(&q->out, "data: %s\n\n", s);
        cJSON_free(s);
        cJSON_Delete(j);
        return 0;
    }
    /* template for chunks we make ourselves */
    cJSON_Delete(q->tmpl);
    q->tmpl = cJSON_CreateObject();
    static const char *const keep[] = {"id", "object", "created", "model", "system_fingerprint"};
    for (size_t k = 0; q->tmpl && k < sizeof keep / sizeof keep[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keep[k]);
        if (v) cJSON_AddItemToObject(q->tmpl, keep[k], cJSON_Duplicate(v, 1));
    }
    cJSON *chs = cJSON_GetObjectItemCaseSensitive(j, "choices");
    bool emit = !cJSON_IsArray(chs) || !cJSON_GetArraySize(chs);
    int rc = 0;
    cJSON *ch;
    cJSON_ArrayForEach(ch, chs) {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(ch, "index");
        int idx = cJSON_IsNumber(ix) && ix->valuedouble >= 0 && ix->valuedouble < OQ_MAX_CHOICES ? (int)ix->valuedouble : -1;
        cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        bool finishing = fin && !cJSON_IsNull(fin);
        if (finishing && q->guarded && idx == 0) hold = true; /* after the text the guard releases */
        if (idx < 0) { /* more choices than we stream through the sentinel: one-shot */
            rc |= restore_tree(q, ch);
            emit = true;
            continue;
        }
        rc |= restore_except_content(q, delta);
        nd_buf rel = {0};
        if (cJSON_IsString(content)) {
            if (q->guarded && idx == 0) rc |= guarded_content(q, content->valuestring, strlen(content->valuestring), &rel);
            else rc |= os_push(q, idx, content->valuestring, strlen(content->valuestring), &rel);
        }
        if (finishing && !(q->guarded && idx == 0)) rc |= os_finish(q, idx, &rel);
        if (hold && q->guarded && idx == 0 && rel.len) { /* text released before a held chunk goes first */
            rc |= emit_text(q, 0, &rel);
            rel.len = 0;
        }
        if (cJSON_IsString(content)) {
            rc |= set_str(content, rel.data ? rel.data : "", rel.len);
        } else if (rel.len) { /* text released by the finish goes into this chunk */
            if (!cJSON_IsObject(delta)) {
                cJSON_DeleteItemFromObjectCaseSensitive(ch, "delta");
                delta = cJSON_AddObjectToObject(ch, "delta");
            }
            char *z = nd_strndup(rel.data, rel.len);
            if (!delta || !z || !cJSON_AddStringToObject(delta, "content", z)) rc |= ND_ENOMEM;
            nd_free(z);
        }
        nd_buf_free(&rel);
        if (cJSON_IsString(content) && !content->valuestring[0] && !finishing) {
            /* nothing released: drop the content key; the chunk goes only if it says more */
            cJSON_DeleteItemFromObjectCaseSensitive(delta, "content");
            if (cJSON_GetArraySize(delta) == 0) continue;
        }
        emit = true;
    }
    if (!rc && emit) {
        if (hold) {
            q->holding = true;
            char *s = cJSON_PrintUnformatted(j);
            rc = s ? nd_buf_printf(&q->held, "data: %s\n\n", s) : ND_ENOMEM;
            cJSON_free(s);
        } else {
            rc = emit_json(q, j);
        }
    }
    cJSON_Delete(j);
    if (rc) {
        q->bad_event = true;
        return 1;
    }
    return 0;
}

/* The transfer has ended: held text, the guard, the trace chunk, errors, [DONE]. */
static void stream_end(oreq *q) {
    q->fail = orch_xfer_failure(q->x, q->fail_msg, sizeof q->fail_msg);
    nd_buf rel = {0};
    if (q->guarded) {
        nd_buf full = {0};
        nd_buf_append(&full, q->g_prefix.data ? q->g_prefix.data : "", q->g_prefix.len);
        nd_buf_append(&full, q->g_line.data ? q->g_line.data : "", q->g_line.len);
        nd_buf_append(&full, q->g_buf.data ? q->g_buf.data : "", q->g_buf.len);
        const char *final = full.data ? full.data : "";
        size_t fn = full.len;
        if (q->fail == ORCH_XFER_OK && !q->bad_event && q->g_buffering) {
            run_guard(q, final, fn);
            if (q->gsum.answer.data) final = q->gsum.answer.data, fn = q->gsum.answer.len;
        }
        if (fn >= q->g_prefix.len && !memcmp(final, q->g_prefix.data ? q->g_prefix.data : "", q->g_prefix.len)) {
            os_push(q, 0, final + q->g_prefix.len, fn - q->g_prefix.len, &rel);
        } else { /* a fix rewrote text already sent: the revised answer follows in full */
            os_push(q, 0, "\n\n---\n\n", 7, &rel);
            os_push(q, 0, final, fn, &rel);
        }
        nd_buf_free(&full);
        if (!q->os[0] && q->s->sent) os_push(q, 0, "", 0, &rel);
        os_finish(q, 0, &rel);
        emit_text(q, 0, &rel);
        rel.len = 0;
        nd_buf_append(&q->out, q->held.data ? q->held.data : "", q->held.len);
    }
    for (int i = 0; i < OQ_MAX_CHOICES; i++) { /* streams that ended without a finish_reason */
        if (!q->os[i] || q->os_done[i]) continue;
        rel.len = 0;
        os_finish(q, i, &rel);
        emit_text(q, i, &rel);
    }
    nd_buf_free(&rel);
    /* outbound counts: every stream's redactions and restorations */
    for (int i = 0; i < OQ_MAX_CHOICES; i++) {
        if (!q->os[i]) continue;
        const orch_counts *c = orch_outstream_redacted(q->os[i]);
        for (int k = 0; k < ORCH_K_COUNT; k++) q->c_out.by_kind[k] += c->by_kind[k];
        q->c_out.total += c->total;
        q->restored += orch_outstream_restored(q->os[i]);
        orch_outstream_free(q->os[i]);
        q->os[i] = NULL;
    }
    q->t_end = nd_time_s();
    srv_apierr e = {0};
    if (q->bad_event && q->fail == ORCH_XFER_ABORTED) q->fail = ORCH_XFER_PROTOCOL;
    if (q->bad_event)
        srv_fail(&e, 502, "upstream_bad_stream", NULL, "the %s endpoint sent a stream event that is not a JSON object",
                 q->target_name);
    else if (q->fail == ORCH_XFER_TIMEOUT)
        srv_fail(&e, 504, "upstream_timeout", NULL, "the %s endpoint timed out: %s", q->target_name, q->fail_msg);
    else if (q->fail != ORCH_XFER_OK)
        srv_fail(&e, 502, "upstream_unavailable", NULL, "the %s endpoint failed: %s", q->target_name, q->fail_msg);
    if (e.status) srv_sse_error(&q->out, &e);
    cJSON *tc = synth_chunk(q, -1, NULL, 0, NULL);
    cJSON *t = tc ? trace_json(q) : NULL;
    if (t) {
        cJSON_AddItemToObject(tc, "nindub", t);
        emit_json(q, tc);
    }
    cJSON_Delete(tc);
    srv_sse_done(&q->out);
    q->ended = true;
}

char *oq_stream_begin(oreq *q, int *status) {
    pump_headers(q);
    if (orch_xfer_failure(q->x, NULL, 0) != ORCH_XFER_OK && !orch_xfer_headers_done(q->x)) return upstream_error(q, status);
    if (orch_xfer_status(q->x) != 200) {
        orch_xfer_finish(q->x);
        return upstream_error(q, status);
    }
    if (!orch_xfer_is_sse(q->x)) {
        orch_xfer_finish(q->x);
        q->up_status = 200;
        srv_apierr e = {0};
        srv_fail(&e, 502, "upstream_bad_answer", NULL, "the %s endpoint did not stream (no text/event-stream answer)",
                 q->target_name);
        *status = 502;
        return srv_error_json(&e);
    }
    q->up_status = 200;
    *status = 200;
    return NULL;
}

void oq_stream_pump(oreq *q, int wait_ms) {
    if (q->ended) return;
    if (!orch_xfer_done(q->x)) {
        orch_xfer_pump(q->x, wait_ms);
        if (!orch_xfer_done(q->x) && client_gone(q)) orch_xfer_abort(q->x);
    }
    if (orch_xfer_done(q->x)) stream_end(q);
}

/* ---------------------------------------------------------------- metrics */

void oq_account(oreq *q) {
    orch_server *s = q->s;
    orch_metrics *m = &s->met;
    pthread_mutex_lock(&s->mu);
    m->requests++;
    m->by_route[q->route >= 0 ? (size_t)q->route : s->cfg->n_routes]++;
    if (q->route >= 0 && (int)q->rr.path < OM_PATH_N) m->by_path[q->rr.path]++;
    for (int k = 0; k < ORCH_K_COUNT; k++) {
        m->red_in[k] += q->c_in.by_kind[k];
        m->red_out[k] += q->c_out.by_kind[k];
    }
    m->restored += q->restored;
    if (q->fail > ORCH_XFER_OK && q->fail <= ORCH_XFER_INTERNAL) m->up_fail[q->fail]++;
    if (q->up_status && (q->up_status < 200 || q->up_status >= 300)) m->up_status_err++;
    m->ctx_in += q->ctx_in;
    m->ctx_kept += q->ctx_kept;
    if (q->guard_ran) {
        m->guard_runs++;
        m->guard_fixes += (uint64_t)q->gsum.fixes;
        m->guard_ok += q->gsum.ok;
        m->guard_failing += !q->gsum.ok;
    }
    double end = q->t_end ? q->t_end : nd_time_s();
    m->seconds_sum += end - q->t0;
    m->seconds_n++;
    if (q->t_first) {
        m->first_byte_sum += q->t_first - q->t0;
        m->first_byte_n++;
    }
    pthread_mutex_unlock(&s->mu);
}
