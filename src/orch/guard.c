/* orch guard: code block extraction, sandboxed checker runs, the fix loop. See guard.h. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "orch/guard.h"

/* ================================================================ languages */

static const char *const lang_names[ORCH_LANG_COUNT] = {"c", "python", "javascript", "typescript"};
static const char *const lang_suffix[ORCH_LANG_COUNT] = {".c", ".py", ".js", ".ts"};

const char *orch_lang_name(int lang) { return lang >= 0 && lang < ORCH_LANG_COUNT ? lang_names[lang] : "?"; }

int orch_lang_from_tag(const char *tag, size_t n) {
    static const struct { const char *tag; int lang; } tags[] = {
        {"c", ORCH_LANG_C},           {"h", ORCH_LANG_C},          {"python", ORCH_LANG_PYTHON},
        {"py", ORCH_LANG_PYTHON},     {"python3", ORCH_LANG_PYTHON}, {"js", ORCH_LANG_JS},
        {"javascript", ORCH_LANG_JS}, {"node", ORCH_LANG_JS},      {"mjs", ORCH_LANG_JS},
        {"cjs", ORCH_LANG_JS},        {"ts", ORCH_LANG_TS},        {"typescript", ORCH_LANG_TS},
    };
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        if (strlen(tags[i].tag) == n && !strncasecmp(tags[i].tag, tag, n)) return tags[i].lang;
    return -1;
}

/* ================================================================ extraction */

/* Fence at line start p (up to 3 spaces, then >= 3 of ` or ~): its char and length, 0 if none. */
static size_t fence_at(const char *p, const char *end, char *ch) {
    size_t ind = 0;
    while (p + ind < end && p[ind] == ' ' && ind < 4) ind++;
    if (ind > 3 || p + ind >= end || (p[ind] != '`' && p[ind] != '~')) return 0;
    char c = p[ind];
    size_t k = 0;
    while (p + ind + k < end && p[ind + k] == c) k++;
    if (k < 3) return 0;
    *ch = c;
    return ind + k;
}

int orch_guard_extract(const char *md, size_t n, orch_code_block **out, size_t *n_out, nd_err *err) {
    if (!out || !n_out || (!md && n)) return nd_seterr(err, ND_EINVAL, "guard_extract: NULL argument");
    *out = NULL;
    *n_out = 0;
    size_t cap = 0;
    const char *end = md + n;
    int line = 1;
    for (const char *p = md; p < end;) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        char ch;
        size_t f = fence_at(p, end, &ch);
        if (!f) {
            p = next;
            line++;
            continue;
        }
        size_t flen = 0;
        for (const char *q = p; q < p + f; q++) flen += *q == ch;
        const char *info = p + f, *info_end = eol ? eol : end;
        while (info < info_end && isspace((unsigned char)*info)) info++;
        const char *tag_end = info;
        while (tag_end < info_end && !isspace((unsigned char)*tag_end) && *tag_end != '{') tag_end++;
        if (ch == '`' && memchr(info, '`', (size_t)(info_end - info))) { /* not a fence: inline code */
            p = next;
            line++;
            continue;
        }
        orch_code_block b = {orch_lang_from_tag(info, (size_t)(tag_end - info)), (size_t)(next - md), n, line + 1,
                             (size_t)(info - md), (size_t)(tag_end - info), (size_t)(p - md), n};
        p = next;
        line++;
        while (p < end) { /* find the closing fence */
            const char *e2 = memchr(p, '\n', (size_t)(end - p));
            const char *n2 = e2 ? e2 + 1 : end;
            char c2;
            size_t f2 = fence_at(p, end, &c2);
            if (f2 && c2 == ch) {
                size_t k = 0;
                for (const char *q = p; q < p + f2; q++) k += *q == ch;
                const char *rest = p + f2;
                while (rest < (e2 ? e2 : end) && isspace((unsigned char)*rest)) rest++;
                if (k >= flen && rest == (e2 ? e2 : end)) {
                    b.end = (size_t)(p - md);
                    b.block_end = (size_t)(n2 - md);
                    p = n2;
                    line++;
                    break;
                }
            }
            p = n2;
            line++;
        }
        if (*n_out == cap) {
            cap = cap ? cap * 2 : 8;
            orch_code_block *v = nd_realloc(*out, cap * sizeof *v);
            if (!v) {
                nd_free(*out);
                *out = NULL;
                *n_out = 0;
                return nd_seterr(err, ND_ENOMEM, "guard_extract: out of memory");
            }
            *out = v;
        }
        (*out)[(*n_out)++] = b;
    }
    return 0;
}

