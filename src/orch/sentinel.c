/* orch sentinel: rule matching, checks, the per-conversation map, scrub and the outbound
 * stream. See sentinel.h for the contracts and sentinel_rules.c for the patterns. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orch/sentinel.h"
#include "orch/sentinel_internal.h"

/* ================================================================ kinds */

static const char *const kind_names[ORCH_K_COUNT] = {
    "AWS_KEY",       "AWS_SECRET",    "GITHUB_TOKEN",  "GITHUB_PAT",     "GITLAB_TOKEN",
    "SLACK_TOKEN",   "SLACK_WEBHOOK", "STRIPE_KEY",    "OPENAI_KEY",     "ANTHROPIC_KEY",
    "GOOGLE_KEY",    "AZURE_KEY",     "TWILIO_KEY",    "SENDGRID_KEY",   "NPM_TOKEN",
    "PYPI_TOKEN",    "HF_TOKEN",      "DISCORD_TOKEN", "TELEGRAM_TOKEN", "MAILGUN_KEY",
    "DO_TOKEN",      "HEROKU_KEY",    "SHOPIFY_TOKEN", "PRIVATE_KEY",    "JWT",
    "PASSWORD",      "GENERIC_SECRET", "URL_CREDS",    "CONN_STRING",    "EMAIL",
    "PHONE",         "CARD",          "IBAN",          "IP",             "IPV6",
};

const char *orch_kind_name(int kind) {
    return kind >= 0 && kind < ORCH_K_COUNT ? kind_names[kind] : NULL;
}

int orch_kind_from_name(const char *name) {
    if (!name) return -1;
    for (int k = 0; k < ORCH_K_COUNT; k++)
        if (!strcasecmp(name, kind_names[k])) return k;
    return -1;
}

orch_sentinel_opts orch_sentinel_opts_default(void) {
    orch_sentinel_opts o = {0};
    o.entropy_min = 3.5;
    o.stream_tail = 64;
    o.outbound_redact = true;
    return o;
}

/* ================================================================ object */

struct orch_sentinel {
    orch_sentinel_opts opts;
    pcre2_code *re[64]; /* one per orch_rules row */
    size_t n;
};

void orch_sentinel_free(orch_sentinel *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) pcre2_code_free(s->re[i]);
    nd_free(s);
}

orch_sentinel *orch_sentinel_new(const orch_sentinel_opts *opts, nd_err *err) {
    orch_sentinel_opts o = opts ? *opts : orch_sentinel_opts_default();
    if (o.entropy_min <= 0) o.entropy_min = 3.5;
    if (o.stream_tail == 0) o.stream_tail = 64;
    if (o.entropy_min > 8 || o.stream_tail < 8 || o.stream_tail > 4096) {
        nd_seterr(err, ND_EINVAL, "sentinel: entropy_min must be in (0, 8] and stream_tail in [8, 4096]");
        return NULL;
    }
    ND_ASSERT(orch_n_rules <= 64);
    orch_sentinel *s = nd_calloc(1, sizeof *s);
    if (!s) {
        nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
        return NULL;
    }
    s->opts = o;
    for (size_t i = 0; i < orch_n_rules; i++) {
        int ec;
        PCRE2_SIZE eo;
        s->re[i] = pcre2_compile((PCRE2_SPTR)orch_rules[i].re, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eo, NULL);
        if (!s->re[i]) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            nd_seterr(err, ND_EFORMAT, "sentinel: rule %s does not compile at offset %zu: %s",
                      orch_rules[i].name, (size_t)eo, (const char *)msg);
            orch_sentinel_free(s);
            return NULL;
        }
        s->n = i + 1;
        /* optional: interpreter otherwise. The outbound stream matches with PCRE2_PARTIAL_HARD. */
        pcre2_jit_compile(s->re[i], PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);
    }
    return s;
}

const orch_sentinel_opts *orch_sentinel_get_opts(const orch_sentinel *s) { return &s->opts; }

/* ================================================================ checks */

typedef struct span_text {
    const char *t; /* whole text */
    size_t n;
    size_t s, e;   /* value span */
} span_text;

static bool has_ci(const char *p, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncasecmp(p + i, needle, k)) return true;
    return false;
}

static double entropy_bits(const char *p, size_t n) {
    unsigned cnt[256] = {0};
    for (size_t i = 0; i < n; i++) cnt[(unsigned char)p[i]]++;
    double h = 0;
    for (int c = 0; c < 256; c++)
        if (cnt[c]) {
            double q = (double)cnt[c] / (double)n;
            h -= q * log2(q);
        }
    return h;
}

static size_t distinct_chars(const char *p, size_t n) {
    unsigned char seen[256] = {0};
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        if (!seen[(unsigned char)p[i]]++) d++;
    return d;
}

/* Documented examples, masks and keyboard runs that look like tokens but are not. */
static bool looks_fake(const char *p, size_t n) {
    static const char *const marks[] = {"example", "xxxx", "****", "<", ">", "your",
                                        "dummy", "sample", "placeholder", "redacted", "fake", "changeme",
                                        "change-me", "change_me", "...",
                                        "0000000000", "1234567890", "abcdefghij"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (has_ci(p, n, marks[i])) return true;
    if (n >= 16 && distinct_chars(p, n) < 6) return true;
    return false;
}

static bool is_uuid(const char *p, size_t n) {
    if (n != 36) return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? p[i] != '-' : !isxdigit((unsigned char)p[i])) return false;
    }
    return true;
}

static bool all_in(const char *p, size_t n, const char *set) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(set, p[i]) || !p[i]) return false;
    return true;
}

/* Key name words: split on _ . - and camelCase ("dbPassword" -> db password, "APIKey" -> api key). */
static size_t key_words(const char *k, size_t n, char w[8][24]) {
    size_t nw = 0, len = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? k[i] : 0;
        bool sep = !c || c == '_' || c == '.' || c == '-';
        bool camel = !sep && i > 0 && isupper((unsigned char)c) &&
                     (islower((unsigned char)k[i - 1]) ||
                      (i + 1 < n && isupper((unsigned char)k[i - 1]) && islower((unsigned char)k[i + 1])));
        if ((sep || camel) && len) {
            w[nw % 8][len < 23 ? len : 23] = 0;
            nw++;
            len = 0;
        }
        if (!sep && isalpha((unsigned char)c)) {
            if (len < 23) w[nw % 8][len] = (char)tolower((unsigned char)c);
            len++;
        }
    }
    return nw;
}

