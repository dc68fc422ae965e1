/* Shared pieces of the subcommands: number flags, waiting for SIGINT/SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>

#include "tools/tools.h"

int tool_num(const char *tool, const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "nindub %s: %s expects a number in [%g, %g], got '%s'\n", tool, flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

void tool_catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void tool_wait_for_stop(void) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    while (!stop_requested) nanosleep(&ts, NULL);
}