/* ================================================================ the guard object */

#define PY_CHECK                                                                                   \
    "import ast,sys\n"                                                                             \
    "src=sys.stdin.buffer.read()\n"                                                                \
    "try:\n"                                                                                       \
    "    ast.parse(src,'snippet.py')\n"                                                            \
    "except SyntaxError as e:\n"                                                                   \
    "    print('snippet.py:%s:%s: error: %s'%(e.lineno,e.offset,e.msg))\n"                         \
    "    if e.text: print('    '+e.text.rstrip())\n"                                               \
    "    sys.exit(1)\n"                                                                            \
    "except ValueError as e:\n"                                                                    \
    "    print('snippet.py: error: %s'%e)\n"                                                       \
    "    sys.exit(1)\n"

typedef struct checker {
    char *argv[ORCH_GUARD_MAX_ARGS + 1];
    size_t argc;
    char *path;      /* resolved program, NULL = unavailable */
    bool uses_file;  /* an argument holds {file} */
} checker;

struct orch_guard {
    checker ck[ORCH_LANG_COUNT];
    double timeout_s;
    unsigned cpu_s;
    size_t mem_bytes, output_cap;
    char *tmp_root;
    char *env_path;
};

orch_guard_opts orch_guard_opts_default(void) {
    orch_guard_opts o;
    memset(&o, 0, sizeof o);
    return o;
}

void orch_guard_free(orch_guard *g) {
    if (!g) return;
    for (int l = 0; l < ORCH_LANG_COUNT; l++) {
        for (size_t i = 0; i < g->ck[l].argc; i++) nd_free(g->ck[l].argv[i]);
        nd_free(g->ck[l].path);
    }
    nd_free(g->tmp_root);
    nd_free(g->env_path);
    nd_free(g);
}

bool orch_guard_available(const orch_guard *g, int lang) {
    return g && lang >= 0 && lang < ORCH_LANG_COUNT && g->ck[lang].path != NULL;
}

/* PATH lookup done once, in the parent (the child only calls execve). */
static char *resolve(const char *prog, const char *path_env) {
    if (strchr(prog, '/')) return access(prog, X_OK) == 0 ? nd_strdup(prog) : NULL;
    for (const char *p = path_env; p && *p;) {
        const char *c = strchr(p, ':');
        size_t dl = c ? (size_t)(c - p) : strlen(p);
        if (dl) {
            nd_buf b = {0};
            if (nd_buf_printf(&b, "%.*s/%s", (int)dl, p, prog)) return NULL;
            struct stat st;
            if (stat(b.data, &st) == 0 && S_ISREG(st.st_mode) && access(b.data, X_OK) == 0) return b.data;
            nd_buf_free(&b);
        }
        p = c ? c + 1 : NULL;
    }
    return NULL;
}