static bool word_in(const char *w, const char *const *set) {
    for (; *set; set++)
        if (!strcmp(w, *set)) return true;
    return false;
}

/* -1 = not a secret name, else ORCH_K_PASSWORD / ORCH_K_GENERIC_SECRET. */
static int secret_key_kind(const char *k, size_t n) {
    static const char *const pass[] = {"password", "passwd", "pwd", "pass", "passphrase", "passcode",
                                       "pword", "pw", NULL};
    static const char *const generic[] = {"secret", "token", "apikey", "secretkey", "accesskey",
                                          "privatekey", "credential", "credentials", "authkey",
                                          "apisecret", "clientsecret", "authtoken", NULL};
    static const char *const keyq[] = {"api", "access", "secret", "private", "auth", "signing",
                                       "encryption", "master", "client", "app", "service", "account",
                                       "license", "subscription", "webhook", "sas", "shared", "storage",
                                       "consumer", "session", "jwt", "hmac", NULL};
    char w[8][24];
    size_t nw = key_words(k, n, w);
    if (nw == 0 || nw > 8) return -1;
    const char *last = w[nw - 1], *prev = nw > 1 ? w[nw - 2] : "";
    if (word_in(last, pass)) return ORCH_K_PASSWORD;
    if (word_in(last, generic)) return ORCH_K_GENERIC_SECRET;
    if (!strcmp(last, "key") && word_in(prev, keyq)) return ORCH_K_GENERIC_SECRET;
    /* run-together names: PGPASSWORD, MYSQLPWD? no; DBPASSWORD, APITOKEN, CLIENTSECRET */
    static const char *const pass_sfx[] = {"password", "passwd", "passphrase", NULL};
    static const char *const gen_sfx[] = {"secret", "token", "apikey", "secretkey", "accesskey", NULL};
    size_t ln = strlen(last);
    for (const char *const *p = pass_sfx; *p; p++)
        if (ln > strlen(*p) && !strcmp(last + ln - strlen(*p), *p)) return ORCH_K_PASSWORD;
    for (const char *const *p = gen_sfx; *p; p++)
        if (ln > strlen(*p) && !strcmp(last + ln - strlen(*p), *p)) return ORCH_K_GENERIC_SECRET;
    return -1;
}

/* Values that are references, types, placeholders or prose rather than a secret. */
static bool value_is_reference(const char *v, size_t n, bool bare) {
    static const char *const words[] = {"null", "none", "nil", "true", "false", "undefined", "empty",
                                        "required", "optional", "string", "str", "text", "password",
                                        "passwd", "secret", "token", "changeme", "changeit", "hidden",
                                        "masked", "unset", "default", "char", "bytes", "int", NULL};
    char low[16];
    if (n < sizeof low) {
        for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)v[i]);
        low[n] = 0;
        if (word_in(low, words)) return true;
    }
    if (looks_fake(v, n)) return true;
    if (v[0] == '$' || v[0] == '%' || v[0] == '@' || v[0] == '{' || v[0] == '#') return true;
    static const char *const refs[] = {"process.env", "os.environ", "getenv", "env[", "env(",
                                       "secrets.", "vault:", "${", "{{", "\\n"};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (has_ci(v, n, refs[i])) return true;
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += v[i] == ' ';
    if (spaces >= 3) return true; /* prose ("Enter the password you chose") */
    if (bare) {
        if (all_in(v, n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.")) return true;
        if (memchr(v, '(', n) || memchr(v, '[', n)) return true;
    }
    return false;
}

static int check_assign(const orch_sentinel *s, const span_text *x, size_t ks, size_t ke, int group,
                        int *kind) {
    (void)s;
    int k = secret_key_kind(x->t + ks, ke - ks);
    if (k < 0) return 0;
    const char *v = x->t + x->s;
    size_t n = x->e - x->s;
    bool bare = group == 5;
    if (n < (k == ORCH_K_PASSWORD ? 6u : 8u)) return 0;
    if (value_is_reference(v, n, bare)) return 0;
    if (k == ORCH_K_GENERIC_SECRET) {
        if (all_in(v, n, "abcdefghijklmnopqrstuvwxyz")) return 0;
        if (all_in(v, n, "0123456789") && n < 12) return 0;
        if (entropy_bits(v, n) < 2.5) return 0;
    }
    *kind = k;
    return 1;
}

static bool ph_char(char c) { return isupper((unsigned char)c) || isdigit((unsigned char)c) || c == '_'; }

static bool check_entropy(const orch_sentinel *s, const span_text *x, size_t kw) {
    const char *v = x->t + x->s;
    size_t n = x->e - x->s;
    if (n < 12 || looks_fake(v, n) || is_uuid(v, n)) return false;
    if (v[0] == '/' || v[0] == '-' || v[0] == '.' || memchr(v, '.', n) || has_ci(v, n, "//")) return false;
    /* the keyword sits inside a placeholder ("<SECRET_GENERIC_SECRET_1>") */
    for (size_t i = kw; i > 0 && kw - i < 48; i--) {
        if (x->t[i - 1] == '<') return false;
        if (!ph_char(x->t[i - 1])) break;
    }
    const char *eq = memchr(v, '=', n), *end = v + n;
    if (eq) { /* '=' only as base64 padding (the span is not NUL-terminated: stay inside it) */
        const char *p = eq;
        while (p < end && *p == '=') p++;
        if (p < end) return false;
    }
    bool digit = false, upper = false, lower = false;
    for (size_t i = 0; i < n; i++) {
        digit |= isdigit((unsigned char)v[i]) != 0;
        upper |= isupper((unsigned char)v[i]) != 0;
        lower |= islower((unsigned char)v[i]) != 0;
    }
    if (!digit || !(upper || lower)) return false;
    if (n < 20 && !(upper && lower)) return false;
    /* paths: a slash-separated segment that is a plain word or number */
    if (memchr(v, '/', n))
        for (size_t i = 0, j; i < n; i = j + 1) {
            for (j = i; j < n && v[j] != '/'; j++) {}
            if (j - i >= 4 && (all_in(v + i, j - i, "abcdefghijklmnopqrstuvwxyz-_") || all_in(v + i, j - i, "0123456789")))
                return false;
        }
    bool hex = all_in(v, n, "0123456789abcdefABCDEF");
    double need = n < 20 ? 3.0 : (hex ? 3.0 : s->opts.entropy_min);
    return entropy_bits(v, n) >= need;
}

static bool check_urlpass(const char *v, size_t n) {
    static const char *const words[] = {"password", "pass", "passwd", "pwd", "secret", "changeme",
                                        "pw", "p", "x", "xxx", "***", NULL};
    char low[16];
    if (n < sizeof low) {
        for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)v[i]);
        low[n] = 0;
        if (word_in(low, words)) return false;
    }
    if (v[0] == '$' || v[0] == '<' || v[0] == '{' || v[0] == '%' || v[0] == '*' || v[0] == '[')
        return false;
    if (has_ci(v, n, "your") || has_ci(v, n, "xxxx") || has_ci(v, n, "example") || has_ci(v, n, "<"))
        return false;
    return true;
}

