/* orch upstream: the orchestrator's HTTP client (libcurl) for OpenAI-compatible endpoints.
 *
 * One orch_xfer is one POST. It is driven by orch_xfer_pump from the caller's thread (no
 * thread of its own), so a server connection thread can interleave it with writing to its
 * client: pump until the status is known, answer with an error or start a stream, then pump
 * from the stream's reader until the transfer ends.
 *
 * A 200 response with Content-Type text/event-stream is parsed as server-sent events: every
 * event's data (its `data:` lines joined by "\n") goes to the on_event callback as it
 * arrives; other lines (event:, id:, comments) are ignored. Any other response is collected
 * into the body (at most max_body bytes).
 *
 * Failures are classified (orch_xfer_failure) so the server can say 502 "cannot connect" or
 * 504 "timed out" with the reason; messages name the URL, never the API key.
 */
#ifndef ND_ORCH_UPSTREAM_H
#define ND_ORCH_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/nd.h"

typedef struct orch_xfer_opts {
    double connect_timeout_s; /* TCP + TLS connect (default 10 when 0) */
    double total_timeout_s;   /* whole transfer, 0 = none */
    double idle_timeout_s;    /* no byte received for this long = timeout, 0 = none */
    size_t max_body;          /* non-SSE body cap (default 64 MiB when 0) */
    size_t max_event;         /* one SSE event's data cap (default 8 MiB when 0) */
} orch_xfer_opts;

typedef enum orch_xfer_fail {
    ORCH_XFER_OK,
    ORCH_XFER_CONNECT,  /* could not resolve / connect / TLS */
    ORCH_XFER_TIMEOUT,  /* connect, total or idle timeout */
    ORCH_XFER_PROTOCOL, /* broken HTTP, an SSE event or body over its cap */
    ORCH_XFER_ABORTED,  /* on_event returned non-zero, or orch_xfer_abort */
    ORCH_XFER_INTERNAL, /* out of memory, libcurl setup */
} orch_xfer_fail;

/* Called per SSE event with its data (NUL-terminated; n excludes the NUL). Non-zero aborts. */
typedef int (*orch_sse_fn)(void *user, const char *data, size_t n);

typedef struct orch_xfer orch_xfer;

/* Global libcurl setup; call once before any thread uses transfers (idempotent). */
int orch_upstream_init(nd_err *err);

/* Starts a POST of body (Content-Type application/json) to url. bearer (may be NULL) becomes
 * "Authorization: Bearer ...". Nothing is sent until the first pump. */
orch_xfer *orch_xfer_post(const char *url, const char *bearer, const char *body, size_t n,
                          const orch_xfer_opts *o, orch_sse_fn on_event, void *user, nd_err *err);
/* Moves the transfer on for at most wait_ms (0 = only what is ready). Returns 1 when the
 * transfer has ended (success or failure), 0 while it runs. */
int orch_xfer_pump(orch_xfer *x, int wait_ms);
/* Pumps until the end. */
void orch_xfer_finish(orch_xfer *x);
bool orch_xfer_done(const orch_xfer *x);
bool orch_xfer_headers_done(const orch_xfer *x);
int orch_xfer_status(const orch_xfer *x);    /* HTTP status, 0 before the headers */
bool orch_xfer_is_sse(const orch_xfer *x);   /* 200 + text/event-stream */
const nd_buf *orch_xfer_body(const orch_xfer *x); /* non-SSE body so far */
/* After the end: ORCH_XFER_OK or the failure, with msg (may be NULL) filled in. */
orch_xfer_fail orch_xfer_failure(const orch_xfer *x, char *msg, size_t cap);
/* Stops the transfer; the next pump reports ORCH_XFER_ABORTED. */
void orch_xfer_abort(orch_xfer *x);
void orch_xfer_free(orch_xfer *x);            /* NULL is fine */

/* Blocking POST (non-SSE): status and body (owned by the caller: nd_buf_free). Returns 0 when
 * a response arrived (whatever its status), else the failure with msg filled. */
orch_xfer_fail orch_http_post(const char *url, const char *bearer, const char *body, size_t n,
                              const orch_xfer_opts *o, int *status, nd_buf *resp, char *msg, size_t cap);

#endif
