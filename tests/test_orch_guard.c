/* orch guard: fenced block extraction, sandboxed checkers (flood, hang, missing program, no
 * shell), and the fix loop over the broken snippets in tests/data/orch/guard/ with a scripted
 * fake "main model" that answers each diagnostic with the next version of the snippet. */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orch/guard.h"
#include "t.h"

#define GDIR "tests/data/orch/guard"

static void test_extract(void) {
    const char *md = "Intro with ``` inline ``` ticks.\n"
                     "```c\nint x;\n```\n"
                     "text\n"
                     "  ~~~python extra words\nprint(1)\n```\nstill python\n~~~\n"
                     "````js\nconst a = '```';\n```\nstill js\n````\n"
                     "```\nno tag\n```\n"
                     "```ts\nunclosed";
    orch_code_block *b;
    size_t n;
    nd_err err = {0};
    T_EQ_INT(orch_guard_extract(md, strlen(md), &b, &n, &err), 0);
    T_EQ_INT(n, 5);
    if (n != 5) return;
    T_EQ_INT(b[0].lang, ORCH_LANG_C);
    T_CHECK(!strncmp(md + b[0].start, "int x;\n", b[0].end - b[0].start) && b[0].end - b[0].start == 7);
    T_EQ_INT(b[0].first_line, 3);
    T_EQ_INT(b[1].lang, ORCH_LANG_PYTHON);
    T_CHECK(b[1].end - b[1].start == strlen("print(1)\n```\nstill python\n"));
    T_EQ_INT(b[2].lang, ORCH_LANG_JS);
    T_CHECK(b[2].end - b[2].start == strlen("const a = '```';\n```\nstill js\n"));
    T_EQ_INT(b[3].lang, -1);
    T_EQ_INT(b[4].lang, ORCH_LANG_TS);
    T_CHECK(b[4].end == strlen(md));
    nd_free(b);
    T_EQ_INT(orch_guard_extract("", 0, &b, &n, &err), 0);
    T_CHECK(n == 0 && b == NULL);
    T_EQ_INT(orch_lang_from_tag("Python3", 7), ORCH_LANG_PYTHON);
    T_EQ_INT(orch_lang_from_tag("rust", 4), -1);
}

static void test_killers(void) {
    nd_err err = {0};
    const char *flood[] = {"sh", "-c", "yes", NULL};
    const char *hang[] = {"sleep", "100", NULL};
    const char *missing[] = {"no-such-checker-xyz", NULL};
    const char *none[] = {NULL};
    orch_guard_opts o = orch_guard_opts_default();
    o.argv[ORCH_LANG_C] = flood;
    o.argv[ORCH_LANG_PYTHON] = hang;
    o.argv[ORCH_LANG_JS] = missing;
    o.argv[ORCH_LANG_TS] = none;
    o.timeout_s = 0.5;
    o.output_cap = 4096;
    orch_guard *g = orch_guard_new(&o, &err);
    T_CHECK(g != NULL);
    if (!g) return;
    orch_check_result r;
    double t0 = nd_time_s();
    T_EQ_INT(orch_guard_check(g, ORCH_LANG_C, "x", 1, &r, &err), 0);
    T_EQ_INT(r.status, ORCH_CHECK_FLOOD);
    T_CHECK(r.diag_len <= 4096 + 100 && strstr(r.diag, "killed: output over 4096 bytes"));
    T_CHECK(nd_time_s() - t0 < 0.5);
    orch_check_result_free(&r);
    t0 = nd_time_s();
    T_EQ_INT(orch_guard_check(g, ORCH_LANG_PYTHON, "x", 1, &r, &err), 0);
    T_EQ_INT(r.status, ORCH_CHECK_TIMEOUT);
    double dt = nd_time_s() - t0;
    T_CHECKF(dt >= 0.45 && dt < 2.0, "timeout took %.2fs", dt);
    orch_check_result_free(&r);
    T_CHECK(!orch_guard_available(g, ORCH_LANG_JS) && !orch_guard_available(g, ORCH_LANG_TS));
    T_EQ_INT(orch_guard_check(g, ORCH_LANG_JS, "x", 1, &r, &err), 0);
    T_EQ_INT(r.status, ORCH_CHECK_UNAVAILABLE);
    orch_check_result_free(&r);
    orch_guard_free(g);
    /* no shell: the snippet and {file} are plain arguments; the child sees a clean environment */
    const char *echo[] = {"sh", "-c", "cat \"$1\"; echo; echo \"HOME=$HOME\"; ls -A", "sh", "{file}", NULL};
    o = orch_guard_opts_default();
    o.argv[ORCH_LANG_JS] = echo;
    g = orch_guard_new(&o, &err);
    const char *evil = "$(touch /tmp/nindub-guard-pwned); `id`";
    unlink("/tmp/nindub-guard-pwned");
    T_EQ_INT(orch_guard_check(g, ORCH_LANG_JS, evil, strlen(evil), &r, &err), 0);
    T_EQ_INT(r.status, ORCH_CHECK_OK);
    T_CHECK(strstr(r.diag, evil) && strstr(r.diag, "HOME=/") && strstr(r.diag, "snippet.js"));
    T_CHECK(access("/tmp/nindub-guard-pwned", F_OK) != 0);
    /* the temp dir is gone */
    char *home = strstr(r.diag, "HOME=");
    if (home) {
        char path[512];
        sscanf(home + 5, "%511s", path);
        struct stat st;
        T_CHECKF(stat(path, &st) != 0, "temp dir %s left behind", path);
    }
    orch_check_result_free(&r);
    orch_guard_free(g);
    /* bad options */
    o = orch_guard_opts_default();
    o.timeout_s = -1;
    T_CHECK(orch_guard_new(&o, &err) == NULL && err.code == ND_EINVAL);
}