static bool check_email(const span_text *x) {
    const char *v = x->t + x->s;
    size_t n = x->e - x->s;
    const char *at = memchr(v, '@', n);
    if (!at) return false;
    size_t ln = (size_t)(at - v), dn = n - ln - 1;
    const char *d = at + 1;
    if (ln == 3 && !strncasecmp(v, "git", 3)) return false;
    static const char *const doc[] = {"example.com", "example.org", "example.net", ".example",
                                      ".test", ".invalid", ".localhost", ".local"};
    for (size_t i = 0; i < sizeof doc / sizeof doc[0]; i++) {
        size_t k = strlen(doc[i]);
        if (dn >= k && !strncasecmp(d + dn - k, doc[i], k) &&
            (dn == k || doc[i][0] == '.' || d[dn - k - 1] == '.'))
            return false;
    }
    const char *tld = d + dn;
    while (tld > d && tld[-1] != '.') tld--;
    static const char *const ext[] = {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js",
                                      "mjs", "ts", "css", "json", "yml", "yaml", "lock", "txt", "html",
                                      "py", "rb", "go", "rs", "java", "c", "h", "md", "toml", "map", NULL};
    char t[8];
    size_t tn = (size_t)(d + dn - tld);
    if (tn < sizeof t) {
        for (size_t i = 0; i < tn; i++) t[i] = (char)tolower((unsigned char)tld[i]);
        t[tn] = 0;
        if (word_in(t, ext)) return false;
    }
    /* user:pass@host inside a URL is the URL rule's business */
    for (size_t i = x->s; i > 0 && !isspace((unsigned char)x->t[i - 1]) && x->s - i < 512; i--)
        if (i >= 3 && !memcmp(x->t + i - 3, "://", 3)) return false;
    return true;
}

static size_t count_digits(const char *v, size_t n, char *out, size_t cap) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        if (isdigit((unsigned char)v[i])) {
            if (d < cap) out[d] = v[i];
            d++;
        }
    return d;
}

static bool luhn_ok(const char *d, size_t n) {
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int c = d[n - 1 - i] - '0';
        if (i & 1) c = c * 2 > 9 ? c * 2 - 9 : c * 2;
        sum += c;
    }
    return sum % 10 == 0;
}

static bool card_brand_ok(const char *d, size_t n) {
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p4 = p2 * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    int p3 = p4 / 10;
    if (d[0] == '4') return n == 13 || n == 16 || n == 19;                          /* Visa */
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n == 16;      /* Mastercard */
    if (p2 == 34 || p2 == 37) return n == 15;                                      /* Amex */
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) return n >= 16;        /* Discover */
    if (p2 == 35) return n >= 16;                                                  /* JCB */
    if (p2 == 36 || p2 == 38 || p2 == 30) return n >= 14;                          /* Diners */
    if (p2 == 62) return n >= 16;                                                  /* UnionPay */
    return false;
}

static bool check_card(const char *v, size_t n) {
    char d[24];
    size_t nd = count_digits(v, n, d, sizeof d);
    if (nd < 13 || nd > 19) return false;
    /* separators: none, or one kind in 4-4-4-4(-3) / 4-6-5 / 4-6-4 groups */
    char sep = 0;
    size_t groups[8], ng = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (isdigit((unsigned char)v[i])) {
            run++;
            continue;
        }
        if (sep && v[i] != sep) return false;
        sep = v[i];
        if (ng == 7) return false;
        groups[ng++] = run;
        run = 0;
    }
    groups[ng++] = run;
    if (sep) {
        bool fours = true;
        for (size_t i = 0; i + 1 < ng; i++) fours &= groups[i] == 4;
        bool amex = ng == 3 && groups[0] == 4 && groups[1] == 6 && (groups[2] == 5 || groups[2] == 4);
        if (!(fours && groups[ng - 1] >= 1 && groups[ng - 1] <= 4) && !amex) return false;
    }
    return card_brand_ok(d, nd) && luhn_ok(d, nd);
}

static int iban_len(const char *cc) {
    static const char table[] =
        "AD24AE23AL28AT20AZ28BA20BE16BG22BH22BR29BY28CH21CR22CY28CZ24DE22DK18DO28EE20EG29ES24"
        "FI18FO18FR27GB22GE22GI23GL18GR27GT28HR21HU28IE22IL23IQ23IS26IT27JO30KW30KZ20LB28LC32"
        "LI21LT20LU20LV21MC27MD24ME22MK19MR27MT31MU30NL18NO15PK24PL28PS29PT25QA29RO24RS22SA24"
        "SC31SE24SI19SK24SM27ST25SV28TL23TN24TR26UA29VA22VG24XK20";
    for (const char *p = table; *p; p += 4)
        if (p[0] == cc[0] && p[1] == cc[1]) return (p[2] - '0') * 10 + (p[3] - '0');
    return -1;
}

static bool check_iban(const char *v, size_t n) {
    char s[40];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] != ' ') {
            if (k == sizeof s) return false;
            s[k++] = v[i];
        }
    if ((int)k != iban_len(s)) return false;
    unsigned rem = 0;
    for (size_t i = 0; i < k; i++) {
        char c = s[(i + 4) % k];
        if (isdigit((unsigned char)c)) rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (isupper((unsigned char)c)) rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
        else return false;
    }
    return rem == 1;
}