orch_guard *orch_guard_new(const orch_guard_opts *opts, nd_err *err) {
    static const char *const def_c[] = {"cc", "-fsyntax-only", "-Werror=implicit-function-declaration",
                                        "-Werror=implicit-int", "-Werror=return-type",
                                        "-Werror=incompatible-pointer-types", "-Werror=int-conversion",
                                        "-x", "c", "-", NULL};
    static const char *const def_py[] = {"python3", "-I", "-S", "-c", PY_CHECK, NULL};
    static const char *const def_js[] = {"node", "--check", "{file}", NULL};
    static const char *const def_none[] = {NULL};
    const char *const *defs[ORCH_LANG_COUNT] = {def_c, def_py, def_js, def_none};
    orch_guard_opts o = opts ? *opts : orch_guard_opts_default();
    if (o.timeout_s == 0) o.timeout_s = 10;
    if (o.cpu_s == 0) o.cpu_s = 10;
    if (o.mem_bytes == 0) o.mem_bytes = (size_t)2 << 30;
    if (o.output_cap == 0) o.output_cap = 64 << 10;
    if (!(o.timeout_s > 0 && o.timeout_s <= 3600) || o.cpu_s > 3600 || o.mem_bytes < (16u << 20) ||
        o.output_cap > (64u << 20)) {
        nd_seterr(err, ND_EINVAL, "guard: limits out of range (timeout 0-3600 s, cpu <= 3600 s, "
                                  "memory >= 16 MiB, output cap <= 64 MiB)");
        return NULL;
    }
    orch_guard *g = nd_calloc(1, sizeof *g);
    if (!g) goto oom;
    g->timeout_s = o.timeout_s;
    g->cpu_s = o.cpu_s;
    g->mem_bytes = o.mem_bytes;
    g->output_cap = o.output_cap;
    const char *tr = o.tmp_root ? o.tmp_root : getenv("TMPDIR");
    g->tmp_root = nd_strdup(tr && *tr ? tr : "/tmp");
    const char *pe = getenv("PATH");
    g->env_path = nd_strdup(pe && *pe ? pe : "/usr/local/bin:/usr/bin:/bin");
    if (!g->tmp_root || !g->env_path) goto oom;
    for (int l = 0; l < ORCH_LANG_COUNT; l++) {
        const char *const *av = o.argv[l] ? o.argv[l] : defs[l];
        checker *c = &g->ck[l];
        for (; av[c->argc]; c->argc++) {
            if (c->argc == ORCH_GUARD_MAX_ARGS) {
                nd_seterr(err, ND_EINVAL, "guard: the %s checker has more than %d arguments", lang_names[l],
                          ORCH_GUARD_MAX_ARGS);
                orch_guard_free(g);
                return NULL;
            }
            if (!(c->argv[c->argc] = nd_strdup(av[c->argc]))) goto oom;
            if (strstr(av[c->argc], "{file}")) c->uses_file = true;
        }
        if (c->argc) c->path = resolve(c->argv[0], g->env_path);
    }
    return g;
oom:
    orch_guard_free(g);
    nd_seterr(err, ND_ENOMEM, "guard: out of memory");
    return NULL;
}

const char *orch_check_status_name(int st) {
    static const char *const names[] = {"ok", "failed", "timeout", "output flood", "crashed", "unavailable"};
    return st >= 0 && st <= ORCH_CHECK_UNAVAILABLE ? names[st] : "?";
}

void orch_check_result_free(orch_check_result *r) {
    if (!r) return;
    nd_free(r->diag);
    memset(r, 0, sizeof *r);
}

