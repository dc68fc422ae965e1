/* OpenAI request parsing/validation and response JSON (chat.completion, text_completion,
 * their stream chunks, errors). Pure functions of their inputs: the fuzz target
 * fuzz/fuzz_serve_json.c drives srv_req_parse with arbitrary bytes. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "serve/srv_internal.h"

/* ================================================================ errors */

static const char *type_for_status(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    case 500: return "server_error";
    default: return "invalid_request_error";
    }
}

int srv_fail(srv_apierr *e, int status, const char *code, const char *param, const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    e->type = type_for_status(status);
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static char *print_free(cJSON *j) {
    if (!j) return NULL;
    char *p = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!p) return NULL;
    char *q = nd_strdup(p); /* callers free with nd_free */
    cJSON_free(p);
    return q;
}

static cJSON *error_obj(const srv_apierr *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    char *msg = srv_utf8_clean(e->msg, strlen(e->msg));
    cJSON_AddStringToObject(o, "message", msg ? msg : "error");
    nd_free(msg);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : type_for_status(e->status));
    if (e->param[0]) cJSON_AddStringToObject(o, "param", e->param);
    else cJSON_AddNullToObject(o, "param");
    if (e->code) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    return root;
}

char *srv_error_json(const srv_apierr *e) { return print_free(error_obj(e)); }

/* ================================================================ UTF-8 */

char *srv_utf8_clean(const char *s, size_t n) {
    uint64_t cap;
    if (!nd_mul_ok(n, 3, &cap) || !nd_add_ok(cap, 1, &cap)) return NULL;
    char *o = nd_malloc((size_t)cap), *w = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        int k = s[i] ? nd_utf8_seq_len((const uint8_t *)s + i, n - i) : 0;
        if (k > 0) {
            memcpy(w, s + i, (size_t)k);
            w += k;
            i += (size_t)k;
        } else {
            memcpy(w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    *w = 0;
    return o;
}

/* ================================================================ request parsing */

/* A field, with JSON null treated as absent. */
static cJSON *field(const cJSON *o, const char *key) {
    cJSON *f = cJSON_GetObjectItemCaseSensitive(o, key);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

static int get_num(const cJSON *o, const char *key, double lo, double hi, bool integer, double *out,
                   srv_apierr *e) {
    cJSON *f = field(o, key);
    if (!f) return 0;
    if (!cJSON_IsNumber(f))
        return srv_fail(e, 400, "invalid_type", key, "'%s' must be a number", key);
    double v = f->valuedouble;
    if (!isfinite(v) || v < lo || v > hi)
        return srv_fail(e, 400, "invalid_value", key, "'%s' must be in [%g, %g]", key, lo, hi);
    if (integer && v != floor(v))
        return srv_fail(e, 400, "invalid_type", key, "'%s' must be an integer", key);
    *out = v;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, bool *out, srv_apierr *e) {
    cJSON *f = field(o, key);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return srv_fail(e, 400, "invalid_type", key, "'%s' must be a boolean", key);
    *out = cJSON_IsTrue(f);
    return 1;
}

static int dup_string(const cJSON *f, const char *param, char **out, size_t *len, srv_apierr *e) {
    if (!cJSON_IsString(f) || !f->valuestring)
        return srv_fail(e, 400, "invalid_type", param, "'%s' must be a string", param);
    size_t n = strlen(f->valuestring);
    if (!(*out = nd_strndup(f->valuestring, n)))
        return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    if (len) *len = n;
    return 0;
}

/* content: a string, null, or an array of {"type":"text","text":...} parts. */
static int msg_content(const cJSON *c, char **out, srv_apierr *e) {
    if (!c) return (*out = nd_strdup("")) ? 0 : srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    if (cJSON_IsString(c)) return dup_string(c, "messages", out, NULL, e);
    if (!cJSON_IsArray(c))
        return srv_fail(e, 400, "invalid_type", "messages", "message content must be a string or an array of parts");
    nd_buf b = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
            nd_buf_free(&b);
            return srv_fail(e, 400, "unsupported_content", "messages",
                            "only text content parts ({\"type\":\"text\",\"text\":...}) are supported");
        }
        if (nd_buf_append(&b, text->valuestring, strlen(text->valuestring))) {
            nd_buf_free(&b);
            return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
        }
    }
    if (!b.data && nd_buf_append(&b, "", 0)) return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    *out = b.data;
    return 0;
}

static int parse_messages(srv_req *r, const cJSON *root, srv_apierr *e) {
    cJSON *msgs = field(root, "messages");
    if (!msgs) return srv_fail(e, 400, "missing_field", "messages", "'messages' is required");
    int n = cJSON_GetArraySize(msgs);
    if (!cJSON_IsArray(msgs) || n < 1)
        return srv_fail(e, 400, "invalid_value", "messages", "'messages' must be a non-empty array");
    if (n > SRV_MAX_MESSAGES)
        return srv_fail(e, 400, "invalid_value", "messages", "at most %d messages", SRV_MAX_MESSAGES);
    if (!(r->msgs = nd_calloc((size_t)n, sizeof *r->msgs)))
        return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return srv_fail(e, 400, "invalid_value", "messages", "messages[%zu] needs a string 'role'", r->n_msgs);
        const char *rn = NULL;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            if (!strcmp(role->valuestring, roles[k])) rn = k == 1 ? "system" : roles[k];
        if (!rn)
            return srv_fail(e, 400, "invalid_value", "messages",
                            "messages[%zu]: unknown role (system, developer, user, assistant, tool)", r->n_msgs);
        chat_msg *cm = &r->msgs[r->n_msgs];
        if (!(cm->role = nd_strdup(rn))) return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
        r->n_msgs++;
        char *content = NULL;
        if (msg_content(field(m, "content"), &content, e)) return -1;
        cm->content = content;
    }
    return 0;
}