static bool check_phone(int chk, const char *v, size_t n) {
    char d[24];
    size_t nd = count_digits(v, n, d, sizeof d);
    if (chk == ORCH_CHK_PHONE_INTL) {
        /* a + number needs some grouping or enough digits to be E.164-like */
        return nd >= 8 && nd <= 15;
    }
    if (chk == ORCH_CHK_PHONE_NANP) return nd == 10 && d[0] >= '2' && d[3] >= '2';
    return nd >= 9 && nd <= 13;
}

static bool ipv4_private(const unsigned o[4]) {
    if (o[0] == 10 || o[0] == 127 || o[0] == 0 || o[0] >= 224) return true;
    if (o[0] == 172 && o[1] >= 16 && o[1] <= 31) return true;
    if (o[0] == 192 && o[1] == 168) return true;
    if (o[0] == 169 && o[1] == 254) return true;
    if (o[0] == 100 && o[1] >= 64 && o[1] <= 127) return true;
    return false;
}

static bool check_ipv4(const orch_sentinel *s, const span_text *x) {
    unsigned o[4] = {0};
    size_t k = 0;
    for (size_t i = x->s; i < x->e; i++) {
        if (x->t[i] == '.') k++;
        else o[k] = o[k] * 10 + (unsigned)(x->t[i] - '0');
    }
    if (!s->opts.flag_private_ip && ipv4_private(o)) return false;
    /* version numbers: "version 1.2.3.4", "v1.2.3.4" (the v is excluded by the pattern) */
    size_t from = x->s > 12 ? x->s - 12 : 0;
    if (has_ci(x->t + from, x->s - from, "version") || has_ci(x->t + from, x->s - from, "release"))
        return false;
    return true;
}

static bool check_ipv6(const orch_sentinel *s, const char *v, size_t n) {
    char buf[64];
    if (n >= sizeof buf) return false;
    memcpy(buf, v, n);
    buf[n] = 0;
    unsigned char a[16];
    if (inet_pton(AF_INET6, buf, a) != 1) return false;
    size_t groups = 0;
    for (size_t i = 0; i < n; i++)
        if (isxdigit((unsigned char)v[i]) && (i == 0 || v[i - 1] == ':')) groups++;
    if (groups < 3 && !memchr(v, '.', n)) return false;
    if (!s->opts.flag_private_ip) {
        static const unsigned char zero[16];
        bool v4mapped = !memcmp(a, zero, 10) && a[10] == 0xff && a[11] == 0xff;
        if (!memcmp(a, zero, 15)) return false;                   /* :: and ::1 */
        if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return false;  /* link-local */
        if ((a[0] & 0xfe) == 0xfc) return false;                  /* unique local */
        if (a[0] == 0xff) return false;                           /* multicast */
        if (v4mapped) {
            unsigned o[4] = {a[12], a[13], a[14], a[15]};
            if (ipv4_private(o)) return false;
        }
    }
    return true;
}

/* Length of a placeholder-shaped token "<KIND_12>" at p, 0 if none. */
static size_t ph_token(const char *p, size_t avail) {
    if (!avail || p[0] != '<') return 0;
    size_t i = 1;
    while (i < avail && i < 48 && ph_char(p[i])) i++;
    return i < avail && p[i] == '>' && i >= 4 && isdigit((unsigned char)p[i - 1]) ? i + 1 : 0;
}

static bool has_placeholder(const char *v, size_t n) {
    for (const char *p = v; (p = memchr(p, '<', (size_t)(v + n - p))); p++)
        if (ph_token(p, (size_t)(v + n - p))) return true;
    return false;
}

static bool check_pem(const char *v, size_t n) {
    const char *body = memchr(v + 5, '-', n - 5); /* skip the BEGIN line's dashes */
    size_t b64 = 0, k;
    for (const char *p = body ? body : v; p < v + n; p++) {
        if (*p == '<' && (k = ph_token(p, (size_t)(v + n - p)))) { /* placeholders are not key material */
            p += k - 1;
            continue;
        }
        if (isalnum((unsigned char)*p) || *p == '+' || *p == '/') b64++;
    }
    return b64 >= 80 && !has_ci(v, n, "...");
}

/* Runs the rule's check; may change *kind. Returns true to keep the candidate. */
static bool run_check(const orch_sentinel *s, const orch_rule *r, const span_text *x, const PCRE2_SIZE *ov,
                      int group, int *kind) {
    const char *v = x->t + x->s;
    size_t n = x->e - x->s;
    switch (r->check) {
    case ORCH_CHK_NONE: return true;
    case ORCH_CHK_TOKEN: return !looks_fake(v, n);
    case ORCH_CHK_SECRET40: {
        if (looks_fake(v, n) || entropy_bits(v, n) < 3.5) return false;
        bool up = false, lo = false, dg = false;
        for (size_t i = 0; i < n; i++) {
            up |= isupper((unsigned char)v[i]) != 0;
            lo |= islower((unsigned char)v[i]) != 0;
            dg |= isdigit((unsigned char)v[i]) != 0 || v[i] == '/' || v[i] == '+';
        }
        return up && lo && dg;
    }
    case ORCH_CHK_PEM: return check_pem(v, n);
    case ORCH_CHK_ASSIGN: return check_assign(s, x, ov[2], ov[3], group, kind);
    case ORCH_CHK_ENTROPY: return check_entropy(s, x, ov[0]);
    case ORCH_CHK_URLPASS: return check_urlpass(v, n);
    case ORCH_CHK_EMAIL: return check_email(x);
    case ORCH_CHK_PHONE_INTL:
    case ORCH_CHK_PHONE_NANP:
    case ORCH_CHK_PHONE_KW: return check_phone(r->check, v, n);
    case ORCH_CHK_CARD: return check_card(v, n);
    case ORCH_CHK_IBAN: return check_iban(v, n);
    case ORCH_CHK_IPV4: return check_ipv4(s, x);
    case ORCH_CHK_IPV6: return check_ipv6(s, v, n);
    }
    return false;
}

/* ================================================================ scanning */

typedef struct cand {
    size_t s, e;
    int kind, prio;
} cand;

