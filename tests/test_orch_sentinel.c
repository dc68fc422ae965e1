/* orch sentinel: quality on the labelled corpus (precision/recall per kind), placeholders,
 * restore, outbound redaction, streaming at every split point, no value in any message,
 * hostile and random input. */
#include <stdint.h>

#include "orch/sentinel.h"
#include "orch_gen.h"
#include "t.h"

#define CORPUS "tests/data/orch/sentinel_corpus.tsv"

/* ------------------------------------------------------------ corpus loading */

typedef struct gen_cache {
    char key[64][48];
    char val[64][600];
    int n;
} gen_cache;

static void unescape(const char *in, size_t n, nd_buf *out) {
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '\\' && i + 1 < n) {
            char d = in[++i];
            c = d == 'n' ? '\n' : d == 't' ? '\t' : d;
        }
        nd_buf_append(out, &c, 1);
    }
    nd_buf_append(out, "", 0);
}

/* {{name}} / {{name#tag}}: synthetic values, the same per (line, name#tag). */
static void expand(const char *in, int line, gen_cache *gc, nd_buf *out) {
    out->len = 0;
    nd_buf_append(out, "", 0);
    for (const char *p = in; *p;) {
        const char *e = NULL;
        if (p[0] == '{' && p[1] == '{') e = strstr(p + 2, "}}");
        char key[48] = "";
        bool ok = e && e - p - 2 > 0 && e - p - 2 < 47;
        if (ok) {
            memcpy(key, p + 2, (size_t)(e - p - 2));
            key[e - p - 2] = 0;
            for (char *k = key; *k; k++)
                if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_' || *k == '#')) ok = false;
        }
        if (!ok) {
            nd_buf_append(out, p++, 1);
            continue;
        }
        int idx = -1;
        for (int i = 0; i < gc->n; i++)
            if (!strcmp(gc->key[i], key)) idx = i;
        if (idx < 0 && gc->n < 64) {
            char name[48];
            strcpy(name, key);
            char *h = strchr(name, '#');
            if (h) *h = 0;
            uint64_t seed = (uint64_t)line * 1000003u;
            for (const char *k = key; *k; k++) seed = seed * 131 + (unsigned char)*k;
            idx = gc->n;
            if (orch_gen(name, seed, gc->val[idx], sizeof gc->val[idx]) != 0) {
                fprintf(stderr, "  corpus line %d: unknown generator %s\n", line, name);
                strcpy(gc->val[idx], "?");
            }
            strcpy(gc->key[gc->n++], key);
        }
        nd_buf_append(out, idx >= 0 ? gc->val[idx] : "?", idx >= 0 ? strlen(gc->val[idx]) : 1);
        p = e + 2;
    }
}

typedef struct expect {
    int kind;
    size_t s, e;
    bool hit, covered;
} expect;

typedef struct item {
    int line;
    char cat[32];
    char *text;
    size_t n;
    expect ex[8];
    int nex;
} item;