static int parse_prompt(srv_req *r, const cJSON *root, srv_apierr *e) {
    cJSON *p = field(root, "prompt");
    if (!p) return srv_fail(e, 400, "missing_field", "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && !cJSON_IsNumber(p->child)) p = p->child;
    if (cJSON_IsString(p)) return dup_string(p, "prompt", &r->prompt, &r->prompt_len, e);
    if (!cJSON_IsArray(p))
        return srv_fail(e, 400, "invalid_type", "prompt", "'prompt' must be a string or an array of token ids");
    int n = cJSON_GetArraySize(p);
    if (n < 1 || n > SRV_MAX_PROMPT_IDS)
        return srv_fail(e, 400, "invalid_value", "prompt", "a token-id prompt needs 1 to %d ids", SRV_MAX_PROMPT_IDS);
    if (!(r->prompt_ids = nd_malloc((size_t)n * sizeof *r->prompt_ids)))
        return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, p) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || !(v >= 0 && v <= INT32_MAX) || v != floor(v))
            return srv_fail(e, 400, "invalid_value", "prompt",
                            "only one prompt per request (n = 1): a string, [string] or an array of token ids");
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)v;
    }
    return 0;
}

static int parse_stop(srv_req *r, const cJSON *root, srv_apierr *e) {
    cJSON *s = field(root, "stop");
    if (!s) return 0;
    if (cJSON_IsString(s)) {
        if (!*s->valuestring) return 0;
        if (strlen(s->valuestring) > SRV_MAX_STOP_LEN)
            return srv_fail(e, 400, "invalid_value", "stop", "stop strings are at most %d bytes", SRV_MAX_STOP_LEN);
        return dup_string(s, "stop", &r->stops[r->n_stops++], NULL, e);
    }
    if (!cJSON_IsArray(s)) return srv_fail(e, 400, "invalid_type", "stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(s) > SRV_MAX_STOPS)
        return srv_fail(e, 400, "invalid_value", "stop", "at most %d stop strings", SRV_MAX_STOPS);
    const cJSON *it;
    cJSON_ArrayForEach(it, s) {
        if (!cJSON_IsString(it)) return srv_fail(e, 400, "invalid_type", "stop", "'stop' entries must be strings");
        if (strlen(it->valuestring) > SRV_MAX_STOP_LEN)
            return srv_fail(e, 400, "invalid_value", "stop", "stop strings are at most %d bytes", SRV_MAX_STOP_LEN);
        if (!*it->valuestring) continue;
        if (dup_string(it, "stop", &r->stops[r->n_stops++], NULL, e)) return -1;
    }
    return 0;
}

static int parse_format(srv_req *r, const cJSON *root, srv_apierr *e) {
    cJSON *g = field(root, "grammar");
    if (g) {
        if (dup_string(g, "grammar", &r->grammar, NULL, e)) return -1;
        if (!*r->grammar) {
            nd_free(r->grammar);
            r->grammar = NULL;
        }
    }
    cJSON *rf = field(root, "response_format");
    if (!rf) return 0;
    cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(type))
        return srv_fail(e, 400, "invalid_value", "response_format", "'response_format' needs a string 'type'");
    if (!strcmp(type->valuestring, "text")) r->rf = SRV_RF_TEXT;
    else if (!strcmp(type->valuestring, "json_object")) r->rf = SRV_RF_JSON_OBJECT;
    else if (!strcmp(type->valuestring, "json_schema")) r->rf = SRV_RF_JSON_SCHEMA;
    else
        return srv_fail(e, 400, "invalid_value", "response_format.type",
                        "response_format.type must be text, json_object or json_schema");
    if (r->rf == SRV_RF_JSON_SCHEMA) {
        /* OpenAI: {"type":"json_schema","json_schema":{"name":..,"schema":{...},"strict":..}};
         * llama.cpp also takes {"type":"json_object","schema":{...}}. */
        cJSON *js = field(rf, "json_schema"), *schema = js ? field(js, "schema") : NULL;
        if (!schema) schema = field(rf, "schema");
        if (!schema || !(cJSON_IsObject(schema) || cJSON_IsBool(schema)))
            return srv_fail(e, 400, "invalid_value", "response_format.json_schema.schema",
                            "json_schema needs a 'schema' object");
        char *p = cJSON_PrintUnformatted(schema);
        if (!p || !(r->schema = nd_strdup(p))) {
            cJSON_free(p);
            return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
        }
        cJSON_free(p);
    } else if (r->rf == SRV_RF_JSON_OBJECT) {
        cJSON *schema = field(rf, "schema");
        if (schema) {
            char *p = cJSON_PrintUnformatted(schema);
            if (!p || !(r->schema = nd_strdup(p))) {
                cJSON_free(p);
                return srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
            }
            cJSON_free(p);
            r->rf = SRV_RF_JSON_SCHEMA;
        }
    }
    if (r->grammar && r->rf != SRV_RF_TEXT)
        return srv_fail(e, 400, "invalid_value", "grammar", "use either 'grammar' or a JSON response_format, not both");
    return 0;
}