typedef struct cands {
    cand *v;
    size_t n, cap;
} cands;

static int cands_push(cands *c, size_t s, size_t e, int kind, int prio) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        cand *v = nd_realloc(c->v, cap * sizeof *v);
        if (!v) return ND_ENOMEM;
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n++] = (cand){s, e, kind, prio};
    return 0;
}

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    if (x->prio != y->prio) return x->prio - y->prio;
    return x->e > y->e ? -1 : x->e < y->e;
}

void orch_findings_free(orch_findings *f) {
    if (!f) return;
    nd_free(f->v);
    f->v = NULL;
    f->n = f->cap = 0;
}

static int findings_push(orch_findings *f, size_t s, size_t e, int kind) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        orch_finding *v = nd_realloc(f->v, cap * sizeof *v);
        if (!v) return ND_ENOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (orch_finding){s, e, kind};
    return 0;
}

/* Whether [vs, ve) lies inside a placeholder-shaped token "<SECRET_KIND_12>" (ours or one the
 * user typed): such text is never a secret. */
static bool inside_placeholder(const char *t, size_t n, size_t vs, size_t ve) {
    for (size_t i = vs; i < ve; i++)
        if (!ph_char(t[i])) return false;
    size_t a = vs, b = ve;
    while (a > 0 && vs - a < 48 && ph_char(t[a - 1])) a--;
    while (b < n && b - ve < 48 && ph_char(t[b])) b++;
    return a > 0 && t[a - 1] == '<' && b < n && t[b] == '>' && isdigit((unsigned char)t[b - 1]);
}

/* Matches of one rule over text, checks applied, appended to c. */
/* Outbound: a candidate glued to a placeholder is a fragment of a token the inbound scan saw
 * whole (a known value replaced inside a longer word), and a placeholder between a keyword
 * and its value changed the distance the inbound scan measured; judging either alone would
 * redact the user's own text. */
static bool touches_placeholder(const char *t, size_t n, size_t vs, size_t ve) {
    if (ve < n && ph_token(t + ve, n - ve)) return true;
    if (vs > 0 && t[vs - 1] == '>')
        for (size_t i = vs - 1; i > 0 && vs - i < 48; i--)
            if (t[i - 1] == '<') return ph_token(t + i - 1, n - i + 1) == vs - i + 1;
    return false;
}

/* hold (NULL unless the text may still grow, as in the outbound stream): matching is done with
 * PCRE2_PARTIAL_HARD and *hold is lowered to the start of the first partial match, i.e. a
 * match attempt that reached the end of the text and might come out differently once more
 * text arrives (a quoted value not closed yet, a lookahead at the end, an alternative the
 * pattern prefers that needs more bytes...). Matches before it are final. */
static int scan_rule(const orch_sentinel *s, size_t ri, const char *text, size_t n, uint64_t mask, bool outbound,
                     pcre2_match_data *md, pcre2_match_context *mc, cands *c, size_t *hold, nd_err *err) {
    const orch_rule *r = &orch_rules[ri];
    PCRE2_SIZE off = 0;
    while (off <= n) {
        int rc = pcre2_match(s->re[ri], (PCRE2_SPTR)text, n, off, hold ? PCRE2_PARTIAL_HARD : 0, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc == PCRE2_ERROR_PARTIAL) {
            PCRE2_SIZE ps = pcre2_get_ovector_pointer(md)[0];
            if (ps < *hold) *hold = ps;
            break; /* a later match starts after ps: beyond any cut made before ps */
        }
        if (rc < 0) {
            if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21) break;
            if (rc == PCRE2_ERROR_BADUTFOFFSET) {
                off++;
                continue;
            }
            return nd_seterr(err, ND_ERANGE, "sentinel: rule %s gave up on this text (pcre2 error %d); "
                             "refusing to pass it on unscanned", r->name, rc);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int group = 0;
        size_t vs = ov[0], ve = ov[1];
        if (r->vgroup > 0) {
            for (int g = r->vgroup; g < rc; g++)
                if (ov[2 * g] != PCRE2_UNSET) {
                    group = g;
                    vs = ov[2 * g];
                    ve = ov[2 * g + 1];
                    break;
                }
        }
        int kind = r->kind;
        span_text x = {text, n, vs, ve};
        bool keep = ve > vs && !inside_placeholder(text, n, vs, ve) &&
                    (r->check == ORCH_CHK_PEM || !has_placeholder(text + vs, ve - vs)) &&
                    !(outbound && (touches_placeholder(text, n, vs, ve) ||
                                   (r->check != ORCH_CHK_PEM && has_placeholder(text + ov[0], ov[1] - ov[0])))) &&
                    run_check(s, r, &x, ov, group, &kind) && (mask >> kind & 1);
        if (keep) {
            if (cands_push(c, vs, ve, kind, r->prio)) return nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
            /* go on from the value's end, not the match's: the context a pattern consumes after
             * the value ("@h" of user:pass@host) may begin the next candidate, and the outbound
             * scan, which rejects the first one once its value is a placeholder, would see it */
            off = ve > ov[0] ? ve : ov[0] + 1;
        } else {
            off = ov[0] + 1; /* a rejected candidate may hide a good one that starts later */
        }
        while (off < n && ((unsigned char)text[off] & 0xC0) == 0x80) off++;
    }
    return 0;
}

static int scan_mask(const orch_sentinel *s, const char *text, size_t n, uint64_t mask, bool outbound,
                     size_t *hold, orch_findings *out, nd_err *err) {
    out->n = 0;
    if (n == 0) return 0;
    cands c = {0};
    int rc = 0;
    pcre2_match_data *md = pcre2_match_data_create(16, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_jit_stack *js = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!md || !mc || !js) {
        rc = nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
        goto done;
    }
    pcre2_jit_stack_assign(mc, NULL, js);
    pcre2_set_match_limit(mc, 10u * 1000 * 1000);
    for (size_t ri = 0; ri < s->n && !rc; ri++) {
        const orch_rule *r = &orch_rules[ri];
        bool may = (mask >> r->kind & 1) ||
                   (r->check == ORCH_CHK_ASSIGN && (mask >> ORCH_K_PASSWORD & 1));
        if (may) rc = scan_rule(s, ri, text, n, mask, outbound, md, mc, &c, hold, err);
    }
    if (rc) goto done;
    if (c.n) qsort(c.v, c.n, sizeof *c.v, cand_cmp);
    /* merge overlapping candidates: union span, kind of the best (lowest prio, then longest) */
    for (size_t i = 0; i < c.n;) {
        size_t s0 = c.v[i].s, e0 = c.v[i].e, j = i + 1;
        const cand *best = &c.v[i];
        while (j < c.n && c.v[j].s < e0) {
            if (c.v[j].e > e0) e0 = c.v[j].e;
            if (c.v[j].prio < best->prio ||
                (c.v[j].prio == best->prio && c.v[j].e - c.v[j].s > best->e - best->s))
                best = &c.v[j];
            j++;
        }
        if (findings_push(out, s0, e0, best->kind)) {
            rc = nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
            break;
        }
        i = j;
    }
done:
    nd_free(c.v);
    pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    return rc;
}

