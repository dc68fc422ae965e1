/* nindub chat: an interactive multi-turn conversation in the model's chat template.
 *
 * Each turn formats the whole conversation, tokenizes it and feeds only the tokens after
 * the longest prefix already in the KV cache, so a turn costs its own tokens, not the
 * history's. When the conversation outgrows the context, the oldest turns are dropped
 * (the system prompt stays). Ctrl-C stops the answer being generated; Ctrl-C on an empty
 * line, Ctrl-D or /exit ends the session. /reset forgets the conversation. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer/chat.h"
#include "tools/gen.h"
#include "tools/tools.h"

#define CHAT_MAX_MSGS 4096

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nindub chat -m model.gguf [options]\n"
               "  -f FILE              system prompt from a file\n"
               "  --system TEXT        system prompt\n"
               "  --template NAME      chatml, llama3, phi3, llama2, gemma or none (default: from the model)\n"
               "  in the chat: /reset forgets the conversation, /exit (or Ctrl-D) quits,\n"
               "  Ctrl-C stops an answer\n");
    gen_opts_usage(f);
}

typedef struct convo {
    chat_msg msgs[CHAT_MAX_MSGS];
    char *owned[CHAT_MAX_MSGS]; /* content strings we allocated */
    size_t n;
} convo;

static int convo_add(convo *c, const char *role, const char *text, size_t len) {
    if (c->n == CHAT_MAX_MSGS) return ND_ERANGE;
    char *copy = nd_strndup(text, len);
    if (!copy) return ND_ENOMEM;
    c->owned[c->n] = copy;
    c->msgs[c->n++] = (chat_msg){role, copy};
    return 0;
}

static void convo_drop(convo *c, size_t i) { /* remove message i */
    nd_free(c->owned[i]);
    memmove(&c->msgs[i], &c->msgs[i + 1], (c->n - i - 1) * sizeof c->msgs[0]);
    memmove(&c->owned[i], &c->owned[i + 1], (c->n - i - 1) * sizeof c->owned[0]);
    c->n--;
}

static void convo_clear(convo *c, size_t keep) {
    while (c->n > keep) convo_drop(c, c->n - 1);
}

/* Which template: --template, else tokenizer.chat_template, else the architecture. */
static chat_tmpl pick_template(const gen_session *s, const char *name) {
    if (name) return (chat_tmpl)chat_tmpl_from_name(name);
    gguf_str j;
    if (!gguf_get_str(s->g, "tokenizer.chat_template", &j, NULL)) {
        char *z = nd_strndup(j.ptr, j.len);
        chat_tmpl t = chat_tmpl_detect(z);
        nd_free(z);
        if (t != CHAT_TMPL_NONE) return t;
    }
    return chat_tmpl_for_arch(s->m->hp.arch_name, tok_find(s->vocab, "<|eot_id|>", 10) >= 0);
}

