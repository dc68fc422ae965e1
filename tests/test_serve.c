/* nindub serve, driven over HTTP as clients would: the built binary ($NINDUB_BIN) on a free
 * loopback port with the aidreams fixture model, a tiny HTTP/1.1 client over sockets (no
 * curl), every error status, streaming well-formedness, greedy output equal to
 * `nindub run --temp 0`, constrained output, disconnect -> slot freed, slowloris and
 * oversized headers, a bounded load test (32 streams on 4 slots, RSS steady), SIGTERM
 * mid-stream, and the official `openai` npm client when npm and the network are there.
 * Also unit checks of the request parser (srv_req_parse). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/srv_internal.h"
#include "t.h"

/* ================================================================ server process */

typedef struct server {
    pid_t pid;
    int port;
    char log[256];
} server;

static const char *bin(void) {
    const char *b = getenv("NINDUB_BIN");
    return b && *b && access(b, X_OK) == 0 ? b : NULL;
}

static char model_path[1024];

static const char *model(void) {
    const char *fx = t_fixtures();
    if (!fx) return NULL;
    snprintf(model_path, sizeof model_path, "%s/models/aidreams260K-f32.gguf", fx);
    return access(model_path, R_OK) == 0 ? model_path : NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Starts `nindub serve -m MODEL --port 0 <args>`; stderr goes to a log file whose
 * "listening on http://host:PORT" line gives the port. wait_ready: also wait for /health 200. */
static int http_status(int port, const char *method, const char *path, const char *hdrs, const char *body,
                       char **out);

static int server_start(server *s, bool wait_ready, const char *fmt, ...) {
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    static int counter;
    snprintf(s->log, sizeof s->log, "build/test_serve_%d_%d.log", (int)getpid(), counter++);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec %s serve -m %s --port 0 -t 1 %s 2>%s", bin(), model(), args, s->log);
    s->port = 0;
    s->pid = fork();
    if (s->pid < 0) return -1;
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    double t0 = now_s();
    while (now_s() - t0 < 20 && !s->port) {
        FILE *f = fopen(s->log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            const char *p = strstr(line, "listening on http://");
            const char *c = p ? strrchr(p, ':') : NULL;
            if (c) s->port = atoi(c + 1);
        }
        if (f) fclose(f);
        if (!s->port) sleep_ms(20);
    }
    if (!s->port) return -1;
    while (wait_ready && now_s() - t0 < 20) {
        if (http_status(s->port, "GET", "/health", NULL, NULL, NULL) == 200) return 0;
        sleep_ms(20);
    }
    return wait_ready ? -1 : 0;
}

/* SIGTERM and wait; returns the exit status (-1 if killed by a signal / timeout). */
static int server_stop(server *s) {
    if (s->pid <= 0) return -1;
    kill(s->pid, SIGTERM);
    int st = 0;
    double t0 = now_s();
    while (waitpid(s->pid, &st, WNOHANG) == 0) {
        if (now_s() - t0 > 20) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            s->pid = 0;
            return -1;
        }
        sleep_ms(20);
    }
    s->pid = 0;
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 0) unlink(s->log); /* kept for a look otherwise */
    return rc;
}

static long server_rss_kb(const server *s) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* ================================================================ HTTP client */

static int connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_request(int fd, const char *method, const char *path, const char *hdrs, const char *body) {
    char head[2048];
    size_t bl = body ? strlen(body) : 0;
    snprintf(head, sizeof head,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s"
             "Content-Length: %zu\r\n\r\n",
             method, path, hdrs ? hdrs : "", body ? "Content-Type: application/json\r\n" : "", bl);
    return send_all(fd, head, strlen(head)) || (bl && send_all(fd, body, bl)) ? -1 : 0;
}

/* Decodes a chunked body in place; returns its length or -1 if malformed. */
static long dechunk(char *b, size_t n) {
    size_t r = 0, w = 0;
    for (;;) {
        char *end;
        if (r >= n) return -1;
        unsigned long len = strtoul(b + r, &end, 16);
        char *crlf = strstr(b + r, "\r\n");
        if (!crlf || end > crlf) return -1;
        r = (size_t)(crlf - b) + 2;
        if (len == 0) break;
        if (r + len + 2 > n) return -1;
        memmove(b + w, b + r, len);
        w += len;
        r += len + 2;
    }
    b[w] = 0;
    return (long)w;
}

/* Parses a full response: status, and *body (NUL-terminated, de-chunked) moved to its
 * start. Returns the status or -1. */
static int parse_response(char *raw, size_t n, char **body) {
    int status = -1;
    if (sscanf(raw, "HTTP/1.%*d %d", &status) != 1) return -1;
    char *hend = strstr(raw, "\r\n\r\n");
    if (!hend) return -1;
    *hend = 0;
    char *b = hend + 4;
    size_t bl = n - (size_t)(b - raw);
    bool chunked = strcasestr(raw, "transfer-encoding: chunked") != NULL;
    if (chunked && dechunk(b, bl) < 0) return -1;
    memmove(raw, b, strlen(b) + 1);
    *body = raw;
    return status;
}