static int load_corpus(item **items_out) {
    char *data;
    size_t len;
    nd_err err = {0};
    if (nd_read_file(CORPUS, &data, &len, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        return -1;
    }
    item *items = NULL;
    int n = 0, cap = 0, line = 0;
    nd_buf raw = {0}, exp = {0};
    for (char *p = data, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        if (*p == '#' || !*p) continue;
        char *col[12];
        int nc = 0;
        for (char *q = p; q && nc < 12; nc++) {
            col[nc] = q;
            q = strchr(q, '\t');
            if (q) *q++ = 0;
        }
        if (nc < 3) {
            fprintf(stderr, "  corpus line %d: fewer than 3 columns\n", line);
            return -1;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            items = realloc(items, (size_t)cap * sizeof *items);
        }
        item *it = &items[n++];
        memset(it, 0, sizeof *it);
        it->line = line;
        snprintf(it->cat, sizeof it->cat, "%s", col[0]);
        gen_cache gc = {.n = 0};
        raw.len = 0;
        unescape(col[1], strlen(col[1]), &raw);
        expand(raw.data, line, &gc, &exp);
        it->text = strdup(exp.data);
        it->n = exp.len;
        if (!strcmp(col[2], "none")) continue;
        for (int c = 2; c < nc && it->nex < 8; c++) {
            char *eq = strchr(col[c], '=');
            if (!eq) {
                fprintf(stderr, "  corpus line %d: expected KIND=value, got a column without '='\n", line);
                return -1;
            }
            *eq = 0;
            int kind = orch_kind_from_name(col[c]);
            raw.len = 0;
            unescape(eq + 1, strlen(eq + 1), &raw);
            expand(raw.data, line, &gc, &exp);
            /* the first occurrence not already expected */
            const char *from = it->text, *hit = NULL;
            for (;;) {
                hit = strstr(from, exp.data);
                if (!hit) break;
                bool used = false;
                for (int k = 0; k < it->nex; k++) used |= it->ex[k].s == (size_t)(hit - it->text);
                if (!used) break;
                from = hit + 1;
            }
            if (kind < 0 || !hit) {
                fprintf(stderr, "  corpus line %d: %s (kind %s)\n", line,
                        kind < 0 ? "unknown kind" : "expected value not in the text", col[c]);
                return -1;
            }
            it->ex[it->nex++] = (expect){kind, (size_t)(hit - it->text), (size_t)(hit - it->text) + exp.len, 0, 0};
        }
    }
    nd_buf_free(&raw);
    nd_buf_free(&exp);
    nd_free(data);
    *items_out = items;
    return n;
}

static void free_items(item *items, int n) {
    for (int i = 0; i < n; i++) free(items[i].text);
    free(items);
}

/* ------------------------------------------------------------ quality */

static void test_corpus_quality(void) {
    item *items;
    int n = load_corpus(&items);
    T_CHECK(n >= 300);
    if (n < 0) return;
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    T_CHECK(s != NULL);
    if (!s) return;
    int tp[ORCH_K_COUNT] = {0}, fn[ORCH_K_COUNT] = {0}, fp[ORCH_K_COUNT] = {0};
    int n_neg = 0, neg_fp_items = 0, n_exp = 0, covered = 0, n_find = 0, find_ok = 0;
    bool kinds_seen[ORCH_K_COUNT] = {0};
    const char *verbose = getenv("ORCH_CORPUS_VERBOSE");
    orch_findings f = {0};
    for (int i = 0; i < n; i++) {
        item *it = &items[i];
        T_EQ_INT(orch_sentinel_scan(s, it->text, it->n, &f, &err), 0);
        if (it->nex == 0) n_neg++;
        int fps = 0;
        for (size_t j = 0; j < f.n; j++) {
            bool strict = false, overlap = false;
            for (int k = 0; k < it->nex; k++) {
                expect *x = &it->ex[k];
                bool cov = f.v[j].start <= x->s && f.v[j].end >= x->e;
                overlap |= f.v[j].start < x->e && f.v[j].end > x->s;
                if (cov) x->covered = true;
                if (cov && f.v[j].kind == x->kind && !x->hit) {
                    x->hit = true;
                    strict = true;
                    break;
                }
            }
            n_find++;
            find_ok += overlap;
            if (!strict) {
                fp[f.v[j].kind]++;
                fps++;
                if (verbose)
                    fprintf(stderr, "  FP line %d [%s]: %s at %zu..%zu%s%.*s\n", it->line, it->cat,
                            orch_kind_name(f.v[j].kind), f.v[j].start, f.v[j].end, verbose[0] == '2' ? ": " : "",
                            verbose[0] == '2' ? (int)(f.v[j].end - f.v[j].start) : 0, it->text + f.v[j].start);
            }
        }
        if (it->nex == 0 && fps) neg_fp_items++;
        for (int k = 0; k < it->nex; k++) {
            expect *x = &it->ex[k];
            kinds_seen[x->kind] = true;
            n_exp++;
            covered += x->covered;
            if (x->hit) tp[x->kind]++;
            else {
                fn[x->kind]++;
                if (verbose)
                    fprintf(stderr, "  FN line %d [%s]: %s at %zu..%zu (%s)\n", it->line, it->cat,
                            orch_kind_name(x->kind), x->s, x->e, x->covered ? "covered as another kind" : "missed");
            }
        }
    }
    orch_findings_free(&f);
    int TP = 0, FN = 0, FP = 0, n_secret_kinds = 0, n_pii_kinds = 0;
    printf("  %-15s %5s %5s %5s %9s %7s\n", "kind", "tp", "fp", "fn", "precision", "recall");
    for (int k = 0; k < ORCH_K_COUNT; k++) {
        if (!tp[k] && !fp[k] && !fn[k]) continue;
        TP += tp[k];
        FN += fn[k];
        FP += fp[k];
        if (kinds_seen[k]) {
            if (orch_kind_is_pii(k)) n_pii_kinds++;
            else n_secret_kinds++;
        }
        printf("  %-15s %5d %5d %5d %9.3f %7.3f\n", orch_kind_name(k), tp[k], fp[k], fn[k],
               tp[k] + fp[k] ? (double)tp[k] / (tp[k] + fp[k]) : 1.0, tp[k] + fn[k] ? (double)tp[k] / (tp[k] + fn[k]) : 1.0);
    }
    double prec = TP + FP ? (double)TP / (TP + FP) : 1, rec = TP + FN ? (double)TP / (TP + FN) : 1;
    printf("  %-15s %5d %5d %5d %9.3f %7.3f   (kind must match)\n", "OVERALL", TP, FP, FN, prec, rec);
    printf("  detection regardless of kind: precision %.3f recall %.3f\n", n_find ? (double)find_ok / n_find : 1.0,
           n_exp ? (double)covered / n_exp : 1.0);
    printf("  corpus: %d items, %d hard negatives (%d with a false positive), %d secret kinds, %d PII kinds\n", n,
           n_neg, neg_fp_items, n_secret_kinds, n_pii_kinds);
    T_CHECK(n_neg >= 80);
    T_CHECK(n_secret_kinds >= 20);
    T_CHECK(n_pii_kinds >= 5);
    T_CHECKF(rec >= 0.95, "overall recall %.3f < 0.95", rec);
    T_CHECKF(prec >= 0.90, "overall precision %.3f < 0.90", prec);
    orch_sentinel_free(s);
    free_items(items, n);
}

/* ------------------------------------------------------------ placeholders and restore */

static void gen(const char *name, uint64_t seed, char *out) { orch_gen(name, seed, out, 600); }

static void test_placeholders_stable(void) {
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_map *m = orch_map_new(&err);
    char key[600], key2[600], msg[2048];
    gen("aws_id", 1, key);
    gen("aws_id", 2, key2);
    snprintf(msg, sizeof msg, "key %s, mail ana.silva@correio.pt, again %s", key, key);
    nd_buf out = {0};
    orch_counts c = {{0}, 0};
    T_EQ_INT(orch_sentinel_scrub(s, m, msg, strlen(msg), &out, &c, &err), 0);
    T_EQ_STR(out.data, "key <SECRET_AWS_KEY_1>, mail <EMAIL_1>, again <SECRET_AWS_KEY_1>");
    T_EQ_INT(c.by_kind[ORCH_K_AWS_KEY], 2);
    T_EQ_INT(c.by_kind[ORCH_K_EMAIL], 1);
    /* next turn: the old value keeps its placeholder, a new one gets the next number */
    snprintf(msg, sizeof msg, "%s vs %s; write to bo.ek@firma.se or ana.silva@correio.pt", key2, key);
    out.len = 0;
    T_EQ_INT(orch_sentinel_scrub(s, m, msg, strlen(msg), &out, NULL, &err), 0);
    T_EQ_STR(out.data, "<SECRET_AWS_KEY_2> vs <SECRET_AWS_KEY_1>; write to <EMAIL_2> or <EMAIL_1>");
    /* a known value is replaced anywhere, even where no rule would see it */
    snprintf(msg, sizeof msg, "password = \"Wq9!zzTop77\"\nlater: Wq9!zzTop77");
    out.len = 0;
    T_EQ_INT(orch_sentinel_scrub(s, m, msg, strlen(msg), &out, NULL, &err), 0);
    T_EQ_STR(out.data, "password = \"<SECRET_PASSWORD_1>\"\nlater: <SECRET_PASSWORD_1>");
    /* scrubbing scrubbed text changes nothing */
    char *again = strdup(out.data);
    out.len = 0;
    T_EQ_INT(orch_sentinel_scrub(s, m, again, strlen(again), &out, NULL, &err), 0);
    T_EQ_STR(out.data, again);
    free(again);
    T_EQ_INT(orch_map_size(m), 5);
    size_t vl;
    const char *v = orch_map_lookup(m, "<EMAIL_2>", 9, &vl);
    T_CHECK(v && vl == strlen("bo.ek@firma.se") && !memcmp(v, "bo.ek@firma.se", vl));
    nd_buf_free(&out);
    orch_map_free(m);
    orch_sentinel_free(s);
}

static void test_restore_and_redact(void) {
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_map *m = orch_map_new(&err);
    char mine[600], foreign[600], ghp[600], msg[4096];
    gen("aws_id", 11, mine);
    gen("aws_id", 12, foreign);
    gen("ghp", 13, ghp);
    snprintf(msg, sizeof msg, "my key %s and mail lea.roth@web.de", mine);
    nd_buf req = {0}, ans = {0};
    T_EQ_INT(orch_sentinel_scrub(s, m, msg, strlen(msg), &req, NULL, &err), 0);
    T_CHECK(!strstr(req.data, mine) && !strstr(req.data, "lea.roth"));
    /* the model answers with placeholders, the user's own value raw, and a secret of its own */
    snprintf(msg, sizeof msg,
             "Use <SECRET_AWS_KEY_1> (that is %s) and write to <EMAIL_1>. Do not use %s or %s. "
             "<EMAIL_9> is not ours; <SECRET_AWS_KEY_1",
             mine, foreign, ghp);
    orch_counts red = {{0}, 0};
    T_EQ_INT(orch_sentinel_restore(s, m, msg, strlen(msg), &ans, &red, &err), 0);
    char want[4096];
    snprintf(want, sizeof want,
             "Use %s (that is %s) and write to lea.roth@web.de. Do not use [REDACTED_AWS_KEY] or "
             "[REDACTED_GITHUB_TOKEN]. <EMAIL_9> is not ours; <SECRET_AWS_KEY_1",
             mine, mine);
    T_EQ_STR(ans.data, want);
    T_EQ_INT(red.by_kind[ORCH_K_AWS_KEY], 1);
    T_EQ_INT(red.by_kind[ORCH_K_GITHUB_TOKEN], 1);
    T_EQ_INT(red.total, 2);
    /* no map: nothing to restore, every secret redacted */
    ans.len = 0;
    snprintf(msg, sizeof msg, "key: %s", mine);
    T_EQ_INT(orch_sentinel_restore(s, NULL, msg, strlen(msg), &ans, NULL, &err), 0);
    T_EQ_STR(ans.data, "key: [REDACTED_AWS_KEY]");
    nd_buf_free(&req);
    nd_buf_free(&ans);
    orch_map_free(m);
    orch_sentinel_free(s);
}

/* restore(scrub(x)) == x when the answer is the request itself */
static void test_roundtrip(void) {
    item *items;
    int n = load_corpus(&items);
    if (n < 0) return;
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_map *m = orch_map_new(&err);
    nd_buf a = {0}, b = {0};
    for (int i = 0; i < n; i++) {
        if (strchr(items[i].text, '<')) continue; /* literal placeholder-shaped text is not ours */
        a.len = b.len = 0;
        T_EQ_INT(orch_sentinel_scrub(s, m, items[i].text, items[i].n, &a, NULL, &err), 0);
        T_EQ_INT(orch_sentinel_restore(s, m, a.data, a.len, &b, NULL, &err), 0);
        T_CHECKF(b.len == items[i].n && !memcmp(b.data, items[i].text, b.len), "line %d does not round-trip",
                 items[i].line);
        if (getenv("ORCH_CORPUS_VERBOSE") && getenv("ORCH_CORPUS_VERBOSE")[0] == '2' && strcmp(b.data, items[i].text))
            fprintf(stderr, "  in:  %s\n  mid: %s\n  out: %s\n", items[i].text, a.data, b.data);
    }
    nd_buf_free(&a);
    nd_buf_free(&b);
    orch_map_free(m);
    orch_sentinel_free(s);
    free_items(items, n);
}

/* ------------------------------------------------------------ streaming */

static void stream_run(const orch_sentinel *s, const orch_map *m, const char *t, size_t n, const size_t *cuts,
                       int ncuts, nd_buf *out) {
    nd_err err = {0};
    orch_outstream *os = orch_outstream_new(s, m, &err);
    size_t pos = 0;
    out->len = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        T_EQ_INT(orch_outstream_push(os, t + pos, end - pos, out, &err), 0);
        pos = end;
    }
    T_EQ_INT(orch_outstream_finish(os, out, &err), 0);
    orch_outstream_free(os);
}

