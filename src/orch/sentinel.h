/* orch sentinel: finds secrets and personal data in text, swaps them for stable
 * placeholders before a request leaves for the main model, and on the way back restores the
 * placeholders and redacts secrets the answer carries that were not the user's own.
 *
 * Contracts
 *  - An orch_sentinel is immutable after orch_sentinel_new (its PCRE2 rules are compiled
 *    once, JIT when available); every function taking `const orch_sentinel *` may run
 *    concurrently on the same object (match data is per call).
 *  - An orch_map holds one conversation's value <-> placeholder table, in memory only.
 *    Values are wiped before they are freed. Nothing in this module ever writes a detected
 *    value into an nd_err, a log line or a count: only kinds and numbers.
 *  - Placeholders look like <SECRET_AWS_KEY_1> (secret kinds) or <EMAIL_2> (personal data);
 *    the number counts distinct values per kind within the map. The same value always gets
 *    the same placeholder in one map, whatever turn it appears in, and every occurrence of a
 *    value the map knows is replaced, detected in context or not.
 *  - Text is bytes: any input is accepted (invalid UTF-8 included); spans are byte offsets.
 */
#ifndef ND_ORCH_SENTINEL_H
#define ND_ORCH_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"

/* What a finding is. Secret kinds first, then personal data (ORCH_K_FIRST_PII...). */
typedef enum orch_kind {
    ORCH_K_AWS_KEY,        /* access key id AKIA/ASIA... */
    ORCH_K_AWS_SECRET,     /* 40-char secret access key next to an aws..secret name */
    ORCH_K_GITHUB_TOKEN,   /* ghp_ gho_ ghu_ ghs_ ghr_ */
    ORCH_K_GITHUB_PAT,     /* github_pat_ (fine-grained) */
    ORCH_K_GITLAB_TOKEN,   /* glpat- gldt- glrt- ... */
    ORCH_K_SLACK_TOKEN,    /* xoxb- xoxp- xapp- ... */
    ORCH_K_SLACK_WEBHOOK,  /* https://hooks.slack.com/services/... */
    ORCH_K_STRIPE_KEY,     /* sk_live_ rk_test_ whsec_ */
    ORCH_K_OPENAI_KEY,     /* sk-proj- / sk-...T3BlbkFJ... */
    ORCH_K_ANTHROPIC_KEY,  /* sk-ant-api03-... */
    ORCH_K_GOOGLE_KEY,     /* AIza... API keys, GOCSPX- OAuth client secrets */
    ORCH_K_AZURE_KEY,      /* AccountKey= / SharedAccessKey= values, Entra client secrets */
    ORCH_K_TWILIO_KEY,     /* SK + 32 hex */
    ORCH_K_SENDGRID_KEY,   /* SG.xxx.yyy */
    ORCH_K_NPM_TOKEN,      /* npm_ */
    ORCH_K_PYPI_TOKEN,     /* pypi-AgEIcHlwaS5vcmc... */
    ORCH_K_HF_TOKEN,       /* hf_ */
    ORCH_K_DISCORD_TOKEN,  /* bot tokens and webhook URLs */
    ORCH_K_TELEGRAM_TOKEN, /* 123456789:AA... */
    ORCH_K_MAILGUN_KEY,    /* key- + 32 hex */
    ORCH_K_DO_TOKEN,       /* dop_v1_ doo_v1_ dor_v1_ */
    ORCH_K_HEROKU_KEY,     /* HRKU- or a UUID next to "heroku" */
    ORCH_K_SHOPIFY_TOKEN,  /* shpat_ shpss_ ... */
    ORCH_K_PRIVATE_KEY,    /* PEM / OpenSSH / PGP private key blocks */
    ORCH_K_JWT,            /* eyJ...eyJ...sig */
    ORCH_K_PASSWORD,       /* password = "..." and friends */
    ORCH_K_GENERIC_SECRET, /* api_key / token / secret assignments, high-entropy near keywords */
    ORCH_K_URL_CREDS,      /* https://user:pass@host: the password part */
    ORCH_K_CONN_STRING,    /* postgres://u:p@h, Server=..;Password=..: the password part */
    ORCH_K_EMAIL,
    ORCH_K_PHONE,
    ORCH_K_CARD,           /* payment card numbers passing Luhn and a brand prefix */
    ORCH_K_IBAN,           /* IBANs with the right length per country and mod-97 == 1 */
    ORCH_K_IP,             /* IPv4 */
    ORCH_K_IPV6,
    ORCH_K_COUNT
} orch_kind;
#define ORCH_K_FIRST_PII ORCH_K_EMAIL

/* Upper-case name used in placeholders and reports ("AWS_KEY", "EMAIL"); NULL if out of range. */
const char *orch_kind_name(int kind);
/* Kind for a name (case-insensitive), -1 if unknown. */
int orch_kind_from_name(const char *name);
static inline bool orch_kind_is_pii(int kind) { return kind >= ORCH_K_FIRST_PII && kind < ORCH_K_COUNT; }

