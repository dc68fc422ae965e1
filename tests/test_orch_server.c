/* nindub orchestrate, end to end on loopback: the orchestrator (in process) in front of a
 * recording fake main endpoint (libmicrohttpd, scripted answers) and, with the fixtures, in
 * front of a real `nindub serve` engine with the aidreams model; a libcurl client.
 *
 *  - nothing leaks: no secret value ever reaches the main endpoint; no placeholder ever
 *    reaches the user; the user's own values come back; foreign secrets are redacted; for
 *    non-stream answers and for streams cut into 1, 3, 7 and 64-byte chunks;
 *  - one placeholder per value across the turns of a conversation;
 *  - pruner (context field and fenced blocks), router (rules, system prompt, sampling
 *    defaults, URL targets), guard (every snippet of tests/data/orch/guard fixed by a
 *    scripted main model; streamed guarded answers), trace header, /metrics;
 *  - hostile cases: unreachable main (502), stalls (504), garbage answers, bad stream events,
 *    upstream errors, malformed requests, huge context arrays, oversized bodies;
 *  - the helper path of the router with the aidreams model (always a valid label);
 *  - the official `openai` npm client through the orchestrator (fake main and real engine).
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <dirent.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "orch/orchestrator.h"
#include "orch_gen.h"
#include "serve/serve.h"
#include "t.h"

/* ================================================================ the fake main endpoint */

typedef struct fake {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    nd_buf seen;     /* every request body received, one per line */
    int n_req;
    int chunk;       /* stream: content bytes per event */
    char foreign[128];
    char auth[256];  /* last Authorization header */
} fake;

static fake F;

typedef struct fconn {
    nd_buf body;
} fconn;

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    nd_buf b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) nd_buf_append(&b, tmp, n);
    fclose(f);
    nd_buf_append(&b, "", 0);
    return b.data;
}

static const char *ext_lang(const char *name) {
    return name[0] == 'c' ? "c" : name[0] == 'p' ? "python" : "javascript";
}
static const char *ext_of(const char *name) { return name[0] == 'c' ? "c" : name[0] == 'p' ? "py" : "js"; }

/* guard mode: the first user message says "guard:<snippet>"; answers the broken code; asked
 * for a fix, the .step1 version when there is one and it was not the answer being fixed,
 * else the fixed one. */
static char *guard_answer(const cJSON *msgs) {
    const cJSON *m0 = NULL, *m, *last_assistant = NULL;
    int fixes = 0;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *r = cJSON_GetObjectItem(m, "role"), *c = cJSON_GetObjectItem(m, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(c)) continue;
        if (!strcmp(r->valuestring, "assistant")) last_assistant = c;
        if (strcmp(r->valuestring, "user")) continue;
        if (!m0) m0 = c;
        fixes += strstr(c->valuestring, "does not pass the checker") != NULL;
    }
    const char *g = m0 ? strstr(m0->valuestring, "guard:") : NULL;
    if (!g) return NULL;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(g + 6, " \n"), g + 6);
    char path[512];
    char *code = NULL;
    if (fixes) {
        snprintf(path, sizeof path, "tests/data/orch/guard/%s.step1.%s", name, ext_of(name));
        code = read_text(path);
        if (code && last_assistant && strstr(last_assistant->valuestring, code)) {
            free(code);
            code = NULL;
        }
    }
    if (!code) {
        snprintf(path, sizeof path, "tests/data/orch/guard/%s.%s.%s", name, fixes ? "fixed" : "broken", ext_of(name));
        code = read_text(path);
    }
    if (!code) return NULL;
    nd_buf a = {0};
    nd_buf_printf(&a, "Here is the code:\n\n```%s\n%s%s```\n\nIt should work now.", ext_lang(name), code,
                  code[0] && code[strlen(code) - 1] == '\n' ? "" : "\n");
    free(code);
    return a.data;
}