static void test_stream_every_split(void) {
    nd_err err = {0};
    char mine[600], foreign[600], pem[600], jwt[600], text[8192];
    gen("aws_id", 21, mine);
    gen("sk_live", 22, foreign);
    gen("pem_ec", 23, pem);
    gen("jwt", 24, jwt);
    for (int tail = 8; tail <= 64; tail += 56) {
        orch_sentinel_opts o = orch_sentinel_opts_default();
        o.stream_tail = (size_t)tail;
        orch_sentinel *s = orch_sentinel_new(&o, &err);
        orch_map *m = orch_map_new(&err);
        nd_buf tmp = {0};
        snprintf(text, sizeof text, "k=%s mail=jo.berg@posteo.de pw: 'Lx8#mm2Qz!'", mine);
        T_EQ_INT(orch_sentinel_scrub(s, m, text, strlen(text), &tmp, NULL, &err), 0);
        snprintf(text, sizeof text,
                 "Sure. Set AWS_ACCESS_KEY_ID=<SECRET_AWS_KEY_1> and mail <EMAIL_1>.\n"
                 "Never commit %s or this key:\n%s\nThe password is <SECRET_PASSWORD_1>, "
                 "token %s, card 4111 1111 1111 1111. Your own key %s is fine.\n"
                 "api_key = \"Zq81mNc7Lp02Xw93Rt54\" <EMAIL_1><SECRET_AWS_KEY_1> done",
                 foreign, pem, jwt, mine);
        size_t n = strlen(text);
        nd_buf one = {0}, two = {0};
        stream_run(s, m, text, n, NULL, 0, &one);
        T_CHECK(strstr(one.data, "jo.berg@posteo.de.") != NULL);
        T_CHECK(strstr(one.data, "Lx8#mm2Qz!") != NULL);
        T_CHECK(!strstr(one.data, "<SECRET_") && !strstr(one.data, "<EMAIL_"));
        T_CHECK(!strstr(one.data, foreign) && !strstr(one.data, "PRIVATE KEY") && !strstr(one.data, jwt));
        T_CHECK(!strstr(one.data, "Zq81mNc7Lp02Xw93Rt54"));
        T_CHECK(strstr(one.data, "4111 1111 1111 1111") != NULL); /* PII passes outbound by default */
        int bad = 0;
        for (size_t i = 0; i <= n && bad < 3; i++) { /* every split point */
            stream_run(s, m, text, n, &i, 1, &two);
            if (two.len != one.len || memcmp(two.data, one.data, one.len)) {
                T_FAILF("tail %d: split at %zu differs", tail, i);
                bad++;
            }
        }
        for (size_t i = 0; i + 7 <= n && bad < 3; i += 7) { /* three pieces */
            size_t cuts[2] = {i, i + 7 + (i * 13) % (n - i - 7 + 1)};
            if (cuts[1] > n) cuts[1] = n;
            stream_run(s, m, text, n, cuts, 2, &two);
            if (two.len != one.len || memcmp(two.data, one.data, one.len)) {
                T_FAILF("tail %d: cuts %zu,%zu differ", tail, cuts[0], cuts[1]);
                bad++;
            }
        }
        size_t cuts[8192]; /* byte by byte */
        for (size_t i = 0; i + 1 < n; i++) cuts[i] = i + 1;
        stream_run(s, m, text, n, cuts, (int)n - 1, &two);
        T_CHECK(two.len == one.len && !memcmp(two.data, one.data, one.len));
        nd_buf_free(&one);
        nd_buf_free(&two);
        nd_buf_free(&tmp);
        orch_map_free(m);
        orch_sentinel_free(s);
    }
}

