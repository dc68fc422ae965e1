/* nindub run: generate text from a prompt, streamed to stdout as it is produced; speed
 * figures on stderr at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/gen.h"
#include "tools/tools.h"

static void usage(FILE *f) {
    fprintf(f, "usage: nindub run -m model.gguf -p \"prompt\" [options]\n"
               "  -p TEXT              the prompt (special-token text such as <|im_start|> is parsed)\n"
               "  -f FILE              read the prompt from a file\n");
    gen_opts_usage(f);
}

/* The speculative figures under the timing lines, with the speedup the simple model
 * predicts from them: a = per-token acceptance, k = mean draft length, c = cost of a
 * drafted token / cost of a plain target step. */
static void print_spec(const spec_seq *q, spec_kind kind) {
    const spec_stats *st = spec_seq_stats(q);
    double a = st->n_tried ? (double)st->n_accepted / (double)st->n_tried : 0;
    double k = st->n_draft_steps ? (double)st->n_drafted / (double)st->n_draft_steps : 0;
    double c = st->n_drafted && st->t_target1 > 0 ? st->t_draft / (double)st->n_drafted / st->t_target1 : 0;
    fprintf(stderr,
            "  speculative (%s): %lld drafted, %lld accepted (%.1f%%), acceptance rate a %.3f, "
            "%.2f tokens per target pass\n"
            "  %lld of %lld steps drafted: mean draft length k %.2f, mean accepted length %.2f; cost ratio c %.3f, "
            "expected speedup of drafting steps (1-a^(k+1))/((1-a)(kc+1)) = %.2fx\n",
            kind == SPEC_NGRAM ? "ngram" : "draft model", (long long)st->n_drafted, (long long)st->n_accepted,
            st->n_drafted ? 100.0 * (double)st->n_accepted / (double)st->n_drafted : 0.0, a,
            st->n_steps ? (double)st->n_out / (double)st->n_steps : 0.0, (long long)st->n_draft_steps,
            (long long)st->n_steps, k, st->n_draft_steps ? (double)st->n_accepted / (double)st->n_draft_steps : 0.0,
            c, spec_expected_speedup(a, k, c));
}

int tool_run(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o);
    const char *prompt = NULL, *prompt_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int k = gen_opts_parse(&o, "run", argc, argv, &i);
        if (k < 0) return 2;
        if (k > 0) continue;
        if ((!strcmp(a, "-p") || !strcmp(a, "-f")) && i + 1 < argc) {
            if (a[1] == 'p') prompt = argv[++i];
            else prompt_file = argv[++i];
            continue;
        }
        fprintf(stderr, "nindub run: unknown or incomplete option %s\n\n", a);
        usage(stderr);
        return 2;
    }
    if (!o.model || !prompt == !prompt_file) {
        fprintf(stderr, "nindub run: -m and one of -p / -f are required\n\n");
        usage(stderr);
        return 2;
    }
    gen_opts_finish(&o);

    gen_session s = {0};
    nd_err err = {0};
    char *file_text = NULL;
    int32_t *ids = NULL, *kv = NULL;
    size_t n_prompt = 0, n_kv = 0;
    nd_buf text = {0};
    int rc = 1;
    double t_load = nd_time_s();
    if (prompt_file && nd_read_file(prompt_file, &file_text, NULL, &err)) goto fail;
    if (file_text) prompt = file_text;
    if (gen_open(&s, &o, &err)) goto fail;
    t_load = nd_time_s() - t_load;
    if (tok_encode(s.vocab, prompt, strlen(prompt), true, true, &ids, &n_prompt, &err)) {
        nd_preerr(&err, "tokenizing the prompt: ");
        goto fail;
    }
    if (n_prompt == 0) {
        nd_seterr(&err, ND_EINVAL, "the prompt is empty");
        goto fail;
    }
    if ((int64_t)n_prompt >= model_ctx_n_ctx(s.ctx)) {
        nd_seterr(&err, ND_ERANGE, "the prompt has %zu tokens, the context only %lld — use a larger -c",
                  n_prompt, (long long)model_ctx_n_ctx(s.ctx));
        goto fail;
    }
    if (o.verbose)
        fprintf(stderr, "nindub run: %s (%s, %lld layers, vocab %lld), ctx %lld, %d threads, seed %llu, "
                        "%zu prompt tokens, load %.2fs\n", o.model, s.m->hp.arch_name, (long long)s.m->hp.n_layer,
                (long long)s.m->hp.n_vocab, (long long)model_ctx_n_ctx(s.ctx), model_ctx_n_threads(s.ctx),
                (unsigned long long)o.sp.seed, n_prompt, t_load);
    double t0 = nd_time_s();
    if (model_forward(s.ctx, ids, (int)n_prompt, 0, s.logits, MODEL_LOGITS_LAST, &err)) goto fail;
    double t_prompt = nd_time_s() - t0;
    for (size_t i = 0; i < n_prompt; i++) smp_accept(s.smp, ids[i]);
    int64_t pos = (int64_t)n_prompt;
    /* the speculative drafter continues the tokens of the cache */
    for (size_t i = 0; s.spec && i < n_prompt; i++)
        if (gen_kv_push(&kv, &n_kv, ids[i])) {
            nd_seterr(&err, ND_ENOMEM, "out of memory");
            goto fail;
        }
    gen_result r;
    if (gen_generate(&s, &o, &pos, NULL, stdout, &text, s.spec ? &kv : NULL, &n_kv, &r, &err)) goto fail;
    printf("\n");
    fflush(stdout);
    /* generation speed counts the decode steps after the first token */
    double t_dec = r.t_total - r.t_first;
    fprintf(stderr,
            "nindub run: stopped (%s)\n"
            "  prompt      %5zu tokens  %8.2f tokens/s\n"
            "  generation  %5d tokens  %8.2f tokens/s\n"
            "  time to first token %.1f ms, total %.2f s\n",
            r.why, n_prompt, (double)n_prompt / t_prompt, r.n_gen,
            r.n_gen > 1 && t_dec > 0 ? (double)(r.n_gen - 1) / t_dec : 0.0, (t_prompt + r.t_first) * 1e3,
            t_prompt + r.t_total);
    if (s.spec) print_spec(s.spec, o.spec.kind);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "nindub run: %s\n", err.msg);
    nd_buf_free(&text);
    nd_free(ids);
    nd_free(kv);
    nd_free(file_text);
    if (s.g || s.m) gen_close(&s);
    return rc;
}
