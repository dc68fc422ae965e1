/* orch upstream: libcurl multi interface with one easy handle per transfer, pumped by the
 * caller. See upstream.h. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "orch/upstream.h"

#define DEF_MAX_BODY ((size_t)64 << 20)
#define DEF_MAX_EVENT ((size_t)8 << 20)
#define MAX_LINE ((size_t)8 << 20)

struct orch_xfer {
    CURLM *multi;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url, *body;             /* owned copies (libcurl borrows them) */
    size_t body_n;
    orch_xfer_opts o;
    orch_sse_fn on_event;
    void *user;
    bool started, done, headers_done, sse, aborted;
    int status;
    char ctype[128];
    nd_buf resp;                  /* non-SSE body */
    nd_buf line, event;           /* SSE parser: partial line, data of the current event */
    bool event_has_data;
    orch_xfer_fail fail;
    char msg[320];
    double t_last;                /* last byte (idle timeout) */
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc;
static void global_init(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int orch_upstream_init(nd_err *err) {
    pthread_once(&g_once, global_init);
    if (g_init_rc != CURLE_OK)
        return nd_seterr(err, ND_EIO, "libcurl initialisation failed: %s", curl_easy_strerror(g_init_rc));
    return 0;
}

static void set_fail(orch_xfer *x, orch_xfer_fail f, const char *fmt, const char *detail) {
    if (x->fail != ORCH_XFER_OK) return;
    x->fail = f;
    snprintf(x->msg, sizeof x->msg, fmt, x->url, detail ? detail : "");
}

/* ------------------------------------------------------------ SSE parsing */

static int sse_dispatch(orch_xfer *x) {
    if (!x->event_has_data) return 0;
    x->event_has_data = false;
    if (nd_buf_append(&x->event, "", 0)) return -1;
    size_t n = x->event.len;
    x->event.len = 0;
    if (!x->on_event) return 0;
    if (x->on_event(x->user, x->event.data, n)) {
        set_fail(x, ORCH_XFER_ABORTED, "%s: stream stopped by the orchestrator%s", NULL);
        return -1;
    }
    return 0;
}

static int sse_line(orch_xfer *x, const char *l, size_t n) {
    if (n && l[n - 1] == '\r') n--;
    if (n == 0) return sse_dispatch(x);
    if (l[0] == ':') return 0;
    size_t f = 0;
    while (f < n && l[f] != ':') f++;
    if (f != 4 || memcmp(l, "data", 4) != 0) return 0; /* event:, id:, retry:, unknown fields */
    const char *v = l + f + (f < n);
    size_t vn = n - f - (f < n);
    if (vn && *v == ' ') v++, vn--;
    if (x->event_has_data && nd_buf_append(&x->event, "\n", 1)) return -1;
    if (x->event.len + vn > x->o.max_event) {
        set_fail(x, ORCH_XFER_PROTOCOL, "%s: a stream event is larger than the limit%s", NULL);
        return -1;
    }
    if (nd_buf_append(&x->event, v, vn)) return -1;
    x->event_has_data = true;
    return 0;
}

static int sse_feed(orch_xfer *x, const char *p, size_t n) {
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;
        if (x->line.len + k > MAX_LINE) {
            set_fail(x, ORCH_XFER_PROTOCOL, "%s: a stream line is larger than the limit%s", NULL);
            return -1;
        }
        if (!nl) return nd_buf_append(&x->line, p, k) ? -1 : 0;
        int rc;
        if (x->line.len) {
            if (nd_buf_append(&x->line, p, k)) return -1;
            rc = sse_line(x, x->line.data, x->line.len);
            x->line.len = 0;
        } else {
            rc = sse_line(x, p, k);
        }
        if (rc) return -1;
        p += k + 1;
        n -= k + 1;
    }
    return 0;
}

/* ------------------------------------------------------------ libcurl callbacks */