/* Regression (libFuzzer): "pass:<word> = " followed by a quoted value. While the closing quote
 * had not arrived, the assignment rule's preferred alternative (a "pass: type = value" annotation)
 * could not match yet and the rule fell back to "pass:" with the bare word as a password; the
 * stream released that word redacted, while the whole text (quote closed, value a placeholder)
 * has no finding there at all. The stream now holds from the start of any partial match. The
 * text also carries an invalid UTF-8 byte and a NUL inside an email-like run. */
static void test_stream_partial_match(void) {
    nd_err err = {0};
    static const char text[] = "pass:w9fQsyntheticTestValueNotASecret7ord = \"Hq6!kk29Zz\"* and \x80mail "
                               "ana.si9fQ2xL7mZp4RtV8w3Ky6@\0lva@correiot.\n"
                               "token: \"Zq81mNc7Lp02Xw93Rt54Yv\" api_key = 'unterminated Kq72mZp4RtV8w3Ky6 x\n";
    size_t n = sizeof text - 1;
    for (int tail = 8; tail <= 64; tail += 8) {
        orch_sentinel_opts o = orch_sentinel_opts_default();
        o.stream_tail = (size_t)tail;
        orch_sentinel *s = orch_sentinel_new(&o, &err);
        orch_map *m = orch_map_new(&err);
        nd_buf scrub = {0}, one = {0}, many = {0};
        T_EQ_INT(orch_sentinel_scrub(s, m, text, n, &scrub, NULL, &err), 0);
        T_CHECK(memmem(scrub.data, scrub.len, "<SECRET_PASSWORD_1>", 19) != NULL);
        T_EQ_INT(orch_sentinel_restore(s, m, scrub.data, scrub.len, &one, NULL, &err), 0);
        T_CHECKF(one.len == n && !memcmp(one.data, text, n), "tail %d: restore(scrub(x)) != x", tail);
        for (size_t chunk = 1; chunk <= 40; chunk++) {
            orch_outstream *os = orch_outstream_new(s, m, &err);
            many.len = 0;
            for (size_t pos = 0; pos < scrub.len; pos += chunk) {
                size_t k = scrub.len - pos < chunk ? scrub.len - pos : chunk;
                T_EQ_INT(orch_outstream_push(os, scrub.data + pos, k, &many, &err), 0);
            }
            T_EQ_INT(orch_outstream_finish(os, &many, &err), 0);
            orch_outstream_free(os);
            T_CHECKF(many.len == one.len && !memcmp(many.data, one.data, one.len),
                     "tail %d, chunk %zu: streamed restore differs from one-shot", tail, chunk);
        }
        nd_buf_free(&scrub);
        nd_buf_free(&one);
        nd_buf_free(&many);
        orch_map_free(m);
        orch_sentinel_free(s);
    }
}