/* ------------------------------------------------------------ the loop over the snippets */

typedef struct snippet {
    char name[64];
    const char *tag;
    int lang;
    char *ver[4]; /* broken, step1.., fixed */
    int nver;
    /* results */
    int rc, fixes, ok, saw_diag;
    char msg[256];
} snippet;

typedef struct fake_model {
    snippet *s;
    int bad_diag;
} fake_model;

static void answer_for(const snippet *s, int v, nd_buf *out) {
    nd_buf_printf(out, "Here is the %s code:\n\n```%s\n%s```\n\nIt should work now.\n", orch_lang_name(s->lang), s->tag,
                  s->ver[v]);
}

/* The "main model": finds which version the answer holds, checks the diagnostics say what is
 * wrong, and answers with the next version. */
static int fake_fix(void *user, const char *answer, size_t n, const char *diag, size_t dn, int round, nd_buf *fixed,
                    nd_err *err) {
    fake_model *m = user;
    snippet *s = m->s;
    int v = -1;
    for (int i = 0; i < s->nver; i++)
        if (memmem(answer, n, s->ver[i], strlen(s->ver[i]))) v = i;
    if (v < 0 || v + 1 >= s->nver) return nd_seterr(err, ND_EINVAL, "fake model: answer not recognised");
    if (!dn || !(strstr(diag, "rror") || strstr(diag, "SyntaxError"))) m->bad_diag++;
    if (strstr(diag, "Code block 1 (")) s->saw_diag++;
    answer_for(s, v + 1, fixed);
    (void)round;
    return 0;
}

static void *run_snippets(void *arg) {
    snippet **list = arg;
    nd_err err = {0};
    orch_guard *g = orch_guard_new(NULL, &err);
    for (snippet **p = list; *p; p++) {
        snippet *s = *p;
        if (!g) {
            s->rc = -1;
            continue;
        }
        if (!orch_guard_available(g, s->lang)) {
            s->rc = 1; /* skipped */
            continue;
        }
        fake_model m = {s, 0};
        nd_buf a = {0};
        answer_for(s, 0, &a);
        orch_guard_summary sum;
        s->rc = orch_guard_run(g, a.data, a.len, fake_fix, &m, 3, &sum, &err);
        if (s->rc) snprintf(s->msg, sizeof s->msg, "%.200s", err.msg);
        s->fixes = sum.fixes;
        s->ok = sum.ok && !m.bad_diag && strstr(sum.answer.data, s->ver[s->nver - 1]) != NULL;
        orch_guard_summary_free(&sum);
        nd_buf_free(&a);
    }
    orch_guard_free(g);
    return NULL;
}

static int load_snippets(snippet *sn, int max) {
    DIR *d = opendir(GDIR);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *dot = strstr(e->d_name, ".broken.");
        if (!dot || n == max) continue;
        snippet *s = &sn[n++];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%.*s", (int)(dot - e->d_name), e->d_name);
        const char *ext = dot + 8;
        s->tag = !strcmp(ext, "c") ? "c" : !strcmp(ext, "py") ? "python" : "javascript";
        s->lang = orch_lang_from_tag(s->tag, strlen(s->tag));
        const char *stages[] = {"broken", "step1", "step2", "fixed"};
        for (int k = 0; k < 4; k++) {
            char path[512];
            snprintf(path, sizeof path, GDIR "/%s.%s.%s", s->name, stages[k], ext);
            size_t len;
            char *txt;
            if (access(path, R_OK) == 0 && nd_read_file(path, &txt, &len, NULL) == 0) s->ver[s->nver++] = txt;
        }
    }
    closedir(d);
    return n;
}