static enum MHD_Result fake_reply(struct MHD_Connection *mc, int status, const char *ctype, const char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void add_chunk(nd_buf *sse, const char *delta_key, const char *text, size_t n, const char *finish) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", "chatcmpl-fake");
    cJSON_AddStringToObject(c, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(c, "created", 1700000000);
    cJSON_AddStringToObject(c, "model", "fake");
    cJSON *chs = cJSON_AddArrayToObject(c, "choices");
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *d = cJSON_AddObjectToObject(ch, "delta");
    if (delta_key) {
        char *z = strndup(text, n);
        cJSON_AddStringToObject(d, delta_key, z);
        free(z);
    }
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(chs, ch);
    char *s = cJSON_PrintUnformatted(c);
    nd_buf_printf(sse, "data: %s\n\n", s);
    free(s);
    cJSON_Delete(c);
}

static enum MHD_Result fake_access(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                   const char *version, const char *up, size_t *up_size, void **con_cls) {
    (void)cls, (void)url, (void)method, (void)version;
    fconn *c = *con_cls;
    if (!c) {
        *con_cls = calloc(1, sizeof(fconn));
        return MHD_YES;
    }
    if (*up_size) {
        nd_buf_append(&c->body, up, *up_size);
        *up_size = 0;
        return MHD_YES;
    }
    const char *auth = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    pthread_mutex_lock(&F.mu);
    F.n_req++;
    nd_buf_append(&F.seen, c->body.data ? c->body.data : "", c->body.len);
    nd_buf_append(&F.seen, "\n", 1);
    snprintf(F.auth, sizeof F.auth, "%s", auth ? auth : "");
    int chunk = F.chunk > 0 ? F.chunk : 5;
    pthread_mutex_unlock(&F.mu);
    cJSON *req = cJSON_ParseWithLength(c->body.data ? c->body.data : "", c->body.len);
    const cJSON *model = cJSON_GetObjectItem(req, "model");
    const char *mode = cJSON_IsString(model) ? model->valuestring : "echo";
    const cJSON *msgs = cJSON_GetObjectItem(req, "messages");
    bool stream = cJSON_IsTrue(cJSON_GetObjectItem(req, "stream"));
    enum MHD_Result ret;
    if (!strcmp(mode, "stall")) sleep_ms(3000);
    if (!strcmp(mode, "garbage")) {
        ret = fake_reply(mc, 200, stream ? "text/event-stream" : "application/json",
                         stream ? "data: {this is not json\n\n" : "<html>this is not json</html>");
    } else if (!strcmp(mode, "fail500")) {
        ret = fake_reply(mc, 500, "application/json", "{\"error\":{\"message\":\"the GPU caught fire\"}}");
    } else if (!strcmp(mode, "no-such-model")) {
        ret = fake_reply(mc, 404, "application/json",
                         "{\"error\":{\"message\":\"model 'no-such-model' does not exist\",\"type\":\"not_found_error\","
                         "\"param\":\"model\",\"code\":\"model_not_found\"}}");
    } else if (!strcmp(mode, "nostream") && stream) {
        ret = fake_reply(mc, 200, "application/json", "{\"choices\":[]}");
    } else {
        /* the answer: guard script, a JSON object for response_format, or an echo of the last
         * user message (placeholders included) plus a secret that is not the user's */
        char *ans = !strcmp(mode, "guard") ? guard_answer(msgs) : NULL;
        nd_buf a = {0};
        if (ans) {
            nd_buf_append(&a, ans, strlen(ans));
            free(ans);
        } else if (cJSON_GetObjectItem(req, "response_format")) {
            nd_buf_printf(&a, "{\"name\":\"Al\",\"age\":3}");
        } else {
            const cJSON *last = NULL, *m;
            cJSON_ArrayForEach(m, msgs) last = m;
            const cJSON *ct = cJSON_GetObjectItem(last, "content");
            nd_buf_printf(&a, "You said: %s\nAlso, use this key: %s (not yours).", cJSON_IsString(ct) ? ct->valuestring : "",
                          F.foreign);
        }
        if (!stream) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "id", "chatcmpl-fake");
            cJSON_AddStringToObject(r, "object", "chat.completion");
            cJSON_AddNumberToObject(r, "created", 1700000000);
            cJSON_AddStringToObject(r, "model", "fake");
            cJSON *chs = cJSON_AddArrayToObject(r, "choices");
            cJSON *ch = cJSON_CreateObject();
            cJSON_AddNumberToObject(ch, "index", 0);
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", a.data);
            cJSON_AddStringToObject(ch, "finish_reason", "stop");
            cJSON_AddItemToArray(chs, ch);
            cJSON *u = cJSON_AddObjectToObject(r, "usage");
            cJSON_AddNumberToObject(u, "prompt_tokens", 10);
            cJSON_AddNumberToObject(u, "completion_tokens", 20);
            cJSON_AddNumberToObject(u, "total_tokens", 30);
            char *s = cJSON_PrintUnformatted(r);
            ret = fake_reply(mc, 200, "application/json", s);
            free(s);
            cJSON_Delete(r);
        } else {
            nd_buf sse = {0};
            add_chunk(&sse, "role", "assistant", 9, NULL);
            for (size_t off = 0; off < a.len; off += (size_t)chunk) {
                size_t n = a.len - off < (size_t)chunk ? a.len - off : (size_t)chunk;
                add_chunk(&sse, "content", a.data + off, n, NULL);
            }
            add_chunk(&sse, NULL, NULL, 0, "stop");
            const cJSON *so = cJSON_GetObjectItem(req, "stream_options");
            if (cJSON_IsTrue(cJSON_GetObjectItem(so, "include_usage")))
                nd_buf_printf(&sse, "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                                    "\"model\":\"fake\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
                                    "\"completion_tokens\":20,\"total_tokens\":30}}\n\n");
            if (!strcmp(mode, "badsse")) nd_buf_printf(&sse, "data: [1, 2\n\n");
            nd_buf_printf(&sse, "data: [DONE]\n\n");
            ret = fake_reply(mc, 200, "text/event-stream", sse.data);
            nd_buf_free(&sse);
        }
        nd_buf_free(&a);
    }
    cJSON_Delete(req);
    return ret;
}

static void fake_done(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)cls, (void)mc, (void)why;
    fconn *c = *con_cls;
    if (c) nd_buf_free(&c->body);
    free(c);
    *con_cls = NULL;
}

static int fake_start(void) {
    pthread_mutex_init(&F.mu, NULL);
    orch_gen("ghp", 999, F.foreign, sizeof F.foreign);
    F.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                           fake_access, NULL, MHD_OPTION_NOTIFY_COMPLETED, fake_done, NULL, MHD_OPTION_END);
    if (!F.d) return -1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(F.d, MHD_DAEMON_INFO_BIND_PORT);
    F.port = di ? di->port : 0;
    return F.port ? 0 : -1;
}

static void fake_reset(int chunk) {
    pthread_mutex_lock(&F.mu);
    F.seen.len = 0;
    if (F.seen.data) F.seen.data[0] = 0;
    F.n_req = 0;
    F.chunk = chunk;
    pthread_mutex_unlock(&F.mu);
}

/* ================================================================ the orchestrator */

typedef struct orch {
    orch_config *cfg;
    orch_server *s;
    int port;
} orch;