/* ================================================================ one check */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Builds the child's argv ({file} replaced) and environment before fork. */
static int build_exec(const orch_guard *g, const checker *c, const char *fname, const char *dir, char **argv,
                      char **envp, nd_buf *store) {
    /* all strings live in one buffer: offsets first, pointers after (the buffer may move) */
    size_t off[ORCH_GUARD_MAX_ARGS + 4];
    for (size_t i = 0; i < c->argc; i++) {
        off[i] = store->len;
        const char *a = c->argv[i];
        for (const char *q; (q = strstr(a, "{file}")); a = q + 6)
            if (nd_buf_append(store, a, (size_t)(q - a)) || nd_buf_append(store, fname, strlen(fname))) return ND_ENOMEM;
        if (nd_buf_append(store, a, strlen(a) + 1)) return ND_ENOMEM;
    }
    size_t e0 = store->len;
    if (nd_buf_printf(store, "PATH=%s", g->env_path) || nd_buf_append(store, "", 1)) return ND_ENOMEM;
    size_t e1 = store->len;
    if (nd_buf_printf(store, "HOME=%s", dir) || nd_buf_append(store, "", 1)) return ND_ENOMEM;
    size_t e2 = store->len;
    if (nd_buf_printf(store, "TMPDIR=%s", dir) || nd_buf_append(store, "", 1)) return ND_ENOMEM;
    size_t e3 = store->len;
    if (nd_buf_append(store, "LC_ALL=C", 9)) return ND_ENOMEM;
    for (size_t i = 0; i < c->argc; i++) argv[i] = store->data + off[i];
    argv[c->argc] = NULL;
    envp[0] = store->data + e0;
    envp[1] = store->data + e1;
    envp[2] = store->data + e2;
    envp[3] = store->data + e3;
    envp[4] = NULL;
    return 0;
}

/* Child side: only async-signal-safe calls from here to execve. */
static _Noreturn void child_exec(const orch_guard *g, const char *path, char **argv, char **envp, const char *dir,
                                 int in_fd, int out_fd) {
    setpgid(0, 0);
    if (chdir(dir) != 0) _exit(126);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) _exit(126);
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) maxfd = 65536;
    for (int fd = 3; fd < maxfd; fd++) close(fd);
    struct rlimit cpu = {g->cpu_s, g->cpu_s + 1};
    struct rlimit as = {g->mem_bytes, g->mem_bytes};
    struct rlimit fsz = {16u << 20, 16u << 20};
    struct rlimit core = {0, 0};
    setrlimit(RLIMIT_CPU, &cpu);
    setrlimit(RLIMIT_AS, &as);
    setrlimit(RLIMIT_FSIZE, &fsz);
    setrlimit(RLIMIT_CORE, &core);
    signal(SIGPIPE, SIG_DFL);
    execve(path, argv, envp);
    _exit(127);
}