static int parse_sampling(srv_req *r, const cJSON *root, srv_apierr *e) {
    double v;
    int k;
    r->sp = smp_default_params();
    if ((k = get_num(root, "temperature", 0, 100, false, &v, e)) < 0) return -1;
    if (k) r->sp.temp = (float)v;
    if ((k = get_num(root, "top_p", 0, 1, false, &v, e)) < 0) return -1;
    if (k) r->sp.top_p = v <= 0 ? 1e-6f : (float)v;
    if ((k = get_num(root, "top_k", 0, 1e9, true, &v, e)) < 0) return -1;
    if (k) r->sp.top_k = (int32_t)v;
    if ((k = get_num(root, "min_p", 0, 1, false, &v, e)) < 0) return -1;
    if (k) r->sp.min_p = (float)v;
    if ((k = get_num(root, "presence_penalty", -2, 2, false, &v, e)) < 0) return -1;
    if (k) r->sp.presence_penalty = (float)v;
    if ((k = get_num(root, "frequency_penalty", -2, 2, false, &v, e)) < 0) return -1;
    if (k) r->sp.freq_penalty = (float)v;
    if ((k = get_num(root, "repeat_penalty", 1e-3, 100, false, &v, e)) < 0) return -1;
    if (k) r->sp.repeat_penalty = (float)v;
    if ((k = get_num(root, "seed", -9.2e18, 1.8e19, true, &v, e)) < 0) return -1;
    if (k) {
        r->sp.seed = v < 0 ? (uint64_t)(int64_t)v : (uint64_t)v;
        r->seed_set = true;
    }
    return 0;
}