/* cfg_fmt: YAML; "%MAIN%" becomes the fake's base URL. */
static int orch_up(orch *o, const char *yaml, const orch_server_params *extra) {
    memset(o, 0, sizeof *o);
    nd_buf y = {0};
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", F.port);
    for (const char *p = yaml; *p;) {
        const char *h = strstr(p, "%MAIN%");
        size_t n = h ? (size_t)(h - p) : strlen(p);
        nd_buf_append(&y, p, n);
        if (!h) break;
        nd_buf_append(&y, url, strlen(url));
        p = h + 6;
    }
    nd_err err = {0};
    int rc = orch_config_parse(y.data, y.len, "test.yaml", &o->cfg, &err);
    nd_buf_free(&y);
    if (rc) {
        fprintf(stderr, "  config: %s\n", err.msg);
        return rc;
    }
    orch_server_params p = extra ? *extra : (orch_server_params){0};
    p.cfg = o->cfg;
    if (!(o->s = orch_server_new(&p, &err)) || orch_server_start(o->s, &err)) {
        fprintf(stderr, "  orchestrator: %s\n", err.msg);
        return -1;
    }
    o->port = orch_server_port(o->s);
    return 0;
}

static void orch_down(orch *o) {
    orch_server_free(o->s);
    orch_config_free(o->cfg);
    memset(o, 0, sizeof *o);
}

static const char BASE_CFG[] = "main: { url: '%MAIN%', timeout_s: 1.5 }\n"
                               "listen: { host: 127.0.0.1, port: 0 }\n"
                               "roles: { router: false }\n"
                               "sentinel: { outbound_redact: true }\n"
                               "pruner: { k: 2, budget_tokens: 10000 }\n";

/* ================================================================ the client */

typedef struct resp {
    int status;
    nd_buf body, hdrs;
} resp;

static size_t on_data(char *p, size_t s, size_t n, void *ud) {
    nd_buf_append(ud, p, s * n);
    return s * n;
}

static void resp_free(resp *r) {
    nd_buf_free(&r->body);
    nd_buf_free(&r->hdrs);
}

static int http(int port, const char *method, const char *path, const char *body, resp *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    r->status = rc == CURLE_OK ? (int)st : -1;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    nd_buf_append(&r->body, "", 0);
    nd_buf_append(&r->hdrs, "", 0);
    return r->status;
}

/* The text a client shows: message.content, or the concatenated delta.content of a stream
 * (checks the stream's shape: data lines, [DONE] last). */
static char *answer_text(const resp *r, bool stream, bool *well_formed) {
    nd_buf t = {0};
    *well_formed = true;
    if (!stream) {
        cJSON *j = cJSON_Parse(r->body.data);
        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "message"),
                                             "content");
        if (cJSON_IsString(c)) nd_buf_append(&t, c->valuestring, strlen(c->valuestring));
        else *well_formed = false;
        cJSON_Delete(j);
    } else {
        bool done = false;
        for (char *line = r->body.data; line && *line;) {
            char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) : strlen(line);
            if (n >= 6 && !strncmp(line, "data: ", 6)) {
                if (done) *well_formed = false;
                if (n == 12 && !strncmp(line + 6, "[DONE]", 6)) {
                    done = true;
                } else {
                    cJSON *j = cJSON_ParseWithLength(line + 6, n - 6);
                    if (!j) *well_formed = false;
                    const cJSON *ch;
                    cJSON_ArrayForEach(ch, cJSON_GetObjectItem(j, "choices")) {
                        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "content");
                        if (cJSON_IsString(c)) nd_buf_append(&t, c->valuestring, strlen(c->valuestring));
                    }
                    cJSON_Delete(j);
                }
            } else if (n && line[0] != ':') {
                *well_formed = false;
            }
            line = nl ? nl + 1 : NULL;
        }
        if (!done) *well_formed = false;
    }
    nd_buf_append(&t, "", 0);
    return t.data;
}

/* A placeholder anywhere: <NAME_123> or <SECRET_NAME_123>. */
static const char *find_placeholder(const char *s) {
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        const char *q = p + 1;
        while ((*q >= 'A' && *q <= 'Z') || *q == '_') q++;
        if (q == p + 1 || q[-1] != '_' || !(*q >= '0' && *q <= '9')) continue;
        while (*q >= '0' && *q <= '9') q++;
        if (*q == '>') return p;
    }
    return NULL;
}

static char *json_str(const char *s) { /* a JSON string literal for s (malloc) */
    cJSON *j = cJSON_CreateString(s);
    char *o = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return o;
}

/* ================================================================ nothing leaks */

typedef struct secret {
    const char *gen;   /* orch_gen name, or NULL: value is literal */
    const char *fmt;   /* the line carrying it */
    char value[600];
} secret;

static secret SECRETS[] = {
    {"aws_id", "export AWS_ACCESS_KEY_ID=%s\n", ""},
    {"ghp", "my github token is %s please keep it\n", ""},
    {"sk_live", "STRIPE_SECRET_KEY=%s\n", ""},
    {"openai_proj", "OPENAI_API_KEY=%s\n", ""},
    {"anthropic", "anthropic key: %s\n", ""},
    {"google", "const key = \"%s\";\n", ""},
    {"xoxb", "SLACK_BOT_TOKEN=%s\n", ""},
    {"npm", "//registry.npmjs.org/:_authToken=%s\n", ""},
    {"hf", "HF_TOKEN=%s\n", ""},
    {"jwt", "Authorization: Bearer %s\n", ""},
    {"sendgrid", "SENDGRID_API_KEY=%s\n", ""},
    {"visa", "my card is %s exp 12/29\n", ""},
    {"iban_de", "pay to IBAN %s today\n", ""},
    {NULL, "db_password = \"%s\"\n", "Tr0ub4dor&3xQ"},
    {NULL, "write to %s about it\n", "jane.doe@gmail.com"},
    {NULL, "call me at %s tomorrow\n", "+44 20 7946 0958"},
    {NULL, "psql postgres://admin:%s@db.internal:5432/app\n", "s3cr3tPassw0rd"},
};
#define N_SECRETS (sizeof SECRETS / sizeof SECRETS[0])