static int read_all(int fd, nd_buf *b) {
    char chunk[8192];
    for (;;) {
        ssize_t k = recv(fd, chunk, sizeof chunk, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        if (nd_buf_append(b, chunk, (size_t)k)) return -1;
    }
    return nd_buf_append(b, "", 0) ? -1 : 0;
}

/* One request on a fresh connection. Returns the status (-1 on transport errors); *out
 * (optional, nd_free) gets the body. */
static int http_status(int port, const char *method, const char *path, const char *hdrs, const char *body,
                       char **out) {
    if (out) *out = NULL;
    int fd = connect_port(port);
    if (fd < 0) return -1;
    nd_buf b = {0};
    int st = -1;
    if (send_request(fd, method, path, hdrs, body) == 0 && read_all(fd, &b) == 0) {
        char *resp = NULL;
        st = parse_response(b.data, b.len, &resp);
        if (st > 0 && out) {
            *out = b.data;
            b.data = NULL;
        }
    }
    close(fd);
    nd_buf_free(&b);
    return st;
}

static double metric_key(int port, const char *hdrs, const char *name) {
    char *body = NULL;
    double v = -1;
    if (http_status(port, "GET", "/metrics", hdrs, NULL, &body) == 200) {
        char key[128];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(body, key);
        if (p) v = atof(p + strlen(key));
    }
    nd_free(body);
    return v;
}

static double metric(int port, const char *name) { return metric_key(port, NULL, name); }

/* ================================================================ SSE checks */

/* Checks a whole SSE body: "data: {json}\n\n" events, chunks of the right object type,
 * one finish_reason, the usage chunk after it when asked, "data: [DONE]" last. Appends
 * the streamed text to text. Returns NULL or what is wrong. */
static const char *check_sse(const char *body, bool chat, bool usage, nd_buf *text, const char **finish) {
    const char *p = body;
    int n_finish = 0, n_usage = 0;
    bool done = false;
    static char why[160];
    while (*p) {
        if (done) return "events after [DONE]";
        if (strncmp(p, "data: ", 6) != 0) return "event does not start with 'data: '";
        const char *end = strstr(p, "\n\n");
        if (!end) return "event not terminated by a blank line";
        size_t n = (size_t)(end - p) - 6;
        if (n == 6 && !strncmp(p + 6, "[DONE]", 6)) {
            done = true;
            p = end + 2;
            continue;
        }
        cJSON *j = cJSON_ParseWithLength(p + 6, n);
        if (!j) return "event is not JSON";
        const char *obj = cJSON_GetStringValue(cJSON_GetObjectItem(j, "object"));
        cJSON *choices = cJSON_GetObjectItem(j, "choices"), *u = cJSON_GetObjectItem(j, "usage");
        if (cJSON_GetObjectItem(j, "error")) {
            snprintf(why, sizeof why, "error event: %.100s", p + 6);
            cJSON_Delete(j);
            return why;
        }
        const char *bad = NULL;
        if (!obj || strcmp(obj, chat ? "chat.completion.chunk" : "text_completion") != 0) bad = "wrong object type";
        else if (!cJSON_IsArray(choices)) bad = "no choices array";
        else if (cJSON_GetArraySize(choices) == 0) {
            if (!cJSON_IsObject(u) || !n_finish) bad = "empty choices without usage, or before the finish chunk";
            n_usage++;
        } else {
            cJSON *c = cJSON_GetArrayItem(choices, 0), *fr = cJSON_GetObjectItem(c, "finish_reason");
            cJSON *d = chat ? cJSON_GetObjectItem(c, "delta") : c;
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(d, chat ? "content" : "text"));
            if (t) nd_buf_append(text, t, strlen(t));
            if (cJSON_IsString(fr)) {
                n_finish++;
                if (finish) *finish = !strcmp(fr->valuestring, "stop") ? "stop" : !strcmp(fr->valuestring, "length") ? "length" : "?";
            } else if (!cJSON_IsNull(fr)) {
                bad = "finish_reason neither null nor a string";
            }
            if (n_finish > 1) bad = "more than one finish_reason";
        }
        cJSON_Delete(j);
        if (bad) return bad;
        p = end + 2;
    }
    if (!done) return "no data: [DONE]";
    if (n_finish != 1) return "no finish_reason chunk";
    if (usage != (n_usage == 1)) return "usage chunk missing or unexpected";
    nd_buf_append(text, "", 0);
    return NULL;
}

/* ================================================================ fixtures */

static server g_main; /* shared: --parallel 4, small limits */
static bool g_main_ok;

#define NEED_MAIN()                                                                    \
    do {                                                                               \
        if (!bin()) T_SKIP("NINDUB_BIN not set (run through make test)");            \
        if (!model()) T_SKIP("fixture model aidreams260K-f32.gguf not found");        \
        if (!g_main_ok) T_SKIP("the server did not start");                           \
    } while (0)

static void test_start_main(void) {
    if (!bin()) T_SKIP("NINDUB_BIN not set (run through make test)");
    if (!model()) T_SKIP("fixture model aidreams260K-f32.gguf not found");
    int rc = server_start(&g_main, true, "--parallel 4 -c 128 --max-body 65536 --timeout 2 --alias tiny");
    T_CHECKF(rc == 0, "server did not start (log %s)", g_main.log);
    g_main_ok = rc == 0;
}

/* ================================================================ tests */

static void expect_error(int port, const char *method, const char *path, const char *hdrs, const char *body,
                         int want, const char *code) {
    char *out = NULL;
    int st = http_status(port, method, path, hdrs, body, &out);
    T_CHECKF(st == want, "%s %s %.80s: status %d, want %d (%.200s)", method, path, body ? body : "", st, want,
             out ? out : "");
    cJSON *j = out ? cJSON_Parse(out) : NULL, *e = cJSON_GetObjectItem(j, "error");
    T_CHECKF(cJSON_IsObject(e) && cJSON_IsString(cJSON_GetObjectItem(e, "message")) &&
                 cJSON_IsString(cJSON_GetObjectItem(e, "type")) && cJSON_GetObjectItem(e, "param") &&
                 cJSON_GetObjectItem(e, "code"),
             "not an OpenAI error object: %.200s", out ? out : "");
    if (code && e) {
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(e, "code"));
        T_CHECKF(c && !strcmp(c, code), "code %s, want %s", c ? c : "null", code);
    }
    cJSON_Delete(j);
    nd_free(out);
}

static void test_errors(void) {
    NEED_MAIN();
    int p = g_main.port;
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":", 400, "invalid_json");
    expect_error(p, "POST", "/v1/completions", NULL, "[1,2]", 400, "invalid_json");
    expect_error(p, "POST", "/v1/completions", NULL, "{}", 400, "missing_field");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", 400, "invalid_type");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"top_p\":7}", 400, "invalid_value");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"n\":2}", 400, "invalid_value");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":[\"a\",\"b\"]}", 400, "invalid_value");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":[1,99999]}", 400, "invalid_value");
    expect_error(p, "POST", "/v1/chat/completions", NULL, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400,
                 "invalid_value");
    expect_error(p, "POST", "/v1/chat/completions", NULL, "{\"messages\":[]}", 400, "invalid_value");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"grammar\":\"root ::= [a-\"}", 400,
                 "invalid_grammar");
    expect_error(p, "POST", "/v1/completions", NULL,
                 "{\"prompt\":\"a\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":"
                 "{\"type\":\"string\",\"pattern\":\"^a+$\"}}}}",
                 400, NULL);
    /* the prompt does not fit a slot's 128 positions */
    nd_buf big = {0};
    nd_buf_printf(&big, "{\"prompt\":\"");
    for (int i = 0; i < 300; i++) nd_buf_printf(&big, "word%d ", i);
    nd_buf_printf(&big, "\"}");
    expect_error(p, "POST", "/v1/completions", NULL, big.data, 400, "context_length_exceeded");
    nd_buf_free(&big);
    expect_error(p, "GET", "/v1/nothing", NULL, NULL, 404, "not_found");
    expect_error(p, "POST", "/v1/completions", NULL, "{\"prompt\":\"a\",\"model\":\"gpt-9\"}", 404, "model_not_found");
    expect_error(p, "GET", "/v1/completions", NULL, NULL, 405, "method_not_allowed");
    expect_error(p, "DELETE", "/v1/models", NULL, NULL, 405, "method_not_allowed");
    /* 413: declared too large (refused before the body is read) and actually too large */
    expect_error(p, "POST", "/v1/completions", "Content-Length: 999999999\r\n", NULL, 413, "request_too_large");
    char *huge = malloc(100000);
    memset(huge, ' ', 99999);
    huge[99999] = 0;
    huge[0] = '{';
    huge[99998] = '}';
    expect_error(p, "POST", "/v1/completions", NULL, huge, 413, "request_too_large");
    free(huge);
    T_CHECK(metric(p, "nindub_responses_total{status=\"500\"}") == 0);
}