static int parse_limits(srv_req *r, const cJSON *root, srv_apierr *e) {
    double v;
    int k;
    r->max_tokens = -1;
    if ((k = get_num(root, "max_tokens", 0, 1 << 24, true, &v, e)) < 0) return -1;
    if (k) r->max_tokens = (int64_t)v;
    if ((k = get_num(root, "max_completion_tokens", 0, 1 << 24, true, &v, e)) < 0) return -1;
    if (k) r->max_tokens = (int64_t)v;
    if (r->max_tokens == 0)
        return srv_fail(e, 400, "invalid_value", k ? "max_completion_tokens" : "max_tokens",
                        "max_tokens must be at least 1");
    if ((k = get_num(root, "n", 1, 1e9, true, &v, e)) < 0) return -1;
    if (k && v != 1) return srv_fail(e, 400, "invalid_value", "n", "only n = 1 is supported");
    if (get_bool(root, "stream", &r->stream, e) < 0) return -1;
    if (get_bool(root, "ignore_eos", &r->ignore_eos, e) < 0) return -1;
    cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return srv_fail(e, 400, "invalid_type", "stream_options", "'stream_options' must be an object");
        if (get_bool(so, "include_usage", &r->include_usage, e) < 0) return -1;
    }
    /* logprobs: chat takes a boolean + top_logprobs (0..20), completions an integer (0..5) */
    r->logprobs = -1;
    cJSON *lp = field(root, "logprobs");
    if (r->ep == SRV_EP_CHAT) {
        bool on = false;
        if (get_bool(root, "logprobs", &on, e) < 0) return -1;
        if ((k = get_num(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, true, &v, e)) < 0) return -1;
        if (k && !on)
            return srv_fail(e, 400, "invalid_value", "top_logprobs", "top_logprobs needs logprobs: true");
        if (on) r->logprobs = k ? (int)v : 0;
    } else if (lp) {
        if ((k = get_num(root, "logprobs", 0, 5, true, &v, e)) < 0) return -1;
        r->logprobs = (int)v;
    }
    return 0;
}

/* A drafter name of the "speculative" field. */
static int spec_name(const char *v, const char *param, srv_spec_mode *out, srv_apierr *e) {
    if (!strcmp(v, "off")) *out = SRV_SPEC_OFF;
    else if (!strcmp(v, "ngram")) *out = SRV_SPEC_NGRAM;
    else if (!strcmp(v, "draft")) *out = SRV_SPEC_DRAFT;
    else return srv_fail(e, 400, "invalid_value", param, "'%s' must be \"off\", \"ngram\" or \"draft\"", param);
    return 0;
}

/* "speculative" (extension): false | true | "off" | "ngram" | "draft" |
 * {"type": "off"|"ngram"|"draft", "draft_max": 1..SPEC_MAX_DRAFT, "p_min": 0..1}. Whether
 * the server can honour it is checked with the task (srv_task_new). */