static void make_secrets(void) {
    for (size_t i = 0; i < N_SECRETS; i++)
        if (SECRETS[i].gen && orch_gen(SECRETS[i].gen, 7 + i, SECRETS[i].value, sizeof SECRETS[i].value))
            snprintf(SECRETS[i].value, sizeof SECRETS[i].value, "missing-generator-%zu", i);
}

static char *secret_message(void) {
    nd_buf b = {0};
    nd_buf_printf(&b, "Please review my config:\n");
    for (size_t i = 0; i < N_SECRETS; i++) nd_buf_printf(&b, SECRETS[i].fmt, SECRETS[i].value);
    return b.data;
}

static void check_no_leak(const char *what, bool stream, int chunk) {
    fake_reset(chunk);
    orch o;
    if (orch_up(&o, BASE_CFG, NULL)) {
        T_FAILF("%s: orchestrator did not start", what);
        return;
    }
    char *msg = secret_message(), *js = json_str(msg);
    nd_buf body = {0};
    nd_buf_printf(&body, "{\"model\":\"echo\",\"stream\":%s,\"messages\":[{\"role\":\"user\",\"content\":%s}]}",
                  stream ? "true" : "false", js);
    resp r;
    http(o.port, "POST", "/v1/chat/completions", body.data, &r);
    T_CHECKF(r.status == 200, "%s: status %d: %s", what, r.status, r.body.data);
    bool wf;
    char *text = answer_text(&r, stream, &wf);
    T_CHECKF(wf, "%s: malformed answer: %.400s", what, r.body.data);
    pthread_mutex_lock(&F.mu);
    for (size_t i = 0; i < N_SECRETS; i++) {
        T_CHECKF(!strstr(F.seen.data, SECRETS[i].value), "%s: secret %zu (%s) reached the main endpoint", what, i,
                 SECRETS[i].gen ? SECRETS[i].gen : SECRETS[i].fmt);
        T_CHECKF(strstr(text, SECRETS[i].value), "%s: the user's value %zu (%s) did not come back", what, i,
                 SECRETS[i].gen ? SECRETS[i].gen : SECRETS[i].fmt);
    }
    T_CHECKF(find_placeholder(F.seen.data), "%s: no placeholder in what the main endpoint got", what);
    pthread_mutex_unlock(&F.mu);
    const char *ph = find_placeholder(text);
    T_CHECKF(!ph, "%s: a placeholder reached the user: %.30s", what, ph ? ph : "");
    const char *ph2 = find_placeholder(r.body.data);
    T_CHECKF(!ph2, "%s: a placeholder is in the raw answer: %.30s", what, ph2 ? ph2 : "");
    T_CHECKF(!strstr(r.body.data, F.foreign), "%s: the foreign secret reached the user", what);
    T_CHECKF(strstr(text, "[REDACTED_GITHUB_TOKEN]"), "%s: foreign secret not redacted", what);
    T_CHECKF(strstr(r.hdrs.data, "x-nindub-trace: ") && strstr(r.hdrs.data, "sentinel_in="), "%s: trace header: %s", what,
             r.hdrs.data);
    free(text);
    free(msg);
    free(js);
    nd_buf_free(&body);
    resp_free(&r);
    orch_down(&o);
}

static void test_no_leak_json(void) { check_no_leak("json", false, 0); }
static void test_no_leak_stream(void) {
    int chunks[] = {1, 3, 7, 64};
    for (size_t i = 0; i < 4; i++) {
        char what[32];
        snprintf(what, sizeof what, "stream/%d", chunks[i]);
        check_no_leak(what, true, chunks[i]);
    }
}