static uint64_t inbound_mask(const orch_sentinel *s) {
    return ((UINT64_C(1) << ORCH_K_COUNT) - 1) & ~s->opts.disabled;
}

int orch_sentinel_scan(const orch_sentinel *s, const char *text, size_t n, orch_findings *out,
                       nd_err *err) {
    if (!s || !out || (!text && n)) return nd_seterr(err, ND_EINVAL, "sentinel_scan: NULL argument");
    return scan_mask(s, text, n, inbound_mask(s), false, NULL, out, err);
}

/* ================================================================ map */

#define PH_MAX 48

typedef struct map_entry {
    char *value;
    size_t len;
    int kind;
    char ph[PH_MAX];
    size_t ph_len;
} map_entry;

struct orch_map {
    map_entry *e;
    size_t n, cap, bytes;
    uint32_t next[ORCH_K_COUNT]; /* last number given per kind */
};

orch_map *orch_map_new(nd_err *err) {
    orch_map *m = nd_calloc(1, sizeof *m);
    if (!m) nd_seterr(err, ND_ENOMEM, "sentinel map: out of memory");
    return m;
}

static void wipe(void *p, size_t n) {
    volatile unsigned char *q = p;
    while (n--) *q++ = 0;
}

void orch_map_free(orch_map *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        wipe(m->e[i].value, m->e[i].len);
        nd_free(m->e[i].value);
    }
    nd_free(m->e);
    nd_free(m);
}

size_t orch_map_size(const orch_map *m) { return m ? m->n : 0; }

static const map_entry *map_find_value(const orch_map *m, const char *v, size_t n) {
    if (!m) return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].len == n && !memcmp(m->e[i].value, v, n)) return &m->e[i];
    return NULL;
}

bool orch_map_has_value(const orch_map *m, const char *value, size_t len) {
    return map_find_value(m, value, len) != NULL;
}

const char *orch_map_lookup(const orch_map *m, const char *ph, size_t ph_len, size_t *value_len) {
    if (!m || !ph) return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].ph_len == ph_len && !memcmp(m->e[i].ph, ph, ph_len)) {
            if (value_len) *value_len = m->e[i].len;
            return m->e[i].value;
        }
    return NULL;
}

static int map_add(orch_map *m, const char *v, size_t n, int kind, const map_entry **out, nd_err *err) {
    const map_entry *have = map_find_value(m, v, n);
    if (have) {
        *out = have;
        return 0;
    }
    if (m->n >= ORCH_MAP_MAX_VALUES || n > ORCH_MAP_MAX_BYTES - m->bytes)
        return nd_seterr(err, ND_ERANGE, "sentinel map: more than %d values or %u bytes in one "
                         "conversation; start a new conversation", ORCH_MAP_MAX_VALUES, ORCH_MAP_MAX_BYTES);
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        map_entry *e = nd_realloc(m->e, cap * sizeof *e);
        if (!e) return nd_seterr(err, ND_ENOMEM, "sentinel map: out of memory");
        m->e = e;
        m->cap = cap;
    }
    map_entry *e = &m->e[m->n];
    e->value = nd_strndup(v, n);
    if (!e->value) return nd_seterr(err, ND_ENOMEM, "sentinel map: out of memory");
    e->len = n;
    e->kind = kind;
    unsigned num = ++m->next[kind];
    int w = snprintf(e->ph, PH_MAX, orch_kind_is_pii(kind) ? "<%s_%u>" : "<SECRET_%s_%u>",
                     kind_names[kind], num);
    e->ph_len = (size_t)w;
    m->n++;
    m->bytes += n;
    *out = e;
    return 0;
}

int orch_counts_format(const orch_counts *c, nd_buf *out) {
    bool first = true;
    for (int k = 0; k < ORCH_K_COUNT; k++) {
        if (!c->by_kind[k]) continue;
        if (nd_buf_printf(out, "%s%s=%u", first ? "" : " ", kind_names[k], c->by_kind[k])) return ND_ENOMEM;
        first = false;
    }
    return out->data ? 0 : nd_buf_append(out, "", 0);
}

/* ================================================================ scrub */