static int parse_spec(srv_req *r, const cJSON *root, srv_apierr *e) {
    r->spec_p_min = -1;
    cJSON *f = field(root, "speculative");
    if (!f) return 0;
    if (cJSON_IsBool(f)) {
        r->spec = cJSON_IsTrue(f) ? SRV_SPEC_SERVER : SRV_SPEC_OFF;
        return 0;
    }
    if (cJSON_IsString(f)) return spec_name(f->valuestring, "speculative", &r->spec, e);
    if (!cJSON_IsObject(f))
        return srv_fail(e, 400, "invalid_type", "speculative",
                        "'speculative' must be a boolean, \"off\", \"ngram\", \"draft\" or an object "
                        "{\"type\", \"draft_max\", \"p_min\"}");
    r->spec = SRV_SPEC_SERVER;
    const cJSON *it;
    cJSON_ArrayForEach(it, f) {
        const char *k = it->string ? it->string : "";
        if (strcmp(k, "type") && strcmp(k, "draft_max") && strcmp(k, "p_min"))
            return srv_fail(e, 400, "invalid_value", "speculative",
                            "'speculative' has an unknown field '%.60s' (type, draft_max, p_min)", k);
    }
    cJSON *type = field(f, "type");
    if (type && !cJSON_IsString(type))
        return srv_fail(e, 400, "invalid_type", "speculative.type", "'speculative.type' must be a string");
    if (type && spec_name(type->valuestring, "speculative.type", &r->spec, e)) return -1;
    cJSON *dm = field(f, "draft_max"), *pm = field(f, "p_min");
    if (dm && (!cJSON_IsNumber(dm) || dm->valuedouble != floor(dm->valuedouble)))
        return srv_fail(e, 400, "invalid_type", "speculative.draft_max", "'speculative.draft_max' must be an integer");
    if (dm && !(dm->valuedouble >= 1 && dm->valuedouble <= SPEC_MAX_DRAFT))
        return srv_fail(e, 400, "invalid_value", "speculative.draft_max", "'speculative.draft_max' must be in [1, %d]",
                        SPEC_MAX_DRAFT);
    if (dm) r->spec_draft_max = (int)dm->valuedouble;
    if (pm && !cJSON_IsNumber(pm))
        return srv_fail(e, 400, "invalid_type", "speculative.p_min", "'speculative.p_min' must be a number");
    if (pm && !(pm->valuedouble >= 0 && pm->valuedouble <= 1))
        return srv_fail(e, 400, "invalid_value", "speculative.p_min", "'speculative.p_min' must be in [0, 1]");
    if (pm) r->spec_p_min = (float)pm->valuedouble;
    return 0;
}

int srv_req_parse(srv_req *r, srv_ep ep, const char *body, size_t len, srv_apierr *e) {
    memset(r, 0, sizeof *r);
    r->ep = ep;
    if (!body || !len) return srv_fail(e, 400, "invalid_json", NULL, "the request body must be a JSON object");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        return srv_fail(e, 400, "invalid_json", NULL, "the request body is not valid JSON (near byte %zu)", at);
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        srv_fail(e, 400, "invalid_json", NULL, "the request body must be a JSON object");
        goto out;
    }
    cJSON *model = field(root, "model");
    if (model && dup_string(model, "model", &r->model, NULL, e)) goto out;
    if (ep == SRV_EP_CHAT ? parse_messages(r, root, e) : parse_prompt(r, root, e)) goto out;
    if (parse_sampling(r, root, e) || parse_limits(r, root, e) || parse_stop(r, root, e) ||
        parse_format(r, root, e) || parse_spec(r, root, e))
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc) srv_req_free(r);
    return rc;
}

void srv_req_free(srv_req *r) {
    if (!r) return;
    nd_free(r->model);
    for (size_t i = 0; i < r->n_msgs; i++) {
        nd_free((char *)r->msgs[i].role);
        nd_free((char *)r->msgs[i].content);
    }
    nd_free(r->msgs);
    nd_free(r->prompt);
    nd_free(r->prompt_ids);
    for (int i = 0; i < r->n_stops; i++) nd_free(r->stops[i]);
    nd_free(r->schema);
    nd_free(r->grammar);
    srv_ep ep = r->ep;
    memset(r, 0, sizeof *r);
    r->ep = ep;
}

/* ================================================================ responses */