int tool_chat(int argc, char **argv) {
    gen_opts o;
    gen_opts_init(&o);
    o.n_predict = 512;
    const char *sys_file = NULL, *sys_text = NULL, *tmpl_name = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        int k = gen_opts_parse(&o, "chat", argc, argv, &i);
        if (k < 0) return 2;
        if (k > 0) continue;
        if (i + 1 < argc && !strcmp(a, "-f")) sys_file = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--system")) sys_text = argv[++i];
        else if (i + 1 < argc && !strcmp(a, "--template")) tmpl_name = argv[++i];
        else {
            fprintf(stderr, "nindub chat: unknown or incomplete option %s\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.model) {
        fprintf(stderr, "nindub chat: -m model.gguf is required\n\n");
        usage(stderr);
        return 2;
    }
    if (tmpl_name && chat_tmpl_from_name(tmpl_name) < 0) {
        fprintf(stderr, "nindub chat: unknown template '%s' (chatml, llama3, phi3, llama2, gemma, none)\n", tmpl_name);
        return 2;
    }
    gen_opts_finish(&o);

    nd_err err = {0};
    gen_session s = {0};
    convo *cv = nd_calloc(1, sizeof *cv);
    char *sys_buf = NULL, *line = NULL;
    size_t line_cap = 0;
    int32_t *kv = NULL, *ids = NULL;
    size_t n_kv = 0, n_ids = 0, keep = 0;
    nd_buf prompt = {0}, answer = {0};
    int rc = 1;
    if (!cv) goto fail;
    if (sys_file && nd_read_file(sys_file, &sys_buf, NULL, &err)) goto fail;
    if (gen_open(&s, &o, &err)) goto fail;
    chat_tmpl tmpl = pick_template(&s, tmpl_name);
    const char *sys = sys_buf ? sys_buf : sys_text;
    if (sys && convo_add(cv, "system", sys, strlen(sys))) goto oom;
    keep = cv->n;
    bool tty = isatty(STDIN_FILENO);
    fprintf(stderr, "nindub chat: %s, template %s, context %lld — /reset, /exit, Ctrl-C stops an answer\n",
            s.m->hp.arch_name, chat_tmpl_name(tmpl), (long long)model_ctx_n_ctx(s.ctx));
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint; /* no SA_RESTART: a Ctrl-C at the prompt interrupts the read */
    sigaction(SIGINT, &sa, NULL);

    for (;;) {
        if (tty) fputs("\n> ", stdout);
        fflush(stdout);
        interrupted = 0;
        errno = 0;
        ssize_t got = getline(&line, &line_cap, stdin);
        if (got < 0) {
            if (errno == EINTR && interrupted) { /* Ctrl-C at the prompt: quit */
                fputc('\n', stdout);
            }
            break;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!got) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            convo_clear(cv, keep);
            fprintf(stderr, "(conversation forgotten)\n");
            continue;
        }
        if (convo_add(cv, "user", line, (size_t)got)) goto oom;
        for (;;) { /* format; drop the oldest turns while it does not fit */
            prompt.len = 0;
            nd_free(ids);
            ids = NULL;
            if (chat_format(tmpl, cv->msgs, cv->n, true, &prompt, &err) ||
                tok_encode(s.vocab, prompt.data, prompt.len, true, true, &ids, &n_ids, &err))
                goto fail;
            if ((int64_t)n_ids + o.n_predict <= model_ctx_n_ctx(s.ctx) || cv->n <= keep + 1) break;
            convo_drop(cv, keep); /* oldest user turn ... */
            if (cv->n > keep + 1 && strcmp(cv->msgs[keep].role, "user")) convo_drop(cv, keep); /* ... and its answer */
            fprintf(stderr, "(context full: dropped the oldest turn)\n");
        }
        if ((int64_t)n_ids >= model_ctx_n_ctx(s.ctx)) {
            fprintf(stderr, "nindub chat: this message alone (%zu tokens) does not fit the context of %lld — "
                            "use a larger -c\n", n_ids, (long long)model_ctx_n_ctx(s.ctx));
            convo_drop(cv, cv->n - 1);
            continue;
        }
        /* reuse the cached prefix; at least one token is fed so the logits are fresh */
        size_t common = 0;
        while (common < n_kv && common < n_ids && kv[common] == ids[common]) common++;
        if (common == n_ids) common--;
        if (model_forward(s.ctx, ids + common, (int)(n_ids - common), (int64_t)common, s.logits,
                          MODEL_LOGITS_LAST, &err))
            goto fail;
        nd_free(kv);
        kv = ids; /* the cache now holds exactly the prompt */
        n_kv = n_ids;
        ids = NULL;
        smp_reset(s.smp);
        for (size_t i = 0; i < n_kv; i++) smp_accept(s.smp, kv[i]);
        int64_t pos = (int64_t)n_kv;
        answer.len = 0;
        gen_result r;
        if (gen_generate(&s, &o, &pos, &interrupted, stdout, &answer, &kv, &n_kv, &r, &err)) goto fail;
        fputc('\n', stdout);
        if (o.verbose || !strcmp(r.why, "interrupted") || !strcmp(r.why, "context full"))
            fprintf(stderr, "(%s: %d tokens, %zu reused from the cache, %.1f tokens/s)\n", r.why, r.n_gen, common,
                    r.n_gen > 1 && r.t_total > r.t_first ? (r.n_gen - 1) / (r.t_total - r.t_first) : 0.0);
        if (convo_add(cv, "assistant", answer.data ? answer.data : "", answer.len)) goto oom;
    }
    rc = 0;
    goto fail;
oom:
    nd_seterr(&err, ND_ENOMEM, "out of memory (or more than %d messages)", CHAT_MAX_MSGS);
fail:
    if (rc) fprintf(stderr, "nindub chat: %s\n", err.msg);
    signal(SIGINT, SIG_DFL);
    if (cv) convo_clear(cv, 0);
    nd_free(cv);
    nd_free(sys_buf);
    free(line);
    nd_free(kv);
    nd_free(ids);
    nd_buf_free(&prompt);
    nd_buf_free(&answer);
    if (s.g || s.m) gen_close(&s);
    return rc;
}