static void headers_complete(orch_xfer *x) {
    if (x->headers_done) return;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    char *ct = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    x->status = (int)code;
    snprintf(x->ctype, sizeof x->ctype, "%s", ct ? ct : "");
    x->sse = code == 200 && !strncasecmp(x->ctype, "text/event-stream", 17);
    x->headers_done = true;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    orch_xfer *x = ud;
    size_t len = size * n;
    x->t_last = nd_time_s();
    /* the blank line ends a header block; 1xx blocks (100-continue) are followed by more */
    if ((len == 2 && p[0] == '\r') || (len == 1 && p[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) headers_complete(x);
    }
    return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
    orch_xfer *x = ud;
    size_t len = size * n;
    x->t_last = nd_time_s();
    headers_complete(x);
    if (x->aborted) return 0;
    if (x->sse) return sse_feed(x, p, len) ? 0 : len;
    if (x->resp.len + len > x->o.max_body) {
        set_fail(x, ORCH_XFER_PROTOCOL, "%s: the response is larger than the limit%s", NULL);
        return 0;
    }
    return nd_buf_append(&x->resp, p, len) ? 0 : len;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    orch_xfer *x = ud;
    if (x->aborted) return 1;
    if (x->o.idle_timeout_s > 0 && nd_time_s() - x->t_last > x->o.idle_timeout_s) { /* before the headers too */
        char d[64];
        snprintf(d, sizeof d, " (no data for %.0f s)", x->o.idle_timeout_s);
        set_fail(x, ORCH_XFER_TIMEOUT, "%s: the endpoint stalled%s", d);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ transfers */

orch_xfer *orch_xfer_post(const char *url, const char *bearer, const char *body, size_t n,
                          const orch_xfer_opts *o, orch_sse_fn on_event, void *user, nd_err *err) {
    if (!url || (!body && n)) {
        nd_seterr(err, ND_EINVAL, "orch_xfer_post: NULL argument");
        return NULL;
    }
    if (orch_upstream_init(err)) return NULL;
    orch_xfer *x = nd_calloc(1, sizeof *x);
    if (!x) goto oom;
    if (o) x->o = *o;
    if (x->o.connect_timeout_s <= 0) x->o.connect_timeout_s = 10;
    if (!x->o.max_body) x->o.max_body = DEF_MAX_BODY;
    if (!x->o.max_event) x->o.max_event = DEF_MAX_EVENT;
    x->on_event = on_event;
    x->user = user;
    x->url = nd_strdup(url);
    x->body = nd_malloc(n + 1);
    if (!x->url || !x->body) goto oom;
    memcpy(x->body, body ? body : "", n);
    x->body[n] = 0;
    x->body_n = n;
    x->easy = curl_easy_init();
    x->multi = curl_multi_init();
    if (!x->easy || !x->multi) goto oom;
    x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    x->hdrs = x->hdrs ? curl_slist_append(x->hdrs, "Accept: application/json, text/event-stream") : NULL;
    x->hdrs = x->hdrs ? curl_slist_append(x->hdrs, "Expect:") : NULL; /* no 100-continue round trip */
    if (x->hdrs && bearer && *bearer) {
        nd_buf a = {0};
        if (nd_buf_printf(&a, "Authorization: Bearer %s", bearer)) goto oom;
        struct curl_slist *h = curl_slist_append(x->hdrs, a.data);
        memset(a.data, 0, a.len); /* the key lives on only in libcurl's copy */
        nd_buf_free(&a);
        if (!h) goto oom;
        x->hdrs = h;
    }
    if (!x->hdrs) goto oom;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(x->o.connect_timeout_s * 1000));
    if (x->o.total_timeout_s > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(x->o.total_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nindub-orchestrator");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* whatever libcurl can decode */
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (curl_multi_add_handle(x->multi, e) != CURLM_OK) goto oom;
    return x;
oom:
    nd_seterr(err, ND_ENOMEM, "upstream: out of memory setting up a request");
    orch_xfer_free(x);
    return NULL;
}

static void finish_with(orch_xfer *x, CURLcode rc) {
    x->done = true;
    headers_complete(x);
    if (rc == CURLE_OK || x->fail != ORCH_XFER_OK) return;
    if (x->aborted) {
        set_fail(x, ORCH_XFER_ABORTED, "%s: request aborted%s", NULL);
        return;
    }
    const char *why = curl_easy_strerror(rc);
    char d[200];
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        snprintf(d, sizeof d, ": %s", why);
        set_fail(x, ORCH_XFER_CONNECT, "cannot reach %s%s", d);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(d, sizeof d, " (%s)", why);
        set_fail(x, ORCH_XFER_TIMEOUT, "%s: timed out%s", d);
        break;
    case CURLE_OUT_OF_MEMORY:
        set_fail(x, ORCH_XFER_INTERNAL, "%s: out of memory%s", NULL);
        break;
    default:
        snprintf(d, sizeof d, ": %s", why);
        set_fail(x, ORCH_XFER_PROTOCOL, "%s: broken response%s", d);
        break;
    }
}

int orch_xfer_pump(orch_xfer *x, int wait_ms) {
    if (x->done) return 1;
    if (!x->started) {
        x->started = true;
        x->t_last = nd_time_s();
    }
    int running = 0;
    if (curl_multi_perform(x->multi, &running) != CURLM_OK) {
        set_fail(x, ORCH_XFER_INTERNAL, "%s: libcurl failed%s", NULL);
        x->done = true;
        return 1;
    }
    if (running && wait_ms > 0) {
        curl_multi_poll(x->multi, NULL, 0, wait_ms, NULL);
        if (curl_multi_perform(x->multi, &running) != CURLM_OK) running = 0;
    }
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(x->multi, &left)))
        if (m->msg == CURLMSG_DONE) finish_with(x, m->data.result);
    if (!running && !x->done) finish_with(x, CURLE_OK);
    if (x->done && x->sse && x->fail == ORCH_XFER_OK) {
        if (x->line.len) { /* a last line without its newline */
            sse_line(x, x->line.data, x->line.len);
            x->line.len = 0;
        }
        sse_dispatch(x);
    }
    return x->done;
}

void orch_xfer_finish(orch_xfer *x) {
    while (!orch_xfer_pump(x, 100)) {
    }
}

bool orch_xfer_done(const orch_xfer *x) { return x->done; }
bool orch_xfer_headers_done(const orch_xfer *x) { return x->headers_done; }
int orch_xfer_status(const orch_xfer *x) { return x->status; }
bool orch_xfer_is_sse(const orch_xfer *x) { return x->sse; }
const nd_buf *orch_xfer_body(const orch_xfer *x) { return &x->resp; }
void orch_xfer_abort(orch_xfer *x) { x->aborted = true; }

orch_xfer_fail orch_xfer_failure(const orch_xfer *x, char *msg, size_t cap) {
    if (msg && cap) snprintf(msg, cap, "%s", x->fail ? x->msg : "");
    return x->fail;
}

void orch_xfer_free(orch_xfer *x) {
    if (!x) return;
    if (x->multi && x->easy) curl_multi_remove_handle(x->multi, x->easy);
    if (x->easy) curl_easy_cleanup(x->easy);
    if (x->multi) curl_multi_cleanup(x->multi);
    if (x->hdrs) curl_slist_free_all(x->hdrs);
    if (x->body) memset(x->body, 0, x->body_n);
    nd_free(x->body);
    nd_free(x->url);
    nd_buf_free(&x->resp);
    nd_buf_free(&x->line);
    nd_buf_free(&x->event);
    nd_free(x);
}

orch_xfer_fail orch_http_post(const char *url, const char *bearer, const char *body, size_t n,
                              const orch_xfer_opts *o, int *status, nd_buf *resp, char *msg, size_t cap) {
    nd_err err = {0};
    *status = 0;
    orch_xfer *x = orch_xfer_post(url, bearer, body, n, o, NULL, NULL, &err);
    if (!x) {
        if (msg && cap) snprintf(msg, cap, "%s", err.msg);
        return ORCH_XFER_INTERNAL;
    }
    orch_xfer_finish(x);
    orch_xfer_fail f = orch_xfer_failure(x, msg, cap);
    if (f == ORCH_XFER_OK) {
        *status = x->status;
        *resp = x->resp; /* hand the body over */
        memset(&x->resp, 0, sizeof x->resp);
    }
    orch_xfer_free(x);
    return f;
}