cJSON *srv_logprob_entry(const srv_t *s, const float *logits, int32_t tok, int top) {
    int64_t V = s->n_vocab;
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        if (isfinite(logits[i])) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum > 0 ? sum : 1);
    int32_t best[SRV_MAX_TOP_LOGPROBS];
    int nb = 0;
    if (top > SRV_MAX_TOP_LOGPROBS) top = SRV_MAX_TOP_LOGPROBS;
    for (int32_t i = 0; i < (int32_t)V && top > 0; i++) { /* insertion into a sorted top list */
        if (!isfinite(logits[i])) continue;
        if (nb == top && logits[i] <= logits[best[nb - 1]]) continue;
        int j = nb < top ? nb++ : nb - 1;
        while (j > 0 && logits[best[j - 1]] < logits[i]) {
            best[j] = best[j - 1];
            j--;
        }
        best[j] = i;
    }
    cJSON *ent = NULL;
    for (int k = -1; k < nb; k++) {
        int32_t id = k < 0 ? tok : best[k];
        const char *piece = "";
        size_t n = 0;
        if (id < tok_n_vocab(s->vocab)) tok_piece_view(s->vocab, id, false, &piece, &n);
        char *clean = srv_utf8_clean(piece, n);
        cJSON *o = cJSON_CreateObject(), *bytes = cJSON_AddArrayToObject(o, "bytes");
        cJSON_AddStringToObject(o, "token", clean ? clean : "");
        nd_free(clean);
        double lp = isfinite(logits[id]) ? logits[id] - lse : -9999.0;
        cJSON_AddNumberToObject(o, "logprob", lp);
        for (size_t b = 0; b < n; b++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber((uint8_t)piece[b]));
        if (k < 0) {
            ent = o;
            cJSON_AddArrayToObject(ent, "top_logprobs");
        } else {
            cJSON_AddItemToArray(cJSON_GetObjectItem(ent, "top_logprobs"), o);
        }
    }
    return ent;
}

/* Legacy completions logprobs {tokens, token_logprobs, top_logprobs, text_offset} from
 * chat-style entries. */
static cJSON *legacy_logprobs(const cJSON *entries, size_t offset0) {
    cJSON *o = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(o, "tokens"), *lps = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs"), *offs = cJSON_AddArrayToObject(o, "text_offset");
    size_t off = offset0;
    const cJSON *e;
    cJSON_ArrayForEach(e, entries) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(e, "token"));
        cJSON_AddItemToArray(toks, cJSON_CreateString(t ? t : ""));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(cJSON_GetNumberValue(cJSON_GetObjectItem(e, "logprob"))));
        cJSON *m = cJSON_CreateObject();
        const cJSON *alt;
        cJSON_ArrayForEach(alt, cJSON_GetObjectItem(e, "top_logprobs")) {
            const char *at = cJSON_GetStringValue(cJSON_GetObjectItem(alt, "token"));
            if (at && !cJSON_GetObjectItem(m, at))
                cJSON_AddNumberToObject(m, at, cJSON_GetNumberValue(cJSON_GetObjectItem(alt, "logprob")));
        }
        cJSON_AddItemToArray(tops, m);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += cJSON_GetArraySize(cJSON_GetObjectItem(e, "bytes"));
    }
    return o;
}

static cJSON *usage_obj(const srv_task *t) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)t->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)t->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(t->n_prompt + (size_t)t->n_gen));
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", (double)t->n_cached);
    return u;
}

/* Extension beside "usage": what speculative decoding did for the request. */
static void add_spec_usage(cJSON *o, const srv_task *t) {
    if (t->spec.kind == SPEC_NONE) return;
    cJSON *sp = cJSON_AddObjectToObject(o, "speculative");
    cJSON_AddStringToObject(sp, "type", t->spec.kind == SPEC_NGRAM ? "ngram" : "draft");
    cJSON_AddNumberToObject(sp, "drafted", (double)t->spec_drafted);
    cJSON_AddNumberToObject(sp, "accepted", (double)t->spec_accepted);
}

static cJSON *envelope(const srv_task *t, bool chunk) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", t->id);
    bool chat = t->req.ep == SRV_EP_CHAT;
    cJSON_AddStringToObject(o, "object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                              : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)t->created);
    cJSON_AddStringToObject(o, "model", t->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "nindub");
    return o;
}