static void test_basic_routes(void) {
    NEED_MAIN();
    char *out = NULL;
    T_EQ_INT(http_status(g_main.port, "GET", "/v1/models", NULL, NULL, &out), 200);
    T_CHECKF(out && strstr(out, "\"id\":\"tiny\""), "%s", out ? out : "");
    nd_free(out);
    T_EQ_INT(http_status(g_main.port, "POST", "/tokenize", NULL, "{\"content\":\"Once upon\"}", &out), 200);
    cJSON *j = out ? cJSON_Parse(out) : NULL, *toks = cJSON_GetObjectItem(j, "tokens");
    T_CHECK(cJSON_GetArraySize(toks) > 1);
    char *ids = toks ? cJSON_PrintUnformatted(toks) : NULL;
    cJSON_Delete(j);
    nd_free(out);
    char body[1024];
    snprintf(body, sizeof body, "{\"tokens\":%s}", ids ? ids : "[]");
    cJSON_free(ids);
    T_EQ_INT(http_status(g_main.port, "POST", "/detokenize", NULL, body, &out), 200);
    T_CHECKF(out && strstr(out, "\"content\":\"Once upon\""), "%s", out ? out : "");
    nd_free(out);
    T_EQ_INT(http_status(g_main.port, "GET", "/metrics", NULL, NULL, &out), 200);
    T_CHECK(out && strstr(out, "nindub_slots_total 4") && strstr(out, "# TYPE nindub_generated_tokens_total counter"));
    nd_free(out);
}

/* The completions endpoint at temperature 0 gives exactly what `nindub run --temp 0` prints. */
static void test_greedy_matches_run(void) {
    NEED_MAIN();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s run -m %s -p 'Once upon a time' -n 40 --temp 0 -t 1 2>/dev/null", bin(), model());
    FILE *f = popen(cmd, "r");
    nd_buf cli = {0};
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0) nd_buf_append(&cli, chunk, n);
    if (f) pclose(f);
    nd_buf_append(&cli, "", 0);
    if (cli.len && cli.data[cli.len - 1] == '\n') cli.data[--cli.len] = 0; /* run ends with a newline */
    for (int stream = 0; stream < 2; stream++) {
        char body[256], *out = NULL;
        snprintf(body, sizeof body, "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0,\"stream\":%s}",
                 stream ? "true" : "false");
        T_EQ_INT(http_status(g_main.port, "POST", "/v1/completions", NULL, body, &out), 200);
        nd_buf text = {0};
        if (stream) {
            const char *bad = check_sse(out ? out : "", false, false, &text, NULL);
            T_CHECKF(!bad, "stream: %s", bad);
        } else {
            cJSON *j = out ? cJSON_Parse(out) : NULL;
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "text"));
            nd_buf_append(&text, t ? t : "", t ? strlen(t) + 1 : 1);
            cJSON_Delete(j);
        }
        T_CHECKF(cli.len > 10 && text.data && !strcmp(text.data, cli.data), "http '%s' vs run '%s'", text.data, cli.data);
        nd_buf_free(&text);
        nd_free(out);
    }
    nd_buf_free(&cli);
}

static void test_chat_stream_usage_and_cache(void) {
    NEED_MAIN();
    const char *body = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":12,\"seed\":5,"
                       "\"temperature\":0.7,\"stop\":[\"zzzq\"],\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    char *out = NULL;
    T_EQ_INT(http_status(g_main.port, "POST", "/v1/chat/completions", NULL, body, &out), 200);
    nd_buf text = {0};
    const char *bad = check_sse(out ? out : "", true, true, &text, NULL);
    T_CHECKF(!bad, "%s: %.300s", bad, out ? out : "");
    nd_buf_free(&text);
    nd_free(out);
    /* same conversation again, not streamed: the prompt comes from a slot's cache */
    const char *body2 = "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                        "{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"max_tokens\":12,\"logprobs\":true,"
                        "\"top_logprobs\":3}";
    T_EQ_INT(http_status(g_main.port, "POST", "/v1/chat/completions", NULL, body2, &out), 200);
    cJSON *j = out ? cJSON_Parse(out) : NULL, *u = cJSON_GetObjectItem(j, "usage");
    double prompt = cJSON_GetNumberValue(cJSON_GetObjectItem(u, "prompt_tokens"));
    double cached = cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(u, "prompt_tokens_details"), "cached_tokens"));
    T_CHECKF(cached >= prompt - 1 && prompt > 5, "cached %g of %g prompt tokens", cached, prompt);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *lp = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "logprobs"), "content");
    T_CHECK(cJSON_GetArraySize(lp) >= 1);
    T_CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(lp, 0), "top_logprobs")) == 3);
    T_CHECK(!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "object")), "chat.completion"));
    cJSON_Delete(j);
    nd_free(out);
}

static void test_stop_and_length(void) {
    NEED_MAIN();
    /* greedy text starts ", pixels"; a stop string inside it ends the answer before it */
    char *out = NULL;
    T_EQ_INT(http_status(g_main.port, "POST", "/v1/completions", NULL,
                         "{\"prompt\":\"Once upon a time\",\"max_tokens\":40,\"temperature\":0,\"stop\":\"xel\"}", &out),
             200);
    cJSON *j = out ? cJSON_Parse(out) : NULL, *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(c0, "text"));
    T_CHECKF(text && !strstr(text, "xel") && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c0, "finish_reason")), "stop"),
             "%s", out ? out : "");
    cJSON_Delete(j);
    nd_free(out);
    T_EQ_INT(http_status(g_main.port, "POST", "/v1/completions", NULL,
                         "{\"prompt\":\"Once\",\"max_tokens\":3,\"ignore_eos\":true}", &out), 200);
    T_CHECKF(out && strstr(out, "\"finish_reason\":\"length\"") && strstr(out, "\"completion_tokens\":3"), "%s",
             out ? out : "");
    nd_free(out);
}

static void test_constrained(void) {
    NEED_MAIN();
    char *out = NULL;
    T_EQ_INT(http_status(g_main.port, "POST", "/v1/completions", NULL,
                         "{\"prompt\":\"x\",\"max_tokens\":30,\"grammar\":\"root ::= [a-c]{3} \\\"!\\\"\"}", &out), 200);
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0), "text"));
    T_CHECKF(t && strlen(t) == 4 && strspn(t, "abc") == 3 && t[3] == '!', "%s", out ? out : "");
    cJSON_Delete(j);
    nd_free(out);
    for (int seed = 0; seed < 4; seed++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"a person\"}],\"max_tokens\":100,\"seed\":%d,"
                 "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":"
                 "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},"
                 "\"age\":{\"type\":\"integer\"}},\"required\":[\"name\",\"age\"]}}}}",
                 seed);
        T_EQ_INT(http_status(g_main.port, "POST", "/v1/chat/completions", NULL, body, &out), 200);
        j = out ? cJSON_Parse(out) : NULL;
        cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
        const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content"));
        const char *fin = cJSON_GetStringValue(cJSON_GetObjectItem(c0, "finish_reason"));
        cJSON *v = content ? cJSON_Parse(content) : NULL;
        if (fin && !strcmp(fin, "stop")) /* a "length" cut may leave it unfinished */
            T_CHECKF(cJSON_IsString(cJSON_GetObjectItem(v, "name")) && cJSON_IsNumber(cJSON_GetObjectItem(v, "age")),
                     "not valid for the schema: %s", content ? content : out);
        cJSON_Delete(v);
        cJSON_Delete(j);
        nd_free(out);
    }
    T_EQ_INT(http_status(g_main.port, "POST", "/v1/chat/completions", NULL,
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":60,"
                         "\"response_format\":{\"type\":\"json_object\"}}", &out), 200);
    j = out ? cJSON_Parse(out) : NULL;
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    const char *content = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content"));
    cJSON *v = content ? cJSON_Parse(content) : NULL;
    const char *fin = cJSON_GetStringValue(cJSON_GetObjectItem(c0, "finish_reason"));
    T_CHECKF(!fin || strcmp(fin, "stop") || cJSON_IsObject(v), "json_object: %s", content ? content : "");
    cJSON_Delete(v);
    cJSON_Delete(j);
    nd_free(out);
}