/* Regression (libFuzzer): values that overlap each other in a run. Each value's occurrences
 * were listed without overlap from the start of the run, so once a longer value's occurrence
 * took a shorter one's slot the shorter one's later occurrence was never listed and the end of
 * the run went out in clear. */
static void test_scrub_overlapping_values(void) {
    nd_err err = {0};
    char text[128];
    size_t n = 0;
#define APPEND(str, len) (memcpy(text + n, (str), (len)), n += (len))
    static const char zeros[40] = {0};
    APPEND("password =", 10);
    APPEND(zeros, 6);
    APPEND(" and password =", 15);
    APPEND(zeros, 8);
    APPEND(" run ", 5);
    APPEND(zeros, 38);
    APPEND("!", 1);
#undef APPEND
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_map *m = orch_map_new(&err);
    orch_findings f = {0};
    nd_buf out = {0};
    T_EQ_INT(orch_sentinel_scan(s, text, n, &f, &err), 0);
    T_EQ_INT(f.n, 2);
    T_EQ_INT(orch_sentinel_scrub(s, m, text, n, &out, NULL, &err), 0);
    T_CHECK(!memmem(out.data, out.len, zeros, 6)); /* 4 x 8 then 6: every byte of the run replaced */
    T_CHECK(out.len > 0 && out.data[out.len - 1] == '!');
    nd_buf one = {0};
    T_EQ_INT(orch_sentinel_restore(s, m, out.data, out.len, &one, NULL, &err), 0);
    T_CHECK(one.len == n && !memcmp(one.data, text, n));
    nd_buf_free(&one);
    nd_buf_free(&out);
    orch_findings_free(&f);
    orch_map_free(m);
    orch_sentinel_free(s);
}