int orch_sentinel_scrub(const orch_sentinel *s, orch_map *m, const char *text, size_t n,
                        nd_buf *out, orch_counts *counts, nd_err *err) {
    if (!s || !m || !out || (!text && n)) return nd_seterr(err, ND_EINVAL, "sentinel_scrub: NULL argument");
    orch_findings f = {0};
    int rc = scan_mask(s, text, n, inbound_mask(s), false, NULL, &f, err);
    size_t *next = NULL; /* per map entry: offset of its next occurrence, SIZE_MAX when none */
    if (rc) goto done;
    for (size_t i = 0; i < f.n; i++) {
        const map_entry *e;
        if ((rc = map_add(m, text + f.v[i].start, f.v[i].end - f.v[i].start, f.v[i].kind, &e, err))) goto done;
    }
    /* Left to right, the earliest occurrence of a known value (findings included: they are
     * occurrences too) wins, the longest of those starting at the same byte. Each value's next
     * occurrence is searched from the current position, so an occurrence that overlaps one
     * replaced before it does not hide the next one (values "\0\0\0\0\0\0" and 8 NULs in a
     * run of 38: 4 x 8 replaced, then the last 6 must be too). No occurrence of a value is left
     * whole between two replacements. */
    if (m->n && !(next = nd_malloc(m->n * sizeof *next))) {
        rc = nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
        goto done;
    }
    for (size_t i = 0; i < m->n; i++) next[i] = 0;
    size_t pos = 0, fi = 0;
    for (bool first = true;; first = false) {
        size_t bs = SIZE_MAX, be = 0;
        const map_entry *ent = NULL;
        for (size_t i = 0; i < m->n; i++) {
            const map_entry *e = &m->e[i];
            if (e->len < 4) continue;
            if (first || (next[i] != SIZE_MAX && next[i] < pos)) {
                const char *q = e->len <= n - pos ? memmem(text + pos, n - pos, e->value, e->len) : NULL;
                next[i] = q ? (size_t)(q - text) : SIZE_MAX;
            }
            if (next[i] == SIZE_MAX) continue;
            if (next[i] < bs || (next[i] == bs && next[i] + e->len > be)) {
                bs = next[i];
                be = bs + e->len;
                ent = e;
            }
        }
        while (fi < f.n && f.v[fi].start < pos) fi++; /* overlapped by a replacement before it */
        if (fi < f.n && (f.v[fi].start < bs || (f.v[fi].start == bs && f.v[fi].end > be))) {
            bs = f.v[fi].start;
            be = f.v[fi].end;
            ent = map_find_value(m, text + bs, be - bs);
        }
        if (!ent) break;
        if (nd_buf_append(out, text + pos, bs - pos) || nd_buf_append(out, ent->ph, ent->ph_len)) {
            rc = nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
            goto done;
        }
        if (counts) {
            counts->by_kind[ent->kind]++;
            counts->total++;
        }
        pos = be;
    }
    if (nd_buf_append(out, text + pos, n - pos)) rc = nd_seterr(err, ND_ENOMEM, "sentinel: out of memory");
done:
    nd_free(next);
    orch_findings_free(&f);
    return rc;
}

/* ================================================================ outbound */

#define OS_CTX 256
#define OS_MAX_RUN 4096

struct orch_outstream {
    const orch_sentinel *s;
    const orch_map *m;
    nd_buf pend;          /* raw answer bytes not yet released */
    char ctx[OS_CTX];     /* last raw bytes released, context for keyword rules */
    size_t ctx_len;
    nd_buf scan;          /* ctx + pend, scanned together */
    orch_findings f;
    orch_counts red;
    uint32_t restored;
    bool finished;
};

orch_outstream *orch_outstream_new(const orch_sentinel *s, const orch_map *m, nd_err *err) {
    if (!s) {
        nd_seterr(err, ND_EINVAL, "outstream: NULL sentinel");
        return NULL;
    }
    orch_outstream *os = nd_calloc(1, sizeof *os);
    if (!os) {
        nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
        return NULL;
    }
    os->s = s;
    os->m = m;
    return os;
}

static void buf_wipe_free(nd_buf *b) {
    if (b->data) wipe(b->data, b->cap);
    nd_buf_free(b);
}

void orch_outstream_free(orch_outstream *os) {
    if (!os) return;
    buf_wipe_free(&os->pend);
    buf_wipe_free(&os->scan);
    wipe(os->ctx, sizeof os->ctx);
    orch_findings_free(&os->f);
    nd_free(os);
}

const orch_counts *orch_outstream_redacted(const orch_outstream *os) { return &os->red; }
uint32_t orch_outstream_restored(const orch_outstream *os) { return os->restored; }

/* Length of a placeholder-shaped token "<A_B_12>" at p (0 if none); *open = 1 when p is a
 * prefix of one that the text cut short. */
static size_t ph_len_at(const char *p, size_t avail, int *open) {
    *open = 0;
    if (!avail || p[0] != '<') return 0;
    size_t i = 1;
    while (i < avail && i < PH_MAX && (isupper((unsigned char)p[i]) || isdigit((unsigned char)p[i]) || p[i] == '_'))
        i++;
    if (i == avail && i < PH_MAX) {
        *open = 1;
        return 0;
    }
    if (i < avail && p[i] == '>' && i >= 4 && isdigit((unsigned char)p[i - 1])) return i + 1;
    return 0;
}

/* Appends text with the map's placeholders replaced by their values. */
static int restore_plain(orch_outstream *os, const char *t, size_t n, nd_buf *out) {
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '<') continue;
        int open;
        size_t k = ph_len_at(t + i, n - i, &open), vl;
        const char *v = k ? orch_map_lookup(os->m, t + i, k, &vl) : NULL;
        if (!v) continue;
        if (nd_buf_append(out, t + pos, i - pos) || nd_buf_append(out, v, vl)) return ND_ENOMEM;
        os->restored++;
        pos = i + k;
        i = pos - 1;
    }
    return nd_buf_append(out, t + pos, n - pos);
}

static bool sp(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* Where the released prefix of pend ends: see orch_outstream_new's comment. hold: the start
 * of the first partial match in pend (a rule that may still match differently there once more
 * text arrives); nothing from it on is released. */
static size_t choose_cut(const orch_outstream *os, const orch_finding *f, size_t nf, size_t hold) {
    const char *p = os->pend.data;
    size_t len = os->pend.len, tail = os->s->opts.stream_tail;
    if (len <= tail) return 0;
    size_t cut = len - tail;
    if (hold < cut) cut = hold;
    if (!cut) return 0;
    if (!sp(p[cut - 1]) && !sp(p[cut])) {
        size_t i = cut;
        while (i > 0 && !sp(p[i - 1]) && cut - i < OS_MAX_RUN) i--;
        if (i == 0 || sp(p[i - 1])) cut = i;
        else
            for (size_t j = cut; j > 0 && cut - j < PH_MAX; j--) { /* giant run: not inside a placeholder */
                int open;
                if (p[j - 1] == '<' && (ph_len_at(p + j - 1, cut - j + 1, &open), open)) {
                    cut = j - 1;
                    break;
                }
            }
    }
    /* digit groups ("+44 20 7946 0958", "DE89 3704 0044") are one run */
    while (cut >= 2 && p[cut - 1] == ' ' && (isdigit((unsigned char)p[cut]) || isupper((unsigned char)p[cut])) &&
           (isdigit((unsigned char)p[cut - 2]) || isupper((unsigned char)p[cut - 2]) || p[cut - 2] == ')')) {
        size_t i = cut - 1;
        while (i > 0 && !sp(p[i - 1]) && cut - i < OS_MAX_RUN) i--;
        if (i > 0 && !sp(p[i - 1])) break; /* giant run: the space is boundary enough */
        cut = i;
    }
    /* never inside a placeholder */
    for (size_t j = cut; j > 0 && cut - j < PH_MAX; j--) {
        int open;
        if (p[j - 1] == '<') {
            if (ph_len_at(p + j - 1, cut - j + 1, &open), open) cut = j - 1;
            break;
        }
        if (!(isupper((unsigned char)p[j - 1]) || isdigit((unsigned char)p[j - 1]) || p[j - 1] == '_')) break;
    }
    /* an armored block still open: hold it whole ("-----BEGIN X PRIVATE KEY-----" has spaces) */
    for (size_t i = cut; i-- > 0;) {
        if (p[i] == '-' && i + 10 <= len && !memcmp(p + i, "-----BEGIN", 10)) {
            if (!memmem(p + i, len - i, "-----END", 8)) cut = i;
            break;
        }
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < nf; i++)
            if (f[i].start < cut && f[i].end > cut) {
                cut = f[i].start;
                changed = true;
            }
    }
    while (cut > 0 && ((unsigned char)p[cut] & 0xC0) == 0x80) cut--;
    return cut;
}