/* Reads the child's output until EOF, timeout or cap; kills the group on the last two. */
static void collect(const orch_guard *g, pid_t pid, int fd, nd_buf *out, int *status) {
    double t0 = nd_time_s();
    char buf[4096];
    for (;;) {
        double left = g->timeout_s - (nd_time_s() - t0);
        if (left <= 0) {
            *status = ORCH_CHECK_TIMEOUT;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue; /* loop re-checks the clock */
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* EOF: every writer (the group) closed the pipe */
        size_t room = g->output_cap - out->len;
        nd_buf_append(out, buf, (size_t)r < room ? (size_t)r : room);
        if ((size_t)r > room || out->len >= g->output_cap) {
            *status = ORCH_CHECK_FLOOD;
            break;
        }
    }
    if (*status == ORCH_CHECK_TIMEOUT || *status == ORCH_CHECK_FLOOD) kill(-pid, SIGKILL);
}

int orch_guard_check(const orch_guard *g, int lang, const char *code, size_t n, orch_check_result *r,
                     nd_err *err) {
    if (!g || !r || (!code && n) || lang < 0 || lang >= ORCH_LANG_COUNT)
        return nd_seterr(err, ND_EINVAL, "guard_check: bad argument");
    memset(r, 0, sizeof *r);
    const checker *c = &g->ck[lang];
    if (!c->path) {
        r->status = ORCH_CHECK_UNAVAILABLE;
        return 0;
    }
    double t0 = nd_time_s();
    nd_buf dir = {0}, store = {0}, out = {0};
    int rc = 0, in_fd = -1, pfd[2] = {-1, -1};
    bool made = false;
    char fname[16];
    snprintf(fname, sizeof fname, "snippet%s", lang_suffix[lang]);
    if (nd_buf_printf(&dir, "%s/nindub-guard-XXXXXX", g->tmp_root)) goto oom;
    if (!mkdtemp(dir.data)) {
        rc = nd_seterr(err, ND_EIO, "guard: cannot make a temp dir under %s: %s", g->tmp_root, strerror(errno));
        goto done;
    }
    made = true;
    nd_buf file = {0};
    if (nd_buf_printf(&file, "%s/%s", dir.data, fname)) goto oom;
    int wfd = open(file.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (wfd < 0 || write_all(wfd, code, n) != 0) {
        rc = nd_seterr(err, ND_EIO, "guard: cannot write the snippet: %s", strerror(errno));
        if (wfd >= 0) close(wfd);
        nd_buf_free(&file);
        goto done;
    }
    close(wfd);
    in_fd = open(c->uses_file ? "/dev/null" : file.data, O_RDONLY | O_CLOEXEC);
    nd_buf_free(&file);
    char *argv[ORCH_GUARD_MAX_ARGS + 1], *envp[5];
    if (in_fd < 0 || pipe2(pfd, O_CLOEXEC) != 0) {
        rc = nd_seterr(err, ND_EIO, "guard: cannot set up the checker's input/output: %s", strerror(errno));
        goto done;
    }
    if (build_exec(g, c, fname, dir.data, argv, envp, &store)) goto oom;
    if (nd_buf_reserve(&out, 4096)) goto oom;
    pid_t pid = fork();
    if (pid < 0) {
        rc = nd_seterr(err, ND_EIO, "guard: fork failed: %s", strerror(errno));
        goto done;
    }
    if (pid == 0) child_exec(g, c->path, argv, envp, dir.data, in_fd, pfd[1]);
    setpgid(pid, pid); /* also here: no window where kill(-pid) misses */
    close(pfd[1]);
    pfd[1] = -1;
    int status = -1, ws = 0;
    collect(g, pid, pfd[0], &out, &status);
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    kill(-pid, SIGKILL); /* stragglers of the group */
    if (status < 0) {
        if (WIFEXITED(ws)) {
            r->exit_code = WEXITSTATUS(ws);
            status = r->exit_code == 0 ? ORCH_CHECK_OK : ORCH_CHECK_FAILED;
            if (r->exit_code == 127 && out.len == 0) nd_buf_printf(&out, "checker %s could not be started\n", c->argv[0]);
        } else {
            r->signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
            status = ORCH_CHECK_CRASHED;
        }
    }
    r->status = status;
    if (status == ORCH_CHECK_TIMEOUT) nd_buf_printf(&out, "\n[checker killed after %.1f s]\n", g->timeout_s);
    if (status == ORCH_CHECK_FLOOD) nd_buf_printf(&out, "\n[checker killed: output over %zu bytes]\n", g->output_cap);
    if (status == ORCH_CHECK_CRASHED) nd_buf_printf(&out, "\n[checker killed by signal %d]\n", r->signal);
    r->diag = out.data ? out.data : nd_strdup("");
    r->diag_len = out.len;
    out.data = NULL;
    goto done;
oom:
    rc = nd_seterr(err, ND_ENOMEM, "guard: out of memory");
done:
    if (in_fd >= 0) close(in_fd);
    if (pfd[0] >= 0) close(pfd[0]);
    if (pfd[1] >= 0) close(pfd[1]);
    if (made) nftw(dir.data, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    nd_buf_free(&dir);
    nd_buf_free(&store);
    nd_buf_free(&out);
    r->seconds = nd_time_s() - t0;
    return rc;
}

/* ================================================================ the loop */

void orch_guard_summary_free(orch_guard_summary *s) {
    if (!s) return;
    nd_buf_free(&s->answer);
    nd_buf_free(&s->diag);
}

int orch_guard_summary_format(const orch_guard_summary *s, nd_buf *out) {
    const orch_guard_round *last = s->n_rounds ? &s->round[s->n_rounds - 1] : NULL;
    return nd_buf_printf(out, "%s after %d fix%s (%d check%s; last: %d block%s, %d checked, %d failing)",
                         s->ok ? "ok" : "failing", s->fixes, s->fixes == 1 ? "" : "es", s->n_rounds,
                         s->n_rounds == 1 ? "" : "s", last ? last->blocks : 0, last && last->blocks == 1 ? "" : "s",
                         last ? last->checked : 0, last ? last->failed : 0);
}

/* Checks every block of answer; failing diagnostics go to diag. */
static int check_answer(const orch_guard *g, const char *a, size_t n, orch_guard_round *rd, nd_buf *diag,
                        nd_err *err) {
    orch_code_block *b = NULL;
    size_t nb = 0;
    double t0 = nd_time_s();
    int rc = orch_guard_extract(a, n, &b, &nb, err);
    memset(rd, 0, sizeof *rd);
    diag->len = 0;
    if (nd_buf_append(diag, "", 0)) rc = ND_ENOMEM;
    rd->blocks = (int)nb;
    for (size_t i = 0; i < nb && !rc; i++) {
        if (b[i].lang < 0 || !orch_guard_available(g, b[i].lang)) continue;
        orch_check_result r;
        if ((rc = orch_guard_check(g, b[i].lang, a + b[i].start, b[i].end - b[i].start, &r, err))) break;
        rd->checked++;
        if (r.status != ORCH_CHECK_OK) {
            rd->failed++;
            if (nd_buf_printf(diag, "Code block %zu (%s, starting at line %d of the answer): %s\n%s%s", i + 1,
                              orch_lang_name(b[i].lang), b[i].first_line, orch_check_status_name(r.status), r.diag,
                              r.diag_len && r.diag[r.diag_len - 1] == '\n' ? "" : "\n"))
                rc = nd_seterr(err, ND_ENOMEM, "guard: out of memory");
        }
        orch_check_result_free(&r);
    }
    nd_free(b);
    rd->seconds = nd_time_s() - t0;
    return rc;
}

int orch_guard_run(const orch_guard *g, const char *answer, size_t n, orch_fix_fn fix, void *user,
                   int max_rounds, orch_guard_summary *sum, nd_err *err) {
    if (!sum) return nd_seterr(err, ND_EINVAL, "guard_run: NULL summary");
    memset(sum, 0, sizeof *sum);
    if (!g || (!answer && n)) return nd_seterr(err, ND_EINVAL, "guard_run: NULL argument");
    if (max_rounds < 0 || max_rounds > ORCH_GUARD_MAX_ROUNDS)
        return nd_seterr(err, ND_EINVAL, "guard_run: max_rounds %d not in 0..%d", max_rounds, ORCH_GUARD_MAX_ROUNDS);
    if (nd_buf_append(&sum->answer, answer, n)) return nd_seterr(err, ND_ENOMEM, "guard: out of memory");
    nd_buf next = {0};
    int rc = 0;
    for (;;) {
        orch_guard_round *rd = &sum->round[sum->n_rounds];
        if ((rc = check_answer(g, sum->answer.data, sum->answer.len, rd, &sum->diag, err))) break;
        sum->n_rounds++;
        if (rd->failed == 0) {
            sum->ok = true;
            break;
        }
        if (!fix || sum->fixes >= max_rounds) break;
        next.len = 0;
        if (nd_buf_append(&next, "", 0)) {
            rc = nd_seterr(err, ND_ENOMEM, "guard: out of memory");
            break;
        }
        sum->fixes++;
        if ((rc = fix(user, sum->answer.data, sum->answer.len, sum->diag.data, sum->diag.len, sum->fixes, &next, err)))
            break;
        nd_buf t = sum->answer;
        sum->answer = next;
        next = t;
    }
    nd_buf_free(&next);
    return rc;
}