static void test_fix_loop_snippets(void) {
    /* prefer the system python over a slow version-manager shim on PATH */
    const char *old = getenv("PATH");
    char path[4096];
    snprintf(path, sizeof path, "/usr/bin:/bin:%s", old ? old : "");
    setenv("PATH", path, 1);
    snippet sn[64];
    int n = load_snippets(sn, 64);
    T_CHECK(n >= 30);
    if (n < 0) return;
    snippet *half[2][65];
    int h[2] = {0, 0};
    for (int i = 0; i < n; i++) half[i & 1][h[i & 1]++] = &sn[i];
    half[0][h[0]] = half[1][h[1]] = NULL;
    pthread_t t;
    pthread_create(&t, NULL, run_snippets, half[1]); /* the guard is thread-safe: two at once */
    run_snippets(half[0]);
    pthread_join(t, NULL);
    int per_lang[ORCH_LANG_COUNT][3] = {{0}}; /* fixed, skipped, total */
    int fixes = 0, two_step = 0;
    for (int i = 0; i < n; i++) {
        snippet *s = &sn[i];
        per_lang[s->lang][2]++;
        if (s->rc == 1) {
            per_lang[s->lang][1]++;
        } else {
            T_CHECKF(s->rc == 0 && s->ok && s->fixes == s->nver - 1 && s->saw_diag == s->fixes,
                     "%s: rc %d ok %d fixes %d (versions %d) %s", s->name, s->rc, s->ok, s->fixes, s->nver, s->msg);
            if (s->rc == 0 && s->ok) per_lang[s->lang][0]++;
            fixes += s->fixes;
            two_step += s->nver > 2;
        }
        for (int k = 0; k < s->nver; k++) nd_free(s->ver[k]);
    }
    for (int l = 0; l < ORCH_LANG_COUNT; l++)
        if (per_lang[l][2])
            printf("  guard %-10s %2d/%2d snippets fixed%s\n", orch_lang_name(l), per_lang[l][0], per_lang[l][2],
                   per_lang[l][1] ? " (checker missing: skipped)" : "");
    printf("  guard: %d fix rounds in all, %d snippets needed two fixes\n", fixes, two_step);
    if (old) setenv("PATH", old, 1);
}

static int never_fix(void *user, const char *answer, size_t n, const char *diag, size_t dn, int round, nd_buf *fixed,
                     nd_err *err) {
    (*(int *)user)++;
    return nd_buf_append(fixed, answer, n); /* same broken answer again */
}

static int failing_fix(void *user, const char *answer, size_t n, const char *diag, size_t dn, int round,
                       nd_buf *fixed, nd_err *err) {
    return nd_seterr(err, ND_EIO, "main endpoint unreachable");
}

static void test_loop_limits(void) {
    nd_err err = {0};
    orch_guard *g = orch_guard_new(NULL, &err);
    if (!orch_guard_available(g, ORCH_LANG_C)) {
        orch_guard_free(g);
        T_SKIP("no C compiler");
    }
    const char *bad = "```c\nint f(void) { return 1 }\n```\n```python\nok = 1\n```\n";
    orch_guard_summary s;
    int calls = 0;
    T_EQ_INT(orch_guard_run(g, bad, strlen(bad), never_fix, &calls, 2, &s, &err), 0);
    T_CHECK(!s.ok && s.fixes == 2 && calls == 2 && s.n_rounds == 3);
    T_CHECK(s.round[0].blocks == 2 && s.round[0].failed == 1 && strstr(s.diag.data, "Code block 1 (c"));
    nd_buf f = {0};
    orch_guard_summary_format(&s, &f);
    T_CHECK(strstr(f.data, "failing after 2 fixes (3 checks") != NULL);
    nd_buf_free(&f);
    orch_guard_summary_free(&s);
    T_EQ_INT(orch_guard_run(g, bad, strlen(bad), never_fix, &calls, 0, &s, &err), 0); /* check only */
    T_CHECK(!s.ok && s.fixes == 0 && s.n_rounds == 1 && calls == 2);
    orch_guard_summary_free(&s);
    T_EQ_INT(orch_guard_run(g, bad, strlen(bad), failing_fix, NULL, 3, &s, &err), ND_EIO);
    T_CHECK(s.fixes == 1 && !s.ok);
    orch_guard_summary_free(&s);
    T_EQ_INT(orch_guard_run(g, bad, strlen(bad), NULL, NULL, ORCH_GUARD_MAX_ROUNDS + 1, &s, &err), ND_EINVAL);
    orch_guard_summary_free(&s);
    const char *good = "no code at all";
    T_EQ_INT(orch_guard_run(g, good, strlen(good), never_fix, &calls, 3, &s, &err), 0);
    T_CHECK(s.ok && s.fixes == 0 && s.round[0].blocks == 0);
    orch_guard_summary_free(&s);
    orch_guard_free(g);
}

int main(void) {
    T_RUN(test_extract);
    T_RUN(test_killers);
    T_RUN(test_fix_loop_snippets);
    T_RUN(test_loop_limits);
    return t_done();
}