char *srv_json_final(const srv_task *t) {
    cJSON *o = envelope(t, false), *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    char *text = srv_utf8_clean(t->text ? t->text : "", t->text ? strlen(t->text) : 0);
    if (t->req.ep == SRV_EP_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text ? text : "");
        if (t->logprobs) {
            cJSON *lp = cJSON_AddObjectToObject(c, "logprobs");
            cJSON_AddItemToObject(lp, "content", cJSON_Duplicate(t->logprobs, true));
        } else {
            cJSON_AddNullToObject(c, "logprobs");
        }
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
        if (t->logprobs) cJSON_AddItemToObject(c, "logprobs", legacy_logprobs(t->logprobs, 0));
        else cJSON_AddNullToObject(c, "logprobs");
    }
    nd_free(text);
    cJSON_AddStringToObject(c, "finish_reason", t->finish ? t->finish : "stop");
    cJSON_AddItemToObject(o, "usage", usage_obj(t));
    add_spec_usage(o, t);
    return print_free(o);
}

static int sse_append(nd_buf *out, cJSON *j) {
    char *p = print_free(j);
    if (!p) return ND_ENOMEM;
    int rc = nd_buf_printf(out, "data: %s\n\n", p);
    nd_free(p);
    return rc;
}

int srv_sse_delta(nd_buf *out, const srv_task *t, const char *text, size_t len, bool role, const char *finish,
                  const cJSON *lp) {
    cJSON *o = envelope(t, true), *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    char *clean = srv_utf8_clean(text ? text : "", text ? len : 0);
    if (t->req.ep == SRV_EP_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (len || role) cJSON_AddStringToObject(d, "content", clean ? clean : "");
        if (lp) {
            cJSON *l = cJSON_AddObjectToObject(c, "logprobs"), *arr = cJSON_AddArrayToObject(l, "content");
            cJSON_AddItemToArray(arr, cJSON_Duplicate(lp, true));
        } else {
            cJSON_AddNullToObject(c, "logprobs");
        }
    } else {
        cJSON_AddStringToObject(c, "text", clean ? clean : "");
        if (lp) {
            cJSON *arr = cJSON_CreateArray();
            cJSON_AddItemToArray(arr, cJSON_Duplicate(lp, true));
            cJSON_AddItemToObject(c, "logprobs", legacy_logprobs(arr, 0));
            cJSON_Delete(arr);
        } else {
            cJSON_AddNullToObject(c, "logprobs");
        }
    }
    nd_free(clean);
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    if (t->req.include_usage) cJSON_AddNullToObject(o, "usage");
    return sse_append(out, o);
}

int srv_sse_usage(nd_buf *out, const srv_task *t) {
    cJSON *o = envelope(t, true);
    cJSON_AddArrayToObject(o, "choices");
    cJSON_AddItemToObject(o, "usage", usage_obj(t));
    add_spec_usage(o, t);
    return sse_append(out, o);
}

int srv_sse_error(nd_buf *out, const srv_apierr *e) { return sse_append(out, error_obj(e)); }

int srv_sse_done(nd_buf *out) { return nd_buf_append(out, "data: [DONE]\n\n", 14); }

char *srv_json_models(const srv_t *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data"), *m = cJSON_CreateObject();
    cJSON_AddItemToArray(data, m);
    cJSON_AddStringToObject(m, "id", s->model_id ? s->model_id : "");
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "nindub");
    if (s->m) {
        cJSON *meta = cJSON_AddObjectToObject(m, "meta");
        cJSON_AddStringToObject(meta, "architecture", s->m->hp.arch_name);
        cJSON_AddNumberToObject(meta, "n_vocab", (double)s->n_vocab);
        cJSON_AddNumberToObject(meta, "n_ctx_slot", (double)s->n_ctx);
        cJSON_AddNumberToObject(meta, "n_ctx_train", (double)s->m->hp.n_ctx_train);
        cJSON_AddNumberToObject(meta, "n_slots", s->n_slots);
        cJSON_AddStringToObject(meta, "chat_template", chat_tmpl_name(s->tmpl));
        cJSON_AddStringToObject(meta, "speculative",
                                s->spec.kind == SPEC_DRAFT ? "draft" : s->spec.kind == SPEC_NGRAM ? "ngram" : "off");
    }
    return print_free(o);
}