/* Regression (libFuzzer): a second credential URL starting inside the context the first one
 * consumed after its value ("@p" of user:22@postgres://...). The inbound scan went on after the
 * whole match and missed it; the outbound scan, which rejects the first URL once its password is
 * a placeholder, found it and redacted the user's own text. */
static void test_scrub_adjacent_matches(void) {
    nd_err err = {0};
    const char *text = "DB_URL=postgres://appq:22@postgres://app:q22@db.local:5432 done";
    size_t n = strlen(text);
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_map *m = orch_map_new(&err);
    nd_buf mid = {0}, back = {0};
    T_EQ_INT(orch_sentinel_scrub(s, m, text, n, &mid, NULL, &err), 0);
    T_EQ_INT(orch_sentinel_restore(s, m, mid.data, mid.len, &back, NULL, &err), 0);
    T_CHECKF(back.len == n && !memcmp(back.data, text, n), "restore(scrub(x)) != x: %s", back.data);
    nd_buf_free(&mid);
    nd_buf_free(&back);
    orch_map_free(m);
    orch_sentinel_free(s);
}

static void test_stream_releases_early(void) {
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_outstream *os = orch_outstream_new(s, NULL, &err);
    nd_buf out = {0};
    const char *words = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
    for (int i = 0; i < 20; i++) T_EQ_INT(orch_outstream_push(os, words, strlen(words), &out, &err), 0);
    T_CHECK(out.len >= 20 * strlen(words) - 64 - 16); /* only the tail is held back */
    T_EQ_INT(orch_outstream_finish(os, &out, &err), 0);
    T_EQ_INT(out.len, 20 * strlen(words));
    T_CHECK(orch_outstream_push(os, "x", 1, &out, &err) == ND_EINVAL);
    orch_outstream_free(os);
    nd_buf_free(&out);
    orch_sentinel_free(s);
}