static uint64_t outbound_mask(const orch_sentinel *s) {
    uint64_t all = ((UINT64_C(1) << ORCH_K_COUNT) - 1) & ~s->opts.disabled;
    uint64_t secrets = all & ((UINT64_C(1) << ORCH_K_FIRST_PII) - 1);
    if (!s->opts.outbound_redact) return 0;
    return s->opts.outbound_pii ? all : secrets;
}

static int os_release(orch_outstream *os, bool final, nd_buf *out, nd_err *err) {
    const orch_sentinel *s = os->s;
    size_t len = os->pend.len, nf = 0;
    if (!len) return 0;
    uint64_t mask = outbound_mask(s);
    os->scan.len = 0;
    if (nd_buf_append(&os->scan, os->ctx, os->ctx_len) || nd_buf_append(&os->scan, os->pend.data, len))
        return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
    size_t hold = SIZE_MAX;
    if (mask) {
        int rc = scan_mask(s, os->scan.data, os->scan.len, mask, true, final ? NULL : &hold, &os->f, err);
        if (rc) return rc;
        hold = hold == SIZE_MAX ? SIZE_MAX : hold > os->ctx_len ? hold - os->ctx_len : 0;
        /* to pend coordinates; findings wholly inside the released context are done */
        for (size_t i = 0; i < os->f.n; i++) {
            orch_finding g = os->f.v[i];
            if (g.end <= os->ctx_len) continue;
            g.start = g.start > os->ctx_len ? g.start - os->ctx_len : 0;
            g.end -= os->ctx_len;
            os->f.v[nf++] = g;
        }
    }
    size_t cut = final ? len : choose_cut(os, os->f.v, nf, hold);
    if (!cut) return 0;
    const char *p = os->pend.data;
    size_t pos = 0;
    for (size_t i = 0; i < nf && os->f.v[i].start < cut; i++) {
        const orch_finding *g = &os->f.v[i];
        size_t ge = g->end < cut ? g->end : cut;
        if (restore_plain(os, p + pos, g->start - pos, out)) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
        if (orch_map_has_value(os->m, p + g->start, g->end - g->start)) {
            if (nd_buf_append(out, p + g->start, ge - g->start)) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
        } else {
            if (nd_buf_printf(out, "[REDACTED_%s]", kind_names[g->kind])) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
            os->red.by_kind[g->kind]++;
            os->red.total++;
        }
        pos = ge;
    }
    if (restore_plain(os, p + pos, cut - pos, out)) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
    /* keep the released raw tail as context */
    if (cut >= OS_CTX) {
        memcpy(os->ctx, p + cut - OS_CTX, OS_CTX);
        os->ctx_len = OS_CTX;
    } else {
        size_t keep = os->ctx_len + cut > OS_CTX ? OS_CTX - cut : os->ctx_len;
        memmove(os->ctx, os->ctx + os->ctx_len - keep, keep);
        memcpy(os->ctx + keep, p, cut);
        os->ctx_len = keep + cut;
    }
    memmove(os->pend.data, p + cut, len - cut);
    wipe(os->pend.data + len - cut, cut);
    os->pend.len = len - cut;
    return 0;
}

int orch_outstream_push(orch_outstream *os, const char *chunk, size_t n, nd_buf *out, nd_err *err) {
    if (!os || !out || (!chunk && n)) return nd_seterr(err, ND_EINVAL, "outstream_push: NULL argument");
    if (os->finished) return nd_seterr(err, ND_EINVAL, "outstream_push: stream already finished");
    if (!n) return 0;
    if (nd_buf_append(&os->pend, chunk, n)) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
    if (out->data == NULL && nd_buf_append(out, "", 0)) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
    if (os->pend.len <= os->s->opts.stream_tail) return 0;
    return os_release(os, false, out, err);
}

int orch_outstream_finish(orch_outstream *os, nd_buf *out, nd_err *err) {
    if (!os || !out) return nd_seterr(err, ND_EINVAL, "outstream_finish: NULL argument");
    if (os->finished) return 0;
    os->finished = true;
    if (out->data == NULL && nd_buf_append(out, "", 0)) return nd_seterr(err, ND_ENOMEM, "outstream: out of memory");
    return os_release(os, true, out, err);
}

int orch_sentinel_restore(const orch_sentinel *s, const orch_map *m, const char *text, size_t n,
                          nd_buf *out, orch_counts *redacted, nd_err *err) {
    orch_outstream *os = orch_outstream_new(s, m, err);
    if (!os) return err ? err->code : ND_ENOMEM;
    int rc = orch_outstream_push(os, text, n, out, err);
    if (!rc) rc = orch_outstream_finish(os, out, err);
    if (!rc && redacted)
        for (int k = 0; k < ORCH_K_COUNT; k++) {
            redacted->by_kind[k] += os->red.by_kind[k];
            redacted->total += os->red.by_kind[k];
        }
    orch_outstream_free(os);
    return rc;
}