typedef struct orch_sentinel_opts {
    uint64_t disabled;      /* bit (1 << kind) set: that kind is never detected (allowed PII...) */
    bool flag_private_ip;   /* also replace private, loopback, link-local and netmask addresses */
    double entropy_min;     /* bits per char for tokens >= 20 chars near a secret keyword */
    size_t stream_tail;     /* bytes the outbound stream always holds back (>= 8) */
    bool outbound_redact;   /* outbound: redact secrets that are not in the map */
    bool outbound_pii;      /* outbound: also redact personal data that is not in the map */
} orch_sentinel_opts;
/* Defaults: every kind on, private IPs pass, entropy 3.5, tail 64, outbound secrets redacted,
 * outbound personal data passes (an answer may name a public support address). */
orch_sentinel_opts orch_sentinel_opts_default(void);

typedef struct orch_sentinel orch_sentinel;
/* Compiles the rule set. Errors: ND_EINVAL (bad opts), ND_ENOMEM, ND_EFORMAT (a rule does not
 * compile: a bug, the message names the rule). Free with orch_sentinel_free (NULL is fine). */
orch_sentinel *orch_sentinel_new(const orch_sentinel_opts *opts, nd_err *err);
void orch_sentinel_free(orch_sentinel *s);
const orch_sentinel_opts *orch_sentinel_get_opts(const orch_sentinel *s);

/* ------------------------------------------------------------------ scanning */

typedef struct orch_finding {
    size_t start, end; /* byte span [start, end) of the value itself (not its key name) */
    int kind;
} orch_finding;
typedef struct orch_findings {
    orch_finding *v; /* sorted by start, never overlapping */
    size_t n, cap;
} orch_findings;
void orch_findings_free(orch_findings *f);

/* Appends the findings in text[0..n) to out (cleared first). Overlapping candidates from
 * different rules are merged into one span of the most specific kind. */
int orch_sentinel_scan(const orch_sentinel *s, const char *text, size_t n, orch_findings *out,
                       nd_err *err);

/* ------------------------------------------------------------------ the map */

typedef struct orch_map orch_map;
orch_map *orch_map_new(nd_err *err);
void orch_map_free(orch_map *m); /* wipes the values; NULL is fine */
size_t orch_map_size(const orch_map *m);
/* The value behind a placeholder (exact text "<EMAIL_1>"), NULL if the map has none. The
 * pointer stays valid until the map is freed. */
const char *orch_map_lookup(const orch_map *m, const char *ph, size_t ph_len, size_t *value_len);
/* Whether value is one the map holds (a user's own secret). */
bool orch_map_has_value(const orch_map *m, const char *value, size_t len);

/* Replacement counts by kind, for traces and metrics (numbers only, never values). */
typedef struct orch_counts {
    uint32_t by_kind[ORCH_K_COUNT];
    uint32_t total;
} orch_counts;
/* "AWS_KEY=1 EMAIL=2" (kinds with a count only; "" when none). */
int orch_counts_format(const orch_counts *c, nd_buf *out);

/* ------------------------------------------------------------------ inbound */

/* Writes text[0..n) with every finding (and every other occurrence of a value the map
 * already knows) replaced by its placeholder, appending to out. New values are added to m.
 * counts (may be NULL) is incremented per replaced occurrence. On failure out may hold a
 * partial result that the caller must discard (never send it). Errors: ND_ENOMEM,
 * ND_ERANGE (the map is full: ORCH_MAP_MAX_VALUES values or ORCH_MAP_MAX_BYTES bytes). */
#define ORCH_MAP_MAX_VALUES 16384
#define ORCH_MAP_MAX_BYTES (16u << 20)
int orch_sentinel_scrub(const orch_sentinel *s, orch_map *m, const char *text, size_t n,
                        nd_buf *out, orch_counts *counts, nd_err *err);

/* ------------------------------------------------------------------ outbound */

/* The outbound stream: feed the model's answer in chunks as they arrive; each call appends
 * the text that is safe to show the user now. Placeholders of the map become the user's
 * values again; secrets (and, if opts.outbound_pii, personal data) that are not values of
 * the map become "[REDACTED_<KIND>]". The stream holds back at least opts.stream_tail
 * bytes and never cuts inside a run of non-space bytes (up to 4 KiB), a candidate finding
 * or a placeholder, so splitting the answer anywhere gives the same text as one call.
 * It keeps the last 256 bytes it released as context for keyword rules.
 * m may be NULL (nothing to restore; every secret is redacted). The map must outlive the
 * stream and must not change while the stream runs. */
typedef struct orch_outstream orch_outstream;
orch_outstream *orch_outstream_new(const orch_sentinel *s, const orch_map *m, nd_err *err);
void orch_outstream_free(orch_outstream *os); /* wipes its buffers; NULL is fine */
int orch_outstream_push(orch_outstream *os, const char *chunk, size_t n, nd_buf *out, nd_err *err);
/* Releases everything held back; the stream can't be pushed to afterwards. */
int orch_outstream_finish(orch_outstream *os, nd_buf *out, nd_err *err);
/* Redactions made so far, by kind, and placeholders restored. */
const orch_counts *orch_outstream_redacted(const orch_outstream *os);
uint32_t orch_outstream_restored(const orch_outstream *os);

/* One-shot outbound pass (a stream fed in one piece). */
int orch_sentinel_restore(const orch_sentinel *s, const orch_map *m, const char *text, size_t n,
                          nd_buf *out, orch_counts *redacted, nd_err *err);

#endif