/* ------------------------------------------------------------ options */

static void test_options(void) {
    nd_err err = {0};
    const char *t = "mail x.y@mailbox.org from 10.1.2.3 and 81.2.69.160";
    orch_findings f = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    T_EQ_INT(orch_sentinel_scan(s, t, strlen(t), &f, &err), 0);
    T_EQ_INT(f.n, 2); /* the private address passes by default */
    orch_sentinel_free(s);
    orch_sentinel_opts o = orch_sentinel_opts_default();
    o.flag_private_ip = true;
    o.disabled = 1ull << ORCH_K_EMAIL;
    s = orch_sentinel_new(&o, &err);
    T_EQ_INT(orch_sentinel_scan(s, t, strlen(t), &f, &err), 0);
    T_EQ_INT(f.n, 2);
    T_CHECK(f.n == 2 && f.v[0].kind == ORCH_K_IP && f.v[1].kind == ORCH_K_IP);
    orch_sentinel_free(s);
    o = orch_sentinel_opts_default();
    o.stream_tail = 3;
    T_CHECK(orch_sentinel_new(&o, &err) == NULL && err.code == ND_EINVAL);
    orch_findings_free(&f);
    T_EQ_STR(orch_kind_name(ORCH_K_CONN_STRING), "CONN_STRING");
    T_EQ_INT(orch_kind_from_name("iban"), ORCH_K_IBAN);
    T_EQ_INT(orch_kind_from_name("nope"), -1);
    T_CHECK(orch_kind_name(-1) == NULL && orch_kind_name(ORCH_K_COUNT) == NULL);
}

/* ------------------------------------------------------------ nothing leaks into messages */