/* Slowloris: a connection whose headers stop coming is closed after --timeout (2 s).
 * Oversized headers are refused. */
static void test_hostile_connections(void) {
    NEED_MAIN();
    int fd = connect_port(g_main.port);
    T_CHECK(fd >= 0);
    if (fd < 0) return;
    send_all(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-a: ", 45);
    double t0 = now_s();
    char c;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int ready = poll(&pf, 1, 8000);
    ssize_t k = ready > 0 ? recv(fd, &c, 1, 0) : 1;
    T_CHECKF(ready > 0 && k <= 0, "slowloris connection still open after %.1fs", now_s() - t0);
    close(fd);
    /* 100 KiB of headers */
    fd = connect_port(g_main.port);
    nd_buf h = {0};
    nd_buf_printf(&h, "GET /health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 1000; i++) nd_buf_printf(&h, "X-Pad-%d: %0100d\r\n", i, 0);
    nd_buf_printf(&h, "\r\n");
    send_all(fd, h.data, h.len);
    nd_buf b = {0};
    read_all(fd, &b);
    int st = -1;
    if (b.len > 12) sscanf(b.data, "HTTP/1.%*d %d", &st);
    T_CHECKF(st == 431 || st == 413 || st == -1, "oversized headers: status %d", st);
    close(fd);
    nd_buf_free(&h);
    nd_buf_free(&b);
    T_EQ_INT(http_status(g_main.port, "GET", "/health", NULL, NULL, NULL), 200);
}

/* ---------------------------------------------------------------- load test */

typedef struct load_job {
    int port, i;
    const char *bad;
    int status;
} load_job;

static void *load_one(void *arg) {
    load_job *j = arg;
    char body[512], *out = NULL;
    snprintf(body, sizeof body,
             "{\"%s\":%s,\"max_tokens\":%d,\"stream\":true,\"seed\":%d,\"ignore_eos\":true,"
             "\"stream_options\":{\"include_usage\":true}}",
             j->i % 2 ? "prompt" : "messages",
             j->i % 2 ? "\"Once upon a time there was\"" : "[{\"role\":\"user\",\"content\":\"Hello there\"}]",
             24 + j->i % 16, j->i);
    j->status = http_status(j->port, "POST", j->i % 2 ? "/v1/completions" : "/v1/chat/completions", NULL, body, &out);
    nd_buf text = {0};
    j->bad = j->status != 200 ? "status" : check_sse(out ? out : "", j->i % 2 == 0, true, &text, NULL);
    nd_buf_free(&text);
    nd_free(out);
    return NULL;
}

static int load_round(int port, int n) {
    pthread_t th[64];
    load_job jobs[64];
    int bad = 0;
    for (int i = 0; i < n; i++) {
        jobs[i] = (load_job){.port = port, .i = i};
        pthread_create(&th[i], NULL, load_one, &jobs[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].bad) {
            if (bad < 3) fprintf(stderr, "  job %d: status %d: %s\n", i, jobs[i].status, jobs[i].bad);
            bad++;
        }
    }
    return bad;
}

static void test_load_32_streams(void) {
    NEED_MAIN();
    T_EQ_INT(load_round(g_main.port, 32), 0); /* warm-up: thread stacks, malloc arenas */
    long before = server_rss_kb(&g_main);
    double t0 = now_s();
    for (int r = 0; r < 2; r++) T_EQ_INT(load_round(g_main.port, 32), 0);
    double dt = now_s() - t0;
    long after = server_rss_kb(&g_main);
#if defined(__SANITIZE_ADDRESS__)
    /* ASan keeps freed memory in quarantine: RSS grows by design; LeakSanitizer checks leaks */
#else
    T_CHECKF(before > 0 && after <= before * 1.10 && after >= before * 0.9, "RSS %ld kB -> %ld kB", before, after);
#endif
    T_CHECK(metric(g_main.port, "nindub_slots_busy") == 0);
    T_CHECK(metric(g_main.port, "nindub_queue_depth") == 0);
    T_CHECK(dt < 60);
    fprintf(stderr, "  load: 2 x 32 streams in %.2fs, RSS %ld -> %ld kB\n", dt, before, after);
}

/* ---------------------------------------------------------------- openai npm */

static void test_openai_npm(void) {
    NEED_MAIN();
    if (system("command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1") != 0) T_SKIP("npm/node not installed");
    if (access("build/npm-openai/node_modules/openai/package.json", R_OK) != 0 &&
        system("mkdir -p build/npm-openai && cd build/npm-openai && timeout 120 npm install --silent --no-audit "
               "--no-fund openai@4 >/dev/null 2>&1") != 0)
        T_SKIP("npm install openai failed (no network?)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "OPENAI_DIR=build/npm-openai BASE_URL=http://127.0.0.1:%d/v1 MODEL=tiny timeout 60 node "
             "scripts/openai-client-test.cjs 2>&1",
             g_main.port);
    FILE *f = popen(cmd, "r");
    char line[1024];
    nd_buf out = {0};
    while (f && fgets(line, sizeof line, f)) nd_buf_append(&out, line, strlen(line));
    int st = f ? pclose(f) : -1;
    nd_buf_append(&out, "", 0);
    T_CHECKF(st == 0 && strstr(out.data, "openai client: all ok"), "node: %s", out.data);
    nd_buf_free(&out);
}

/* ---------------------------------------------------------------- slow server */

/* A server with one slot, a queue of one, an API key and a delay per engine step (so a
 * request holds its slot for a while): 503 while loading, 401, 429, a disconnect freeing
 * the slot, SIGTERM mid-stream. */
static void test_slot_lifecycle(void) {
    if (!bin()) T_SKIP("NINDUB_BIN not set (run through make test)");
    if (!model()) T_SKIP("fixture model aidreams260K-f32.gguf not found");
    server s;
    int rc = server_start(&s, false, "--parallel 1 --queue 1 --api-key sekret --test-step-delay-ms 20 "
                                     "--test-load-delay-ms 700 --grace 0.3");
    T_CHECKF(rc == 0, "server did not start (%s)", s.log);
    if (rc) return;
    const char *key = "Authorization: Bearer sekret\r\n";
    const char *req = "{\"prompt\":\"Once\",\"max_tokens\":400,\"ignore_eos\":true,\"stream\":true}";
    /* loading */
    expect_error(s.port, "GET", "/health", NULL, NULL, 503, "loading");
    expect_error(s.port, "POST", "/v1/completions", key, req, 503, "loading");
    double t0 = now_s();
    while (http_status(s.port, "GET", "/health", NULL, NULL, NULL) != 200 && now_s() - t0 < 20) sleep_ms(20);
    /* authentication */
    expect_error(s.port, "POST", "/v1/completions", NULL, req, 401, "invalid_api_key");
    expect_error(s.port, "GET", "/v1/models", "Authorization: Bearer wrong\r\n", NULL, 401, "invalid_api_key");
    T_EQ_INT(http_status(s.port, "GET", "/v1/models", key, NULL, NULL), 200);
    /* slot busy + one queued -> 429 (400 tokens at >= 20 ms a step hold the slot for 8 s, so a
     * loaded machine still gets B queued before A ends) */
    int a = connect_port(s.port), b = connect_port(s.port);
    T_CHECK(a >= 0 && b >= 0);
    send_request(a, "POST", "/v1/completions", key, req);
    char buf[4096];
    ssize_t k = recv(a, buf, sizeof buf - 1, 0); /* headers + first chunk: A owns the slot */
    T_CHECK(k > 0);
    send_request(b, "POST", "/v1/completions", key, req);
    t0 = now_s();
    while (metric_key(s.port, key, "nindub_queue_depth") != 1 && now_s() - t0 < 5) sleep_ms(10);
    expect_error(s.port, "POST", "/v1/completions", key, req, 429, "queue_full");
    /* both hang up: the slot is free at the next step, the queued request is dropped */
    close(a);
    close(b);
    t0 = now_s();
    while ((metric_key(s.port, key, "nindub_slots_busy") != 0 || metric_key(s.port, key, "nindub_queue_depth") != 0) &&
           now_s() - t0 < 5)
        sleep_ms(20);
    T_CHECK(metric_key(s.port, key, "nindub_slots_busy") == 0);
    T_CHECK(metric_key(s.port, key, "nindub_queue_depth") == 0);
    T_CHECK(metric_key(s.port, key, "nindub_requests_cancelled_total") >= 1);
    /* SIGTERM while streaming: the stream ends cleanly (error event + [DONE]), exit 0 */
    a = connect_port(s.port);
    send_request(a, "POST", "/v1/completions", key, req);
    k = recv(a, buf, sizeof buf - 1, 0);
    T_CHECK(k > 0);
    kill(s.pid, SIGTERM);
    nd_buf rest = {0};
    nd_buf_append(&rest, buf, k > 0 ? (size_t)k : 0);
    read_all(a, &rest);
    close(a);
    T_CHECKF(rest.data && strstr(rest.data, "data: [DONE]"), "stream cut without [DONE]: ...%.200s",
             rest.len > 200 ? rest.data + rest.len - 200 : rest.data ? rest.data : "");
    nd_buf_free(&rest);
    T_EQ_INT(server_stop(&s), 0);
}

/* ---------------------------------------------------------------- speculative decoding */

/* One answer, stream or not, reduced to what must not depend on speculation. */
typedef struct answer {
    int status;
    nd_buf text;
    const char *finish;
    char *logprobs;          /* non-stream: choices[0].logprobs printed, or NULL */
    double completion_tokens;
    double drafted, accepted; /* the "speculative" usage extension; -1 when absent */
    const char *bad;         /* what is wrong with the stream, or NULL */
} answer;

static double num_after(const char *s, const char *key) {
    const char *p = s ? strstr(s, key) : NULL;
    return p ? atof(p + strlen(key)) : -1;
}

/* POSTs {fields, "stream": stream} (usage included when streaming) to chat or completions. */
static void ask(int port, bool chat, bool stream, const char *fields, answer *a) {
    memset(a, 0, sizeof *a);
    char body[4096], *out = NULL;
    snprintf(body, sizeof body, "{%s,\"stream\":%s%s}", fields, stream ? "true" : "false",
             stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
    a->status = http_status(port, "POST", chat ? "/v1/chat/completions" : "/v1/completions", NULL, body, &out);
    a->drafted = num_after(out, "\"drafted\":");
    a->accepted = num_after(out, "\"accepted\":");
    a->completion_tokens = num_after(out, "\"completion_tokens\":");
    if (a->status != 200) {
        a->bad = "status";
    } else if (stream) {
        a->bad = check_sse(out ? out : "", chat, true, &a->text, &a->finish);
    } else {
        cJSON *j = out ? cJSON_Parse(out) : NULL, *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
        cJSON *src = chat ? cJSON_GetObjectItem(c0, "message") : c0, *lp = cJSON_GetObjectItem(c0, "logprobs");
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(src, chat ? "content" : "text"));
        const char *f = cJSON_GetStringValue(cJSON_GetObjectItem(c0, "finish_reason"));
        nd_buf_append(&a->text, t ? t : "", t ? strlen(t) + 1 : 1);
        a->finish = !f ? "?" : !strcmp(f, "stop") ? "stop" : !strcmp(f, "length") ? "length" : "?";
        if (lp && !cJSON_IsNull(lp)) {
            char *p = cJSON_PrintUnformatted(lp);
            a->logprobs = p ? nd_strdup(p) : NULL;
            cJSON_free(p);
        }
        if (!t) a->bad = "no text";
        cJSON_Delete(j);
    }
    nd_free(out);
}

static void answer_free(answer *a) {
    nd_buf_free(&a->text);
    nd_free(a->logprobs);
}

/* The same request with "speculative": false and with `spec` gives the same answer. */
static void check_same(int port, bool chat, bool stream, const char *fields, const char *spec, double *drafted,
                       double *accepted) {
    answer a, b;
    char with[3072], without[3072];
    snprintf(with, sizeof with, "%s,\"speculative\":%s", fields, spec);
    snprintf(without, sizeof without, "%s,\"speculative\":false", fields);
    ask(port, chat, stream, without, &a);
    ask(port, chat, stream, with, &b);
    T_CHECKF(!a.bad && !b.bad, "%s %s: %s / %s", fields, spec, a.bad ? a.bad : "ok", b.bad ? b.bad : "ok");
    T_CHECKF(a.text.data && b.text.data && !strcmp(a.text.data, b.text.data), "%s %s (%s): '%s' vs '%s'", fields, spec,
             stream ? "stream" : "whole", a.text.data ? a.text.data : "", b.text.data ? b.text.data : "");
    T_CHECKF(a.finish && b.finish && !strcmp(a.finish, b.finish), "%s %s: finish %s vs %s", fields, spec,
             a.finish ? a.finish : "-", b.finish ? b.finish : "-");
    T_CHECKF(a.completion_tokens == b.completion_tokens, "%s %s: %g vs %g tokens", fields, spec, a.completion_tokens,
             b.completion_tokens);
    T_CHECKF((!a.logprobs && !b.logprobs) || (a.logprobs && b.logprobs && !strcmp(a.logprobs, b.logprobs)),
             "%s %s: logprobs differ", fields, spec);
    T_CHECKF(a.drafted < 0 && b.drafted >= 0 && b.accepted <= b.drafted, "%s %s: speculative usage %g/%g, %g/%g",
             fields, spec, a.drafted, a.accepted, b.drafted, b.accepted);
    if (drafted && b.drafted > 0) *drafted += b.drafted;
    if (accepted && b.accepted > 0) *accepted += b.accepted;
    answer_free(&a);
    answer_free(&b);
}

/* Prompts the tiny model continues in ways the n-gram lookup can guess. */
static const char *const spec_prompts[] = {
    "\"prompt\":\"The cat sat on the mat. The cat sat on the mat. The cat sat on the\"",
    "\"prompt\":\"Once upon a time there was a kaleidoscope of probability. Once upon a time\"",
    "\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}]",
};

static void test_spec_errors(void) {
    NEED_MAIN();
    int p = g_main.port;
    static const char *const bad[][2] = {
        {"\"fast\"", "invalid_value"},
        {"3", "invalid_type"},
        {"[\"ngram\"]", "invalid_type"},
        {"{\"type\":\"ngram\",\"draft_max\":0}", "invalid_value"},
        {"{\"type\":\"ngram\",\"draft_max\":33}", "invalid_value"},
        {"{\"type\":\"ngram\",\"draft_max\":2.5}", "invalid_type"},
        {"{\"type\":\"ngram\",\"p_min\":1.5}", "invalid_value"},
        {"{\"type\":\"ngram\",\"p_min\":\"x\"}", "invalid_type"},
        {"{\"type\":7}", "invalid_type"},
        {"{\"type\":\"trie\"}", "invalid_value"},
        {"{\"type\":\"ngram\",\"draftmax\":4}", "invalid_value"},
        /* this server has no draft model and no default drafter */
        {"\"draft\"", "speculative_unavailable"},
        {"{\"type\":\"draft\",\"draft_max\":4}", "speculative_unavailable"},
        {"true", "speculative_unavailable"},
        {"{\"draft_max\":4}", "speculative_unavailable"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"prompt\":\"a\",\"max_tokens\":2,\"speculative\":%s}", bad[i][0]);
        expect_error(p, "POST", "/v1/completions", NULL, body, 400, bad[i][1]);
        char *out = NULL;
        http_status(p, "POST", "/v1/completions", NULL, body, &out);
        T_CHECKF(out && strstr(out, "\"param\":\"speculative"), "%s: %s", bad[i][0], out ? out : "");
        nd_free(out);
    }
    /* an explicit drafter with a grammar needs greedy decoding */
    expect_error(p, "POST", "/v1/completions", NULL,
                 "{\"prompt\":\"a\",\"temperature\":0.8,\"grammar\":\"root ::= [a-c]+\",\"speculative\":\"ngram\"}", 400,
                 "unsupported_combination");
    static const char *const fine[] = {"null", "false", "\"off\"", "{\"type\":\"off\"}", "\"ngram\"",
                                       "{\"type\":\"ngram\",\"draft_max\":32,\"p_min\":0}"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"prompt\":\"a\",\"max_tokens\":2,\"speculative\":%s}", fine[i]);
        T_CHECKF(http_status(p, "POST", "/v1/completions", NULL, body, NULL) == 200, "refused: %s", fine[i]);
    }
}

/* Per-request n-gram drafting on a server started without a drafter: greedy answers equal
 * plain ones (stream and not, stop strings, max_tokens, ignore_eos, logprobs, grammar), and
 * the counters move. */
static void test_spec_ngram_matches_plain(void) {
    NEED_MAIN();
    int p = g_main.port;
    double d0 = metric(p, "nindub_spec_drafted_tokens_total"), a0 = metric(p, "nindub_spec_accepted_tokens_total");
    T_CHECK(d0 >= 0 && a0 >= 0);
    double drafted = 0, accepted = 0;
    for (size_t i = 0; i < sizeof spec_prompts / sizeof spec_prompts[0]; i++) {
        bool chat = spec_prompts[i][1] == 'm';
        char f[1024];
        for (int stream = 0; stream < 2; stream++) {
            snprintf(f, sizeof f, "%s,\"max_tokens\":60,\"temperature\":0", spec_prompts[i]);
            check_same(p, chat, stream, f, "\"ngram\"", &drafted, &accepted);
            snprintf(f, sizeof f, "%s,\"max_tokens\":50,\"temperature\":0,\"stop\":[\"adjust\",\"whispers\"]", spec_prompts[i]);
            check_same(p, chat, stream, f, "{\"type\":\"ngram\",\"draft_max\":3}", &drafted, &accepted);
        }
        snprintf(f, sizeof f, "%s,\"max_tokens\":7,\"temperature\":0,\"ignore_eos\":true", spec_prompts[i]);
        check_same(p, chat, false, f, "{\"type\":\"ngram\",\"draft_max\":32}", &drafted, &accepted);
        snprintf(f, sizeof f, "%s,\"max_tokens\":30,\"temperature\":0,\"logprobs\":%s", spec_prompts[i],
                 chat ? "true,\"top_logprobs\":2" : "2");
        check_same(p, chat, false, f, "\"ngram\"", &drafted, &accepted);
        snprintf(f, sizeof f, "%s,\"max_tokens\":40,\"temperature\":0,\"grammar\":\"root ::= ([a-z]+ \\\" \\\")+ \\\".\\\"\"",
                 spec_prompts[i]);
        check_same(p, chat, i % 2, f, "\"ngram\"", &drafted, &accepted);
    }
    T_CHECKF(drafted > 20 && accepted > 5, "n-gram drafting barely ran: %g drafted, %g accepted", drafted, accepted);
    double d1 = metric(p, "nindub_spec_drafted_tokens_total"), a1 = metric(p, "nindub_spec_accepted_tokens_total");
    T_CHECKF(d1 - d0 >= drafted && a1 - a0 >= accepted, "metrics %g -> %g drafted, %g -> %g accepted (usage: %g, %g)",
             d0, d1, a0, a1, drafted, accepted);
    /* max_tokens is exact under speculation: the draft is bounded by what is left */
    answer a;
    for (int n = 1; n <= 5; n++) {
        char f[512];
        snprintf(f, sizeof f, "%s,\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,"
                 "\"speculative\":{\"type\":\"ngram\",\"draft_max\":8}", spec_prompts[0], n);
        ask(p, false, n % 2, f, &a);
        T_CHECKF(!a.bad && a.completion_tokens == n && !strcmp(a.finish ? a.finish : "", "length"),
                 "max_tokens %d: %g tokens, finish %s (%s)", n, a.completion_tokens, a.finish ? a.finish : "-",
                 a.bad ? a.bad : "ok");
        answer_free(&a);
    }
    /* sampling with a drafter: well-formed answers */
    char f[512];
    snprintf(f, sizeof f, "%s,\"max_tokens\":40,\"temperature\":0.9,\"seed\":7,\"speculative\":\"ngram\"", spec_prompts[1]);
    ask(p, false, true, f, &a);
    T_CHECKF(!a.bad && a.drafted >= 0, "sampled: %s", a.bad ? a.bad : "no usage extension");
    answer_free(&a);
}

/* Several requests in flight at once on a server with a default drafter. */
typedef struct spec_job {
    int port, i;
    const char *spec; /* "speculative" value, NULL = the server's default */
    const char *fields;
    bool chat, stream;
    answer want, got;
} spec_job;

static void *spec_job_run(void *arg) {
    spec_job *j = arg;
    char f[2048];
    if (j->spec) snprintf(f, sizeof f, "%s,\"speculative\":%s", j->fields, j->spec);
    else snprintf(f, sizeof f, "%s", j->fields);
    ask(j->port, j->chat, j->stream, f, &j->got);
    return NULL;
}

static void test_spec_draft_server(void) {
    if (!bin()) T_SKIP("NINDUB_BIN not set (run through make test)");
    if (!model()) T_SKIP("fixture model aidreams260K-f32.gguf not found");
    server s;
    /* the model drafts for itself: greedy drafts are the target's own picks; each slot's
     * greedy requests draft on the slot's own thread (--draft-async) while the batch runs */
    int rc = server_start(&s, true,
                          "--parallel 4 -c 256 --draft %s --draft-fixed --draft-p-min 0 --draft-max 6 --draft-async",
                          model());
    T_CHECKF(rc == 0, "server did not start (%s)", s.log);
    if (rc) {
        server_stop(&s);
        return;
    }
    char *out = NULL;
    T_EQ_INT(http_status(s.port, "GET", "/v1/models", NULL, NULL, &out), 200);
    T_CHECKF(out && strstr(out, "\"speculative\":\"draft\""), "%s", out ? out : "");
    nd_free(out);
    static const char *const specs[] = {"false", NULL, "\"ngram\"", "{\"type\":\"draft\",\"draft_max\":3}", "true",
                                        "\"draft\""};
    enum { NJ = 12 };
    static char fields[NJ][1024];
    spec_job jobs[NJ];
    for (int i = 0; i < NJ; i++) {
        const char *pr = spec_prompts[i % 3];
        snprintf(fields[i], sizeof fields[i], "%s,\"max_tokens\":%d,\"temperature\":0%s", pr, 30 + 7 * (i % 5),
                 i % 4 == 3 ? ",\"stop\":[\"ing\"]" : i % 4 == 1 ? ",\"ignore_eos\":true" : "");
        jobs[i] = (spec_job){.port = s.port, .i = i, .spec = specs[i % 6], .fields = fields[i],
                             .chat = pr[1] == 'm', .stream = (i / 3) % 2};
        char f[2048];
        snprintf(f, sizeof f, "%.1500s,\"speculative\":false", fields[i]); /* the reference, one at a time */
        ask(s.port, jobs[i].chat, false, f, &jobs[i].want);
        T_CHECKF(!jobs[i].want.bad, "reference %d: %s", i, jobs[i].want.bad);
    }
    double d0 = metric(s.port, "nindub_spec_drafted_tokens_total");
    pthread_t th[NJ];
    for (int i = 0; i < NJ; i++) pthread_create(&th[i], NULL, spec_job_run, &jobs[i]);
    double drafted = 0, accepted = 0;
    for (int i = 0; i < NJ; i++) {
        pthread_join(th[i], NULL);
        spec_job *j = &jobs[i];
        T_CHECKF(!j->got.bad, "job %d: %s", i, j->got.bad);
        T_CHECKF(j->got.text.data && j->want.text.data && !strcmp(j->got.text.data, j->want.text.data) &&
                     j->got.finish && j->want.finish && !strcmp(j->got.finish, j->want.finish),
                 "job %d (speculative %s, %s): '%s' (%s) vs plain '%s' (%s)", i, j->spec ? j->spec : "default",
                 j->stream ? "stream" : "whole", j->got.text.data ? j->got.text.data : "", j->got.finish ? j->got.finish : "-",
                 j->want.text.data ? j->want.text.data : "", j->want.finish ? j->want.finish : "-");
        T_CHECKF(j->got.completion_tokens == j->want.completion_tokens, "job %d: %g vs %g tokens", i,
                 j->got.completion_tokens, j->want.completion_tokens);
        bool off = j->spec && !strcmp(j->spec, "false");
        T_CHECKF(off == (j->got.drafted < 0), "job %d: speculative usage %g", i, j->got.drafted);
        if (!off && (!j->spec || strstr(j->spec, "draft") || !strcmp(j->spec, "true"))) {
            drafted += j->got.drafted;
            accepted += j->got.accepted;
        }
    }
    /* the model drafting for itself agrees with itself */
    T_CHECKF(drafted > 50 && accepted >= 0.9 * drafted, "draft model: %g drafted, %g accepted", drafted, accepted);
    T_CHECK(metric(s.port, "nindub_spec_drafted_tokens_total") - d0 >= drafted);
    T_CHECK(metric(s.port, "nindub_spec_accepted_tokens_total") >= accepted);
    for (int i = 0; i < NJ; i++) {
        answer_free(&jobs[i].want);
        answer_free(&jobs[i].got);
    }
    /* stop strings and max_tokens exactly, grammar under greedy verification */
    double dd = 0, aa = 0;
    check_same(s.port, false, true, "\"prompt\":\"Once upon a time\",\"max_tokens\":60,\"temperature\":0,\"stop\":\"petals\"",
               "\"draft\"", &dd, &aa);
    check_same(s.port, false, false, "\"prompt\":\"Once upon a time\",\"max_tokens\":9,\"temperature\":0", "true", &dd, &aa);
    check_same(s.port, true, false, "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":50,"
               "\"temperature\":0,\"grammar\":\"root ::= [a-z ]+ \\\".\\\"\"", "\"draft\"", &dd, &aa);
    check_same(s.port, true, true, "\"messages\":[{\"role\":\"user\",\"content\":\"a person\"}],\"max_tokens\":80,"
               "\"temperature\":0,\"response_format\":{\"type\":\"json_object\"}", "{\"type\":\"draft\",\"draft_max\":5}", &dd, &aa);
    T_CHECKF(dd > 10 && aa >= 0.9 * dd, "%g drafted, %g accepted", dd, aa);
    /* a sampled request with a grammar: plain decoding by default, refused when asked for */
    answer a;
    ask(s.port, false, false, "\"prompt\":\"x\",\"max_tokens\":20,\"temperature\":0.8,\"grammar\":\"root ::= [a-c]+\"", &a);
    T_CHECKF(!a.bad && a.drafted < 0, "grammar + sampling: %s, drafted %g", a.bad ? a.bad : "ok", a.drafted);
    answer_free(&a);
    expect_error(s.port, "POST", "/v1/completions", NULL,
                 "{\"prompt\":\"x\",\"temperature\":0.8,\"grammar\":\"root ::= [a-c]+\",\"speculative\":\"draft\"}", 400,
                 "unsupported_combination");
    /* sampling with the draft model: well-formed, and the draft model's q is used */
    ask(s.port, true, true, "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":40,\"temperature\":1,\"seed\":3", &a);
    T_CHECKF(!a.bad && a.drafted > 0, "sampled: %s, drafted %g", a.bad ? a.bad : "ok", a.drafted);
    answer_free(&a);
    T_CHECK(metric(s.port, "nindub_slots_busy") == 0);
    T_EQ_INT(server_stop(&s), 0);
}

/* The speculative flags of `serve` are run's; bad ones stop it before it listens (2), a
 * draft model that cannot be loaded once it does (1). */
static void test_spec_cli(void) {
    if (!bin()) T_SKIP("NINDUB_BIN not set (run through make test)");
    if (!model()) T_SKIP("fixture model aidreams260K-f32.gguf not found");
    static const struct {
        const char *args, *says;
        int code;
    } cases[] = {
        {"--spec trie", "--spec expects ngram", 2},
        {"--spec ngram --draft x.gguf", "exclude each other", 2},
        {"--draft-max 4", "need --draft FILE or --spec ngram", 2},
        {"--spec ngram --draft-max 99", "--draft-max", 2},
        {"--spec ngram --draft-min 9 --draft-max 4", "--draft-min", 2},
        {"--draft /nonexistent.gguf", "/nonexistent.gguf", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[2048], line[512];
        snprintf(cmd, sizeof cmd, "timeout 20 %s serve -m %s --port 0 -t 1 %s 2>&1", bin(), model(), cases[i].args);
        FILE *f = popen(cmd, "r");
        nd_buf out = {0};
        while (f && fgets(line, sizeof line, f)) nd_buf_append(&out, line, strlen(line));
        int st = f ? pclose(f) : -1;
        nd_buf_append(&out, "", 0);
        T_CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == cases[i].code && strstr(out.data, cases[i].says),
                 "serve %s: exit %d: %s", cases[i].args, WIFEXITED(st) ? WEXITSTATUS(st) : -1, out.data);
        nd_buf_free(&out);
    }
}

/* ---------------------------------------------------------------- parser units */

static void test_req_parse_units(void) {
    srv_req r;
    srv_apierr e = {0};
    const char *ok = "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                     "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\","
                     "\"content\":null}],\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":3,"
                     "\"min_p\":0.1,\"seed\":42,\"stop\":[\"x\",\"\",\"yy\"],\"stream\":true,\"stream_options\":"
                     "{\"include_usage\":true},\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"n\":1,"
                     "\"logprobs\":true,\"top_logprobs\":2,\"user\":\"ignored\"}";
    T_EQ_INT(srv_req_parse(&r, SRV_EP_CHAT, ok, strlen(ok), &e), 0);
    T_EQ_INT(r.n_msgs, 3);
    T_EQ_STR(r.msgs[0].role, "system");
    T_EQ_STR(r.msgs[0].content, "ab");
    T_EQ_STR(r.msgs[2].content, "");
    T_EQ_INT(r.max_tokens, 7);
    T_EQ_INT(r.sp.top_k, 3);
    T_EQ_INT(r.sp.seed, 42);
    T_EQ_INT(r.n_stops, 2);
    T_CHECK(r.stream && r.include_usage && r.logprobs == 2);
    T_NEAR(r.sp.freq_penalty, -0.5, 1e-6);
    T_CHECK(r.spec == SRV_SPEC_DEFAULT && r.spec_draft_max == 0 && r.spec_p_min < 0);
    srv_req_free(&r);
    static const struct {
        const char *v;
        srv_spec_mode mode;
        int draft_max;
        float p_min;
    } specs[] = {{"false", SRV_SPEC_OFF, 0, -1},       {"true", SRV_SPEC_SERVER, 0, -1},
                 {"\"off\"", SRV_SPEC_OFF, 0, -1},    {"\"ngram\"", SRV_SPEC_NGRAM, 0, -1},
                 {"\"draft\"", SRV_SPEC_DRAFT, 0, -1}, {"{\"draft_max\":5}", SRV_SPEC_SERVER, 5, -1},
                 {"{\"type\":\"ngram\",\"draft_max\":32,\"p_min\":0.25}", SRV_SPEC_NGRAM, 32, 0.25f},
                 {"{\"type\":\"draft\",\"p_min\":0}", SRV_SPEC_DRAFT, 0, 0}};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"prompt\":\"a\",\"speculative\":%s}", specs[i].v);
        T_EQ_INT(srv_req_parse(&r, SRV_EP_COMPLETION, body, strlen(body), &e), 0);
        T_CHECKF(r.spec == specs[i].mode && r.spec_draft_max == specs[i].draft_max && r.spec_p_min == specs[i].p_min,
                 "%s: mode %d, draft_max %d, p_min %g", specs[i].v, (int)r.spec, r.spec_draft_max, r.spec_p_min);
        srv_req_free(&r);
    }
    static const char *const bad[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"speculative\":\"yes\"}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"speculative\":{\"draft_max\":-1}}",
        "", "null", "{\"messages\":{}}", "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":0}",
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":1.5}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":1e999}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"yaml\"}}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"grammar\":\"root ::= \\\"a\\\"\","
        "\"response_format\":{\"type\":\"json_object\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        T_CHECKF(srv_req_parse(&r, SRV_EP_CHAT, bad[i], strlen(bad[i]), &e) != 0 && e.status == 400, "accepted: %s",
                 bad[i]);
        char *j = srv_error_json(&e);
        T_CHECK(j && strstr(j, "\"error\""));
        nd_free(j);
    }
    /* allocation failures leave nothing behind (ASan checks) */
    for (long n = 0; n < 200; n++) {
        nd_alloc_fail_after(n);
        int rc = srv_req_parse(&r, SRV_EP_CHAT, ok, strlen(ok), &e);
        nd_alloc_fail_after(-1);
        if (rc == 0) srv_req_free(&r);
    }
    char *clean = srv_utf8_clean("a\xff\0b\xe2\x82", 6);
    T_EQ_STR(clean, "a\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
    nd_free(clean);
}

static void test_stop_main(void) {
    if (!g_main_ok) T_SKIP("no server");
    T_EQ_INT(server_stop(&g_main), 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    T_RUN(test_req_parse_units);
    T_RUN(test_start_main);
    T_RUN(test_errors);
    T_RUN(test_basic_routes);
    T_RUN(test_greedy_matches_run);
    T_RUN(test_chat_stream_usage_and_cache);
    T_RUN(test_stop_and_length);
    T_RUN(test_constrained);
    T_RUN(test_hostile_connections);
    T_RUN(test_load_32_streams);
    T_RUN(test_spec_errors);
    T_RUN(test_spec_ngram_matches_plain);
    T_RUN(test_openai_npm);
    T_RUN(test_stop_main);
    T_RUN(test_slot_lifecycle);
    T_RUN(test_spec_draft_server);
    T_RUN(test_spec_cli);
    return t_done();
}