/* ================================================================ /tokenize, /detokenize */

static cJSON *parse_object(const char *body, size_t len, srv_apierr *e) {
    cJSON *root = body && len ? cJSON_ParseWithLengthOpts(body, len, NULL, false) : NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        srv_fail(e, 400, "invalid_json", NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

char *srv_json_tokenize(const srv_t *s, const char *body, size_t len, srv_apierr *e) {
    cJSON *root = parse_object(body, len, e), *out = NULL;
    if (!root) return NULL;
    bool add_special = false, parse_special = true, pieces = false;
    cJSON *content = field(root, "content");
    int32_t *ids = NULL;
    size_t n = 0;
    nd_err err = {0};
    if (!cJSON_IsString(content)) {
        srv_fail(e, 400, "invalid_type", "content", "'content' must be a string");
        goto done;
    }
    if (get_bool(root, "add_special", &add_special, e) < 0 || get_bool(root, "parse_special", &parse_special, e) < 0 ||
        get_bool(root, "with_pieces", &pieces, e) < 0)
        goto done;
    if (tok_encode(s->vocab, content->valuestring, strlen(content->valuestring), add_special, parse_special, &ids, &n,
                   &err)) {
        srv_fail(e, err.code == ND_ENOMEM ? 500 : 400, "invalid_value", "content", "%s", err.msg);
        goto done;
    }
    out = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(out, "tokens");
    for (size_t i = 0; i < n; i++) {
        if (!pieces) {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
            continue;
        }
        const char *p = "";
        size_t pl = 0;
        tok_piece_view(s->vocab, ids[i], true, &p, &pl);
        char *clean = srv_utf8_clean(p, pl);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", ids[i]);
        cJSON_AddStringToObject(o, "piece", clean ? clean : "");
        nd_free(clean);
        cJSON_AddItemToArray(arr, o);
    }
done:
    nd_free(ids);
    cJSON_Delete(root);
    return out ? print_free(out) : NULL;
}

char *srv_json_detokenize(const srv_t *s, const char *body, size_t len, srv_apierr *e) {
    cJSON *root = parse_object(body, len, e), *out = NULL;
    if (!root) return NULL;
    cJSON *toks = field(root, "tokens");
    int n = cJSON_GetArraySize(toks);
    int32_t *ids = NULL;
    char *text = NULL;
    size_t tl = 0, k = 0;
    nd_err err = {0};
    if (!cJSON_IsArray(toks) || n > SRV_MAX_PROMPT_IDS) {
        srv_fail(e, 400, "invalid_type", "tokens", "'tokens' must be an array of at most %d token ids", SRV_MAX_PROMPT_IDS);
        goto done;
    }
    if (n && !(ids = nd_malloc((size_t)n * sizeof *ids))) {
        srv_fail(e, 500, "out_of_memory", NULL, "out of memory");
        goto done;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, toks) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || !(v >= 0 && v < tok_n_vocab(s->vocab)) || v != floor(v)) {
            srv_fail(e, 400, "invalid_value", "tokens", "tokens[%zu] is not a token id of this vocabulary", k);
            goto done;
        }
        ids[k++] = (int32_t)v;
    }
    if (tok_decode(s->vocab, ids, k, 0, &text, &tl, &err)) {
        srv_fail(e, 500, "internal_error", NULL, "%s", err.msg);
        goto done;
    }
    char *clean = srv_utf8_clean(text ? text : "", text ? tl : 0);
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "content", clean ? clean : "");
    nd_free(clean);
done:
    nd_free(text);
    nd_free(ids);
    cJSON_Delete(root);
    return out ? print_free(out) : NULL;
}