static void test_same_placeholder_across_turns(void) {
    fake_reset(0);
    orch o;
    if (orch_up(&o, BASE_CFG, NULL)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    char tok[128], tok2[128];
    orch_gen("ghp", 42, tok, sizeof tok);
    orch_gen("ghp", 43, tok2, sizeof tok2);
    nd_buf body = {0};
    nd_buf_printf(&body,
                  "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"token %s\"},"
                  "{\"role\":\"assistant\",\"content\":\"I see %s\"},{\"role\":\"user\",\"content\":\"and %s and again %s\"}]}",
                  tok, tok, tok2, tok);
    resp r;
    http(o.port, "POST", "/v1/chat/completions", body.data, &r);
    T_EQ_INT(r.status, 200);
    pthread_mutex_lock(&F.mu);
    const char *seen = F.seen.data;
    int n1 = 0, n2 = 0;
    for (const char *p = seen; (p = strstr(p, "<SECRET_GITHUB_TOKEN_1>")); p++) n1++;
    for (const char *p = seen; (p = strstr(p, "<SECRET_GITHUB_TOKEN_2>")); p++) n2++;
    T_CHECKF(n1 == 3 && n2 == 1, "placeholders: _1 x%d (want 3), _2 x%d (want 1): %s", n1, n2, seen);
    T_CHECK(!strstr(seen, tok) && !strstr(seen, tok2));
    pthread_mutex_unlock(&F.mu);
    bool wf;
    char *text = answer_text(&r, false, &wf);
    T_CHECKF(strstr(text, tok) && strstr(text, tok2) && !find_placeholder(text), "answer: %s", text);
    free(text);
    resp_free(&r);
    nd_buf_free(&body);
    orch_down(&o);
}

/* ================================================================ pruner, router */

static void test_pruner_context_field(void) {
    fake_reset(0);
    orch o;
    if (orch_up(&o, BASE_CFG, NULL)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    const char *body =
        "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"how does parseHttpHeader handle folded lines?\"}],"
        "\"context\":[\"int add(int a, int b) { return a + b; }\","
        "\"/* parse_http_header: folded header lines are joined with one space */ int parse_http_header(const char *l);\","
        "\"void draw_circle(canvas *c, int r);\",\"# README\\nThis project draws shapes.\","
        "\"static int http_header_fold(char *line) { /* folded lines */ }\",\"double mean(const double *v, int n);\"]}";
    resp r;
    http(o.port, "POST", "/v1/chat/completions", body, &r);
    T_CHECKF(r.status == 200, "status %d %s", r.status, r.body.data);
    pthread_mutex_lock(&F.mu);
    T_CHECKF(strstr(F.seen.data, "parse_http_header") && strstr(F.seen.data, "http_header_fold"), "kept chunks: %s", F.seen.data);
    T_CHECKF(!strstr(F.seen.data, "draw_circle") && !strstr(F.seen.data, "double mean"), "dropped chunks were sent: %s",
             F.seen.data);
    T_CHECKF(!strstr(F.seen.data, "\"context\""), "the extension field went upstream");
    pthread_mutex_unlock(&F.mu);
    T_CHECKF(strstr(r.hdrs.data, "pruner=2/6"), "trace: %s", r.hdrs.data);
    resp_free(&r);
    /* fenced blocks tagged "context" in the message */
    orch_down(&o);
    nd_buf cfg = {0};
    nd_buf_printf(&cfg, "%spruner: { k: 1, fence_tag: context }\n", BASE_CFG);
    /* BASE_CFG has a pruner line already: rebuild without it */
    const char *cut = strstr(cfg.data, "pruner: { k: 2");
    size_t keep_len = (size_t)(cut - cfg.data);
    nd_buf cfg2 = {0};
    nd_buf_append(&cfg2, cfg.data, keep_len);
    nd_buf_printf(&cfg2, "pruner: { k: 1, fence_tag: context }\n");
    fake_reset(0);
    if (orch_up(&o, cfg2.data, NULL)) {
        T_FAILF("orchestrator did not start");
    } else {
        const char *b2 = "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":"
                         "\"Why does the cache evict early?\\n```context\\nvoid draw_circle(canvas *c);\\n```\\n"
                         "```context\\nlru_cache_evict(cache *c) { /* evict when the cache is full */ }\\n```\\n\"}]}";
        http(o.port, "POST", "/v1/chat/completions", b2, &r);
        T_CHECKF(r.status == 200, "status %d %s", r.status, r.body.data);
        pthread_mutex_lock(&F.mu);
        T_CHECKF(strstr(F.seen.data, "lru_cache_evict") && !strstr(F.seen.data, "draw_circle"), "fenced: %s", F.seen.data);
        pthread_mutex_unlock(&F.mu);
        resp_free(&r);
        orch_down(&o);
    }
    nd_buf_free(&cfg);
    nd_buf_free(&cfg2);
}

static const char ROUTE_CFG[] =
    "main: { url: '%MAIN%', timeout_s: 5 }\n"
    "listen: { host: 127.0.0.1, port: 0 }\n"
    "router: { default: chat }\n"
    "routes:\n"
    "  - label: code\n"
    "    target: main\n"
    "    guard: true\n"
    "    system_prompt: 'You are a careful programmer.'\n"
    "    sampling: { temperature: 0.2, max_tokens: 777 }\n"
    "    keywords: [compile, segfault, function]\n"
    "    examples: ['fix this program']\n"
    "  - label: other\n"
    "    target: '%MAIN%'\n"
    "    keywords: [weather]\n"
    "  - label: chat\n"
    "    target: main\n"
    "    examples: ['tell me a story']\n";

static void test_router(void) {
    fake_reset(0);
    orch o;
    if (orch_up(&o, ROUTE_CFG, NULL)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    resp r;
    http(o.port, "POST", "/v1/chat/completions",
         "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"why does my function segfault?\"}]}", &r);
    T_CHECKF(r.status == 200, "status %d %s", r.status, r.body.data);
    T_CHECKF(strstr(r.hdrs.data, "route=code path=rule"), "trace: %s", r.hdrs.data);
    pthread_mutex_lock(&F.mu);
    cJSON *j = cJSON_Parse(F.seen.data);
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0);
    T_CHECKF(cJSON_IsString(cJSON_GetObjectItem(m0, "role")) && !strcmp(cJSON_GetObjectItem(m0, "role")->valuestring, "system") &&
                 strstr(cJSON_GetObjectItem(m0, "content")->valuestring, "careful programmer"),
             "system prompt not added: %s", F.seen.data);
    T_CHECKF(cJSON_GetObjectItem(j, "max_tokens") && cJSON_GetObjectItem(j, "max_tokens")->valuedouble == 777, "sampling default");
    cJSON_Delete(j);
    pthread_mutex_unlock(&F.mu);
    resp_free(&r);
    /* the client's own setting wins over the route's default */
    fake_reset(0);
    http(o.port, "POST", "/v1/chat/completions",
         "{\"model\":\"echo\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"compile error in my function\"}]}", &r);
    pthread_mutex_lock(&F.mu);
    T_CHECKF(strstr(F.seen.data, "\"max_tokens\":5") && !strstr(F.seen.data, "777"), "client setting lost: %s", F.seen.data);
    pthread_mutex_unlock(&F.mu);
    resp_free(&r);
    http(o.port, "POST", "/v1/chat/completions",
         "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"what will the weather be?\"}]}", &r);
    T_CHECKF(r.status == 200 && strstr(r.hdrs.data, "route=other") && strstr(r.hdrs.data, "target=url"), "url route: %s", r.hdrs.data);
    resp_free(&r);
    http(o.port, "POST", "/v1/chat/completions",
         "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"zzz qqq\"}]}", &r);
    T_CHECKF(r.status == 200 && strstr(r.hdrs.data, "route=chat path=default"), "default route: %s", r.hdrs.data);
    resp_free(&r);
    http(o.port, "GET", "/metrics", NULL, &r);
    T_CHECKF(strstr(r.body.data, "nindub_orch_route_total{route=\"code\"} 2") &&
                 strstr(r.body.data, "nindub_orch_route_total{route=\"other\"} 1") &&
                 strstr(r.body.data, "nindub_orch_requests_total 4"),
             "metrics: %s", r.body.data);
    resp_free(&r);
    orch_down(&o);
}

/* ================================================================ guard */

static void test_guard_loop(void) {
    DIR *d = opendir("tests/data/orch/guard");
    if (!d) T_SKIP("tests/data/orch/guard missing");
    orch o;
    fake_reset(0);
    if (orch_up(&o, ROUTE_CFG, NULL)) {
        closedir(d);
        T_FAILF("orchestrator did not start");
        return;
    }
    struct dirent *e;
    int n = 0, fixed = 0, skipped = 0;
    bool py = system("python3 -c pass >/dev/null 2>&1") == 0, js = system("node -e 0 >/dev/null 2>&1") == 0;
    while ((e = readdir(d))) {
        const char *dot = strstr(e->d_name, ".broken.");
        if (!dot) continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(dot - e->d_name), e->d_name);
        if ((name[0] == 'p' && !py) || (name[0] == 'j' && !js)) {
            skipped++;
            continue;
        }
        bool stream = n % 4 == 1; /* some of them streamed */
        nd_buf body = {0};
        nd_buf_printf(&body, "{\"model\":\"guard\",\"stream\":%s,\"messages\":[{\"role\":\"user\",\"content\":"
                             "\"please write this function guard:%s\"}]}", stream ? "true" : "false", name);
        resp r;
        http(o.port, "POST", "/v1/chat/completions", body.data, &r);
        bool wf;
        char *text = answer_text(&r, stream, &wf);
        char path[512];
        snprintf(path, sizeof path, "tests/data/orch/guard/%s.fixed.%s", name, ext_of(name));
        char *want = read_text(path);
        bool ok = r.status == 200 && wf && want && strstr(text, want);
        T_CHECKF(ok, "%s (%s): status %d, trace %s answer %.300s", name, stream ? "stream" : "json", r.status, r.hdrs.data, text);
        if (!ok && getenv("ORCH_TEST_DEBUG")) fprintf(stderr, "seen: %s\n", F.seen.data);
        T_CHECKF(strstr(r.body.data, "\"ok\":true") && strstr(r.body.data, "\"fixes\":"), "%s: guard summary missing: %.300s",
                 name, r.body.data);
        fixed += ok;
        n++;
        free(want);
        free(text);
        resp_free(&r);
        nd_buf_free(&body);
    }
    closedir(d);
    printf("  guard over HTTP: %d/%d snippets fixed by the scripted main model (%d skipped: no checker)\n", fixed, n, skipped);
    T_CHECKF(n >= 12, "only %d snippets", n);
    resp r;
    http(o.port, "GET", "/metrics", NULL, &r);
    T_CHECKF(strstr(r.body.data, "nindub_orch_guard_runs_total") && !strstr(r.body.data, "nindub_orch_guard_runs_total 0\n"),
             "metrics: %s", r.body.data);
    resp_free(&r);
    orch_down(&o);
}

/* ================================================================ hostile */

static void test_unreachable_and_stalls(void) {
    orch o;
    /* a port nobody listens on */
    if (orch_up(&o, "main: { url: 'http://127.0.0.1:9/v1', timeout_s: 1 }\nlisten: { port: 0 }\nroles: { router: false }\n", NULL)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    resp r;
    http(o.port, "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    T_CHECKF(r.status == 502 && strstr(r.body.data, "cannot reach http://127.0.0.1:9"), "unreachable: %d %s", r.status,
             r.body.data);
    resp_free(&r);
    http(o.port, "POST", "/v1/chat/completions", "{\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    T_CHECKF(r.status == 502, "unreachable stream: %d %s", r.status, r.body.data);
    resp_free(&r);
    http(o.port, "GET", "/metrics", NULL, &r);
    T_CHECKF(strstr(r.body.data, "nindub_orch_upstream_errors_total{kind=\"connect\"} 2"), "metrics: %s", r.body.data);
    resp_free(&r);
    orch_down(&o);

    fake_reset(0);
    if (orch_up(&o, BASE_CFG, NULL)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    struct {
        const char *model;
        bool stream;
        int status;
        const char *needle;
    } cases[] = {
        {"stall", false, 504, "timed out"},
        {"stall", true, 504, "stalled"},
        {"garbage", false, 502, "not JSON"},
        {"garbage", true, 200, "not a JSON object"},
        {"badsse", true, 200, "not a JSON object"},
        {"fail500", false, 502, "the GPU caught fire"},
        {"fail500", true, 502, "HTTP 500"},
        {"no-such-model", false, 404, "does not exist"},
        {"nostream", true, 502, "did not stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"model\":\"%s\",\"stream\":%s,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 cases[i].model, cases[i].stream ? "true" : "false");
        double t0 = nd_time_s();
        http(o.port, "POST", "/v1/chat/completions", body, &r);
        double dt = nd_time_s() - t0;
        T_CHECKF(r.status == cases[i].status && strstr(r.body.data, cases[i].needle), "%s/%s: %d %.300s", cases[i].model,
                 cases[i].stream ? "stream" : "json", r.status, r.body.data);
        if (cases[i].stream && r.status == 200)
            T_CHECKF(strstr(r.body.data, "data: [DONE]"), "%s: stream not closed: %s", cases[i].model, r.body.data);
        if (!strcmp(cases[i].model, "stall")) T_CHECKF(dt < 2.9, "stall answered after %.1f s", dt);
        resp_free(&r);
    }
    orch_down(&o);
}

static void test_hostile_requests(void) {
    fake_reset(0);
    orch o;
    orch_server_params p = {.max_body = 64 * 1024, .max_context = 100, .max_messages = 50};
    if (orch_up(&o, BASE_CFG, &p)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    struct {
        const char *method, *path, *body;
        int status;
    } cases[] = {
        {"POST", "/v1/chat/completions", "{not json", 400},
        {"POST", "/v1/chat/completions", "[]", 400},
        {"POST", "/v1/chat/completions", "{}", 400},
        {"POST", "/v1/chat/completions", "{\"messages\":[]}", 400},
        {"POST", "/v1/chat/completions", "{\"messages\":[1]}", 400},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":7}]}", 400},
        {"POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[3]}]}", 400},
        {"POST", "/v1/chat/completions", "{\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400},
        {"POST", "/v1/chat/completions", "{\"context\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400},
        {"POST", "/v1/chat/completions", "{\"context\":[1],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400},
        {"GET", "/v1/chat/completions", NULL, 405},
        {"POST", "/v1/nothing", "{}", 404},
        {"GET", "/health", NULL, 200},
        {"GET", "/v1/models", NULL, 200},
    };
    resp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http(o.port, cases[i].method, cases[i].path, cases[i].body, &r);
        T_CHECKF(r.status == cases[i].status, "case %zu: %s %s -> %d, want %d: %s", i, cases[i].method, cases[i].path, r.status,
                 cases[i].status, r.body.data);
        resp_free(&r);
    }
    /* a huge context array, too many messages, an oversized body */
    nd_buf b = {0};
    nd_buf_printf(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"context\":[");
    for (int i = 0; i < 1000; i++) nd_buf_printf(&b, "%s\"c%d\"", i ? "," : "", i);
    nd_buf_printf(&b, "]}");
    http(o.port, "POST", "/v1/chat/completions", b.data, &r);
    T_CHECKF(r.status == 413 && strstr(r.body.data, "context"), "huge context: %d %s", r.status, r.body.data);
    resp_free(&r);
    b.len = 0;
    nd_buf_printf(&b, "{\"messages\":[");
    for (int i = 0; i < 60; i++) nd_buf_printf(&b, "%s{\"role\":\"user\",\"content\":\"m\"}", i ? "," : "");
    nd_buf_printf(&b, "]}");
    http(o.port, "POST", "/v1/chat/completions", b.data, &r);
    T_CHECKF(r.status == 400 && strstr(r.body.data, "at most 50"), "messages: %d %s", r.status, r.body.data);
    resp_free(&r);
    b.len = 0;
    nd_buf_printf(&b, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 70000; i++) nd_buf_append(&b, "a", 1);
    nd_buf_printf(&b, "\"}]}");
    http(o.port, "POST", "/v1/chat/completions", b.data, &r);
    T_CHECKF(r.status == 413, "big body: %d %s", r.status, r.body.data);
    resp_free(&r);
    nd_buf_free(&b);
    pthread_mutex_lock(&F.mu);
    T_CHECKF(F.n_req == 0, "%d bad requests were forwarded", F.n_req);
    pthread_mutex_unlock(&F.mu);
    orch_down(&o);
}

static void test_bad_configs(void) {
    struct {
        const char *yaml, *needle;
    } cases[] = {
        {"listen: { port: 0 }\nroles: { router: false }\n", "nothing to send requests to"},
        {"main: { url: 'ftp://x' }\n", "http://"},
        {"main: { url: 'http://127.0.0.1:1/v1' }\nroutes:\n  - label: a\n    target: helper\n", "no helper model"},
        {"main: { url: 'http://127.0.0.1:1/v1' }\nrouter: { helper: true }\nroutes:\n  - label: a\n", "router.helper"},
        {"main: { url: 'http://127.0.0.1:1/v1' }\nroles: { router: false }\npruner: { helper: true }\n", "pruner.helper"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        orch_config *c = NULL;
        nd_err err = {0};
        orch_server *s = NULL;
        if (orch_config_parse(cases[i].yaml, strlen(cases[i].yaml), "t.yaml", &c, &err) == 0) {
            orch_server_params p = {.cfg = c};
            s = orch_server_new(&p, &err);
        }
        T_CHECKF(!s && strstr(err.msg, cases[i].needle), "case %zu: %s", i, err.msg);
        orch_server_free(s);
        orch_config_free(c);
    }
}

/* ================================================================ with the fixtures */

static char model_path[1024];
static const char *model(void) {
    const char *fx = t_fixtures();
    if (!fx) return NULL;
    snprintf(model_path, sizeof model_path, "%s/models/aidreams260K-f32.gguf", fx);
    return access(model_path, R_OK) == 0 ? model_path : NULL;
}

static void test_helper_router(void) {
    if (!model()) T_SKIP("fixtures absent");
    nd_buf y = {0};
    nd_buf_printf(&y,
                  "main: { url: '%%MAIN%%' }\nhelper: { model: '%s' }\nlisten: { port: 0 }\n"
                  "router: { helper: true }\npruner: { k: 2, helper: true, helper_candidates: 3 }\nroutes:\n"
                  "  - { label: code, keywords: [compile] }\n"
                  "  - { label: chat, target: helper }\n"
                  "  - { label: math, keywords: [integral] }\n",
                  model());
    orch o;
    fake_reset(0);
    orch_server_params p = {.helper_threads = 1, .helper_ctx = 256};
    if (orch_up(&o, y.data, &p)) {
        nd_buf_free(&y);
        T_FAILF("orchestrator with helper did not start");
        return;
    }
    const char *qs[] = {"Once upon a time", "tell me about the sea", "zzz", "what do you think of my garden",
                        "I like blue birds"};
    for (size_t i = 0; i < 5; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"model\":\"echo\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
                 qs[i]);
        resp r;
        http(o.port, "POST", "/v1/chat/completions", body, &r);
        T_CHECKF(r.status == 200, "%s: %d %s", qs[i], r.status, r.body.data);
        T_CHECKF(strstr(r.hdrs.data, "path=helper") &&
                     (strstr(r.hdrs.data, "route=code ") || strstr(r.hdrs.data, "route=chat ") || strstr(r.hdrs.data, "route=math ")),
                 "%s: not a helper label: %s", qs[i], r.hdrs.data);
        resp_free(&r);
    }
    /* a rule still wins before the helper; the helper target answers in process */
    resp r;
    http(o.port, "POST", "/v1/chat/completions",
         "{\"max_tokens\":8,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"my code does not compile\"}]}", &r);
    T_CHECKF(r.status == 200 && strstr(r.hdrs.data, "route=code path=rule"), "rule: %s", r.hdrs.data);
    resp_free(&r);
    /* pruner.helper: the helper judges the 3 best BM25 candidates (yes/no), 2 are kept */
    fake_reset(0);
    http(o.port, "POST", "/v1/chat/completions",
         "{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"compile the tree walker\"}],"
         "\"context\":[\"the tree walker visits nodes\",\"tree nodes have children\",\"the walker compiles\",\"unrelated text\"]}",
         &r);
    T_CHECKF(r.status == 200 && strstr(r.hdrs.data, "pruner=2/4") && strstr(r.hdrs.data, "/3"), "pruner helper: %s",
             r.hdrs.data);
    pthread_mutex_lock(&F.mu);
    T_CHECKF(!strstr(F.seen.data, "unrelated text"), "an unmatched chunk was kept: %s", F.seen.data);
    pthread_mutex_unlock(&F.mu);
    resp_free(&r);
    http(o.port, "GET", "/metrics", NULL, &r);
    T_CHECKF(strstr(r.body.data, "nindub_orch_helper_calls_total 8") && strstr(r.body.data, "nindub_orch_helper_failures_total 0"),
             "metrics: %s", r.body.data);
    resp_free(&r);
    nd_buf_free(&y);
    orch_down(&o);
}

static int npm_openai(void) {
    if (system("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") != 0) return -1;
    if (access("build/npm-openai/node_modules/openai/package.json", R_OK) != 0 &&
        system("mkdir -p build/npm-openai && cd build/npm-openai && timeout 120 npm install --silent --no-audit "
               "--no-fund openai@4 >/dev/null 2>&1") != 0)
        return -1;
    return 0;
}

static int run_openai_script(int port, const char *model_name, nd_buf *out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OPENAI_DIR=build/npm-openai BASE_URL=http://127.0.0.1:%d/v1 MODEL=%s timeout 60 node "
             "scripts/openai-client-test.cjs 2>&1",
             port, model_name);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[1024];
    while (fgets(line, sizeof line, f)) nd_buf_append(out, line, strlen(line));
    nd_buf_append(out, "", 0);
    return pclose(f);
}

static void test_openai_npm_fake(void) {
    if (npm_openai()) T_SKIP("node/npm or `npm install openai` not available");
    fake_reset(0);
    orch o;
    if (orch_up(&o, BASE_CFG, NULL)) {
        T_FAILF("orchestrator did not start");
        return;
    }
    nd_buf out = {0};
    int st = run_openai_script(o.port, "echo", &out);
    T_CHECKF(st == 0 && strstr(out.data, "openai client: all ok"), "node: %s", out.data);
    nd_buf_free(&out);
    orch_down(&o);
}

static void test_openai_npm_engine(void) {
    if (!model()) T_SKIP("fixtures absent");
    if (npm_openai()) T_SKIP("node/npm or `npm install openai` not available");
    srv_params sp = srv_default_params();
    sp.model_path = model();
    sp.alias = "tiny";
    sp.port = 0;
    sp.n_threads = 1;
    sp.n_parallel = 2;
    sp.n_ctx = 512;
    nd_err err = {0};
    srv_t *engine = srv_new(&sp, &err);
    if (!engine || srv_listen(engine, &err) || srv_load(engine, &err)) {
        T_FAILF("engine: %s", err.msg);
        srv_free(engine);
        return;
    }
    nd_buf y = {0};
    nd_buf_printf(&y, "main: { url: 'http://127.0.0.1:%d/v1' }\nlisten: { port: 0 }\nroles: { router: false }\n", srv_port(engine));
    orch o;
    if (orch_up(&o, y.data, NULL)) {
        T_FAILF("orchestrator did not start");
    } else {
        nd_buf out = {0};
        int st = run_openai_script(o.port, "tiny", &out);
        T_CHECKF(st == 0 && strstr(out.data, "openai client: all ok"), "node: %s", out.data);
        nd_buf_free(&out);
        orch_down(&o);
    }
    nd_buf_free(&y);
    srv_free(engine);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (fake_start()) {
        fprintf(stderr, "cannot start the fake endpoint\n");
        return 1;
    }
    make_secrets();
    T_RUN(test_no_leak_json);
    T_RUN(test_no_leak_stream);
    T_RUN(test_same_placeholder_across_turns);
    T_RUN(test_pruner_context_field);
    T_RUN(test_router);
    T_RUN(test_guard_loop);
    T_RUN(test_unreachable_and_stalls);
    T_RUN(test_hostile_requests);
    T_RUN(test_bad_configs);
    T_RUN(test_helper_router);
    T_RUN(test_openai_npm_fake);
    T_RUN(test_openai_npm_engine);
    MHD_stop_daemon(F.d);
    nd_buf_free(&F.seen);
    return t_done();
}
