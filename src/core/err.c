/* Errors, assertions, logging, time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/nd.h"

int nd_seterr(nd_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int nd_preerr(nd_err *e, const char *fmt, ...) {
    if (!e) return ND_EINVAL;
    char prefix[ND_ERR_MSG], old[ND_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    old[sizeof old - 1] = 0;
    size_t a = strlen(prefix), b = strlen(old);
    if (a > sizeof e->msg - 1) a = sizeof e->msg - 1;
    if (b > sizeof e->msg - 1 - a) b = sizeof e->msg - 1 - a;
    memcpy(e->msg, prefix, a);
    memcpy(e->msg + a, old, b);
    e->msg[a + b] = 0;
    return e->code;
}

const char *nd_strerror(int code) {
    switch (code) {
    case ND_OK: return "ok";
    case ND_EINVAL: return "invalid argument";
    case ND_ENOMEM: return "out of memory";
    case ND_EIO: return "I/O error";
    case ND_EFORMAT: return "malformed input";
    case ND_ERANGE: return "out of range";
    case ND_EUNSUPPORTED: return "unsupported";
    case ND_ENOTFOUND: return "not found";
    case ND_ETYPE: return "wrong type";
    default: return "unknown error";
    }
}

_Noreturn void nd_assert_fail(const char *file, int line, const char *expr) {
    fprintf(stderr, "nindub: internal error at %s:%d: assertion '%s' failed — please report it\n",
            file, line, expr);
    abort();
}

double nd_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nd_log(const nd_logger *lg, nd_log_level lvl, const char *fmt, ...) {
    if (!lg || !lg->fn || lvl > lg->max_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->fn(lvl, msg, lg->user);
}

void nd_log_stderr(nd_log_level lvl, const char *msg, void *user) {
    static const char *const names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "nindub: %s: %s\n", names[lvl], msg);
}
