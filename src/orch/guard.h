/* orch guard: the compile loop. Extracts fenced code blocks from a markdown answer, runs a
 * checker per language in a fresh temporary directory, and hands the diagnostics back to a
 * fix callback (the main model) until the code passes or the rounds run out.
 *
 * Default checkers: C `cc -fsyntax-only -Werror=implicit-function-declaration -Werror=implicit-int
 * -Werror=return-type -Werror=incompatible-pointer-types -Werror=int-conversion -x c -` (code on
 * stdin), Python `python3 -I -S -c <ast.parse of stdin>` (prints file:line:col: error: msg),
 * JavaScript `node --check {file}`; TypeScript has none (configure e.g. tsc --noEmit {file}).
 * Checkers are argv arrays (never a shell): "{file}" in an argument becomes the snippet's file
 * name (relative, inside the temp dir); without "{file}" the snippet is the checker's stdin.
 * The child runs in its own process group with RLIMIT_CPU, RLIMIT_AS (when set), RLIMIT_FSIZE
 * and no core files, a minimal environment (PATH, HOME=TMPDIR=the temp dir, LC_ALL=C), no
 * inherited descriptors; a wall-clock timeout or output beyond the cap kills the whole group.
 * The temp dir is removed afterwards. An orch_guard is immutable and thread-safe.
 */
#ifndef ND_ORCH_GUARD_H
#define ND_ORCH_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/nd.h"

typedef enum orch_lang { ORCH_LANG_C, ORCH_LANG_PYTHON, ORCH_LANG_JS, ORCH_LANG_TS, ORCH_LANG_COUNT } orch_lang;
/* Fence info tag -> language: c/h, python/py/python3, js/javascript/node/mjs/cjs,
 * ts/typescript; -1 otherwise. */
int orch_lang_from_tag(const char *tag, size_t n);
const char *orch_lang_name(int lang); /* "c", "python", "javascript", "typescript" */

typedef struct orch_code_block {
    int lang;            /* orch_lang or -1 */
    size_t start, end;   /* content bytes [start, end) in the markdown, fences excluded */
    int first_line;      /* 1-based line of the first content line */
    size_t tag_start, tag_len;      /* the info string's first word ("python") */
    size_t block_start, block_end;  /* the whole block, opening fence line to after the closing one */
} orch_code_block;
/* Fenced blocks (``` or ~~~, up to 3 spaces of indent; an unclosed fence runs to the end).
 * *out is a new array (nd_free), NULL when *n_out == 0. */
int orch_guard_extract(const char *md, size_t n, orch_code_block **out, size_t *n_out, nd_err *err);

#define ORCH_GUARD_MAX_ARGS 32
typedef struct orch_guard_opts {
    /* Per language: NULL = the default checker, {NULL} (empty list) = not checked. */
    const char *const *argv[ORCH_LANG_COUNT];
    double timeout_s;    /* wall clock per check (default 10) */
    unsigned cpu_s;      /* RLIMIT_CPU (default 10) */
    size_t mem_bytes;    /* RLIMIT_AS (default 2 GiB; 0 after defaults = no limit is not offered) */
    size_t output_cap;   /* bytes of checker output kept; more kills it (default 64 KiB) */
    const char *tmp_root;/* where temp dirs go (default $TMPDIR or /tmp) */
} orch_guard_opts;
orch_guard_opts orch_guard_opts_default(void); /* all NULL = defaults */

typedef struct orch_guard orch_guard;
/* Resolves each checker's program on PATH now; a missing program makes that language
 * unavailable (orch_guard_available), not an error. Errors: ND_EINVAL (too many arguments,
 * limits out of range), ND_ENOMEM. */
orch_guard *orch_guard_new(const orch_guard_opts *opts, nd_err *err);
void orch_guard_free(orch_guard *g);
bool orch_guard_available(const orch_guard *g, int lang);

typedef enum orch_check_status {
    ORCH_CHECK_OK,          /* exit status 0 */
    ORCH_CHECK_FAILED,      /* non-zero exit: diagnostics in diag */
    ORCH_CHECK_TIMEOUT,     /* killed after timeout_s */
    ORCH_CHECK_FLOOD,       /* killed after output_cap bytes of output */
    ORCH_CHECK_CRASHED,     /* killed by a signal (CPU or memory limit...) */
    ORCH_CHECK_UNAVAILABLE, /* no checker for this language */
} orch_check_status;
const char *orch_check_status_name(int st);

typedef struct orch_check_result {
    int status;        /* orch_check_status */
    int exit_code;     /* when it exited */
    int signal;        /* when it was killed */
    char *diag;        /* checker output (stdout + stderr), NUL-terminated, at most output_cap */
    size_t diag_len;
    double seconds;
} orch_check_result;
void orch_check_result_free(orch_check_result *r);

/* Runs the checker on code. Checker failures are statuses, not errors; errors are about
 * this process: ND_EIO (temp dir, fork, pipe), ND_ENOMEM, ND_EINVAL. */
int orch_guard_check(const orch_guard *g, int lang, const char *code, size_t n, orch_check_result *r,
                     nd_err *err);

/* ------------------------------------------------------------------ the loop */

/* Given the current answer and the diagnostics of its failing blocks, write a new answer into
 * fixed (empty on entry). Round is 1 for the first fix. Non-zero stops the loop with that error. */
typedef int (*orch_fix_fn)(void *user, const char *answer, size_t n, const char *diag, size_t diag_len,
                           int round, nd_buf *fixed, nd_err *err);

#define ORCH_GUARD_MAX_ROUNDS 16
typedef struct orch_guard_round {
    int blocks;   /* code blocks in the answer */
    int checked;  /* blocks with an available checker */
    int failed;   /* of those, not OK */
    double seconds;
} orch_guard_round;

typedef struct orch_guard_summary {
    bool ok;         /* the last answer's checked blocks all pass */
    int fixes;       /* fix callbacks made */
    int n_rounds;    /* checks made (fixes + 1) */
    orch_guard_round round[ORCH_GUARD_MAX_ROUNDS + 1];
    nd_buf answer;   /* final answer */
    nd_buf diag;     /* diagnostics of the last failing round ("" when ok) */
} orch_guard_summary;
void orch_guard_summary_free(orch_guard_summary *s);
/* "ok after 2 fixes (3 checks; blocks checked 2/2)" or "failing after 3 fixes ...". */
int orch_guard_summary_format(const orch_guard_summary *s, nd_buf *out);

/* Check, fix, re-check, at most max_rounds fixes (0..ORCH_GUARD_MAX_ROUNDS). fix may be NULL
 * (check only). The summary is filled even when an error is returned. */
int orch_guard_run(const orch_guard *g, const char *answer, size_t n, orch_fix_fn fix, void *user,
                   int max_rounds, orch_guard_summary *sum, nd_err *err);

#endif
