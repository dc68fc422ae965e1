/* Measurements shared by the perplexity, bench and compare tools. */
#ifndef ND_TOOLS_EVAL_H
#define ND_TOOLS_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/nd.h"

typedef struct ppl_opts {
    const char *model, *text;
    long n_ctx;            /* tokens per chunk */
    long max_chunks;       /* <= 0: all */
    int threads;           /* 0: all CPUs */
    const char *kld_base;  /* write the reference log-probabilities here, or NULL */
    const char *kld;       /* compare with this reference file, or NULL */
    bool print_running;    /* "[1]82.35,[2]..." on stdout as chunks finish (not on a TTY) */
    bool progress;         /* progress bar on a TTY */
} ppl_opts;

typedef struct ppl_result {
    double ppl, ppl_se;
    size_t n_scored;
    long n_chunk;
    double secs;
    /* with opts.kld */
    bool has_kld;
    double kld_mean, kld_median, kld_p99, kld_max;
    double ppl_base;       /* the reference's perplexity on the same tokens */
    double same_top1;      /* fraction of positions where both argmaxes agree */
    double rms_dp;         /* RMS of p(this) - p(base) of the correct token */
} ppl_result;

/* llama.cpp-compatible perplexity (see perplexity.c for the protocol and the KLD file). */
int ppl_eval(const ppl_opts *o, ppl_result *r, nd_err *err);

/* Prompt processing (n_prompt tokens in one pass) and generation (n_gen single-token
 * steps) speed in tokens/s over reps repetitions after a warm-up; 0 skips a test. */
typedef struct speed_result {
    double pp_avg, pp_sd, tg_avg, tg_sd;
} speed_result;
int bench_speed(const char *model, int threads, long n_prompt, long n_gen, int reps, speed_result *r,
                nd_err *err);

#endif