static void test_no_value_in_messages(void) {
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    char key[600], msg[1024];
    gen("ghp", 31, key);
    snprintf(msg, sizeof msg, "token %s mail pia.lund@telia.se password='Hq7!kk29Zz'", key);
    const char *values[] = {key, "pia.lund", "Hq7!kk29Zz"};
    /* every allocation failure on the way: clean error, no value in the message, nothing leaked */
    int failures = 0;
    for (long k = 0; k < 400; k++) {
        orch_map *m = orch_map_new(&err);
        nd_buf out = {0};
        orch_counts c = {{0}, 0};
        err = (nd_err){0};
        nd_alloc_fail_after(k);
        int rc = orch_sentinel_scrub(s, m, msg, strlen(msg), &out, &c, &err);
        orch_outstream *os = rc ? NULL : orch_outstream_new(s, m, &err);
        if (os) {
            rc = orch_outstream_push(os, msg, strlen(msg), &out, &err);
            if (!rc) rc = orch_outstream_finish(os, &out, &err);
        }
        nd_alloc_fail_after(-1);
        if (rc || (!os && !rc)) failures++;
        for (int v = 0; v < 3; v++) T_CHECKF(!strstr(err.msg, values[v]), "value in error message: %s", err.msg);
        nd_buf fmt = {0};
        orch_counts_format(&c, &fmt);
        for (int v = 0; v < 3; v++) T_CHECK(!strstr(fmt.data, values[v]));
        if (!rc) T_EQ_STR(fmt.data, "GITHUB_TOKEN=1 PASSWORD=1 EMAIL=1");
        nd_buf_free(&fmt);
        orch_outstream_free(os);
        nd_buf_free(&out);
        orch_map_free(m);
        if (!rc && os) break; /* the first k that lets everything through */
    }
    T_CHECK(failures > 0);
    orch_sentinel_free(s);
}

/* ------------------------------------------------------------ hostile and random input */

static void test_hostile_input(void) {
    nd_err err = {0};
    orch_sentinel *s = orch_sentinel_new(NULL, &err);
    orch_findings f = {0};
    T_EQ_INT(orch_sentinel_scan(NULL, "x", 1, &f, &err), ND_EINVAL);
    T_EQ_INT(orch_sentinel_scan(s, NULL, 1, &f, &err), ND_EINVAL);
    T_EQ_INT(orch_sentinel_scan(s, "", 0, &f, &err), 0);
    T_EQ_INT(f.n, 0);
    /* long runs that stress the patterns: digits, colons, keywords, half PEM blocks */
    size_t n = 200000;
    char *big = malloc(n + 1);
    const char *fills[] = {"0123456789", "::::ab", "password=", "-----BEGIN PRIVATE KEY-----\n", "aaaaaaaaaa@",
                           "+1 ", "eyJ.", "\xff\xfe\xc3"};
    for (size_t fi = 0; fi < sizeof fills / sizeof fills[0]; fi++) {
        size_t k = strlen(fills[fi]);
        for (size_t i = 0; i < n; i++) big[i] = fills[fi][i % k];
        big[n] = 0;
        double t0 = nd_time_s();
        T_EQ_INT(orch_sentinel_scan(s, big, n, &f, &err), 0);
        double dt = nd_time_s() - t0;
        T_CHECKF(dt < 2.0, "fill %zu took %.2fs", fi, dt);
    }
    free(big);
    /* random bytes: scrub never fails and no finding's value survives */
    uint64_t seed = 7;
    orch_map *m = orch_map_new(&err);
    nd_buf out = {0};
    for (int iter = 0; iter < 300; iter++) {
        char buf[512];
        size_t len = og_next(&seed) % sizeof buf;
        static const char alpha[] = "AKIAghp_sk-@.:=/ 0123456789abcdefXYZ\n\"'<>_-+()";
        for (size_t i = 0; i < len; i++)
            buf[i] = og_next(&seed) % 4 ? alpha[og_next(&seed) % (sizeof alpha - 1)] : (char)og_next(&seed);
        out.len = 0;
        T_EQ_INT(orch_sentinel_scan(s, buf, len, &f, &err), 0);
        T_EQ_INT(orch_sentinel_scrub(s, m, buf, len, &out, NULL, &err), 0);
        for (size_t j = 0; j < f.n; j++) {
            size_t vl = f.v[j].end - f.v[j].start;
            T_CHECK(vl < 4 || !memmem(out.data, out.len, buf + f.v[j].start, vl));
        }
    }
    nd_buf_free(&out);
    orch_map_free(m);
    orch_findings_free(&f);
    orch_sentinel_free(s);
}

int main(void) {
    T_RUN(test_corpus_quality);
    T_RUN(test_placeholders_stable);
    T_RUN(test_restore_and_redact);
    T_RUN(test_roundtrip);
    T_RUN(test_stream_every_split);
    T_RUN(test_stream_partial_match);
    T_RUN(test_scrub_overlapping_values);
    T_RUN(test_scrub_adjacent_matches);
    T_RUN(test_stream_releases_early);
    T_RUN(test_options);
    T_RUN(test_no_value_in_messages);
    T_RUN(test_hostile_input);
    return t_done();
}
