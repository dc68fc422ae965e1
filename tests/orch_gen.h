/* Synthetic secret values for the orch tests and the sentinel fuzz seeds: random characters
 * in each provider's format (never real keys), payment card numbers with a valid Luhn digit,
 * IBANs with valid check digits. Deterministic per seed.
 *
 *   char v[512]; orch_gen("aws_id", seed, v, sizeof v);  -> 0, or -1 for an unknown name
 */
#ifndef ND_TEST_ORCH_GEN_H
#define ND_TEST_ORCH_GEN_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static inline uint64_t og_next(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static inline const char *og_class(char c) {
    switch (c) {
    case 'U': return "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    case 'A': return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    case 'l': return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    case 'a': return "abcdefghijklmnopqrstuvwxyz";
    case 'h': return "0123456789abcdef";
    case 'H': return "0123456789ABCDEF";
    case 'b': return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    case 'u': return "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    case 'd': return "0123456789";
    case 's': return "!*+-_~^";
    case 'j': return "abcdefghijklmnopqrstuvwxyz0123456789!@#%^&*-_=+";
    }
    return NULL;
}

/* Template: literal text, and %<count><class> for random characters. */
static inline void og_template(const char *t, uint64_t *s, char *out, size_t cap) {
    size_t k = 0;
    while (*t && k + 1 < cap) {
        if (*t == '%' && t[1] >= '0' && t[1] <= '9') {
            unsigned n = 0;
            t++;
            while (*t >= '0' && *t <= '9') n = n * 10 + (unsigned)(*t++ - '0');
            const char *set = og_class(*t++);
            size_t m = set ? strlen(set) : 1;
            for (unsigned i = 0; i < n && k + 1 < cap; i++) out[k++] = set ? set[og_next(s) % m] : '?';
        } else {
            out[k++] = *t++;
        }
    }
    out[k] = 0;
}

static inline char og_luhn_digit(const char *payload) { /* check digit to append */
    size_t n = strlen(payload);
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int c = payload[n - 1 - i] - '0';
        if (!(i & 1)) c = c * 2 > 9 ? c * 2 - 9 : c * 2;
        sum += c;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

static inline void og_card(const char *prefix, int len, uint64_t *s, char *out) {
    int k = (int)strlen(prefix);
    memcpy(out, prefix, (size_t)k);
    while (k < len - 1) out[k++] = (char)('0' + og_next(s) % 10);
    out[k] = 0;
    out[k] = og_luhn_digit(out);
    out[k + 1] = 0;
}

static inline void og_iban(const char *cc, const char *bban_tpl, uint64_t *s, char *out) {
    char bban[40], num[100];
    og_template(bban_tpl, s, bban, sizeof bban);
    snprintf(num, sizeof num, "%s%s00", bban, cc);
    unsigned rem = 0;
    for (const char *p = num; *p; p++) {
        if (*p >= '0' && *p <= '9') rem = (rem * 10 + (unsigned)(*p - '0')) % 97;
        else rem = (rem * 100 + (unsigned)(*p - 'A' + 10)) % 97;
    }
    snprintf(out, 64, "%.2s%02u%.34s", cc, 98 - rem, bban);
}

static inline void og_group4(const char *in, char sep, char *out) {
    size_t k = 0;
    for (size_t i = 0; in[i]; i++) {
        if (i && i % 4 == 0) out[k++] = sep;
        out[k++] = in[i];
    }
    out[k] = 0;
}

static inline int orch_gen(const char *name, uint64_t seed, char *out, size_t cap) {
    static const char *const tpl[][2] = {
        {"aws_id", "AKIA%16U"}, {"aws_asia", "ASIA%16U"}, {"aws_secret", "%40b"},
        {"ghp", "ghp_%36A"}, {"gho", "gho_%36A"}, {"ghs", "ghs_%36A"}, {"ghu", "ghu_%36A"},
        {"ghr", "ghr_%36A"}, {"ghpat", "github_pat_%22A_%59A"}, {"glpat", "glpat-%20A"},
        {"glrt", "glrt-%20A"}, {"gldt", "gldt-%20A"}, {"xoxb", "xoxb-%11d-%13d-%24A"},
        {"xoxp", "xoxp-%11d-%12d-%13d-%32h"}, {"xapp", "xapp-1-A%10U-%13d-%64h"},
        {"slack_hook", "https://hooks.slack.com/services/T%8U/B%10U/%24A"},
        {"sk_live", "sk_live_%24A"}, {"sk_test", "sk_test_%32A"}, {"rk_live", "rk_live_%24A"},
        {"whsec", "whsec_%32A"}, {"openai_proj", "sk-proj-%40uT3BlbkFJ%40u"},
        {"openai_legacy", "sk-%20AT3BlbkFJ%20A"}, {"openai_svc", "sk-svcacct-%60u"},
        {"anthropic", "sk-ant-api03-%93uAA"}, {"google", "AIza%35u"}, {"gocspx", "GOCSPX-%28u"},
        {"azure_acct", "%86b=="}, {"azure_sas", "%43b="}, {"azure_cs", "%3A%1dQ~%34A"},
        {"twilio", "SK%32h"}, {"sendgrid", "SG.%22u.%43u"}, {"npm", "npm_%36A"},
        {"pypi", "pypi-AgEIcHlwaS5vcmc%80u"}, {"hf", "hf_%34l"}, {"discord", "M%25A.%6A.%27u"},
        {"discord_hook", "https://discord.com/api/webhooks/1%17d/%68u"},
        {"telegram", "1%9d:AA%33u"}, {"mailgun", "key-%32h"}, {"dop", "dop_v1_%64h"},
        {"doo", "doo_v1_%64h"}, {"hrku", "HRKU-%60u"}, {"uuid", "%8h-%4h-%4h-%4h-%12h"},
        {"uuid_up", "%8H-%4H-%4H-%4H-%12H"}, {"shpat", "shpat_%32h"}, {"shpss", "shpss_%32h"},
        {"shpca", "shpca_%32h"},
        {"jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ%60u.%43u"},
        {"pem_rsa", "-----BEGIN RSA PRIVATE KEY-----\nMIIE%60b\n%64b\n%64b\n%40b==\n-----END RSA PRIVATE KEY-----"},
        {"pem_openssh", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA%40b\n%64b\n%30b\n"
                        "-----END OPENSSH PRIVATE KEY-----"},
        {"pem_ec", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE%56b\n%64b\n%20b\n-----END EC PRIVATE KEY-----"},
        {"pem_pkcs8", "-----BEGIN PRIVATE KEY-----\nMIIEvQ%58b\n%64b\n-----END PRIVATE KEY-----"},
        {"pem_pkcs8_json", "-----BEGIN PRIVATE KEY-----\\nMIIEvQ%58b\\n%64b\\n-----END PRIVATE KEY-----"},
        {"pwd", "%3l%1s%4A%2d%2l"}, {"tok32", "%32A"}, {"tok40", "%40A"}, {"django", "%1a%49j"},
        {"hex7", "%7h"}, {"hex12", "%12h"}, {"hex32", "%32h"}, {"hex40", "%40h"}, {"hex64", "%64h"},
        {"b64_43", "%43b"}, {"b64_44", "%43b="}, {"b64_64", "%64b"}, {"b64_120", "%120b"},
        {"sha512", "sha512-%86b=="}, {"basic", "YWRtaW46%12b"},
    };
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    og_next(&s);
    for (size_t i = 0; i < sizeof tpl / sizeof tpl[0]; i++)
        if (!strcmp(name, tpl[i][0])) {
            og_template(tpl[i][1], &s, out, cap);
            return 0;
        }
    if (cap < 64) return -1;
    char tmp[64];
    if (!strcmp(name, "visa") || !strcmp(name, "visa_sp")) {
        og_card("4", 16, &s, tmp);
        if (name[4]) og_group4(tmp, ' ', out);
        else strcpy(out, tmp);
        return 0;
    }
    if (!strcmp(name, "mc") || !strcmp(name, "mc_dash")) {
        char pre[3] = {'5', (char)('1' + og_next(&s) % 5), 0};
        og_card(pre, 16, &s, tmp);
        if (name[2]) og_group4(tmp, '-', out);
        else strcpy(out, tmp);
        return 0;
    }
    if (!strcmp(name, "amex")) {
        og_card("37", 15, &s, out);
        return 0;
    }
    if (!strcmp(name, "iban_de") || !strcmp(name, "iban_de_sp")) {
        og_iban("DE", "%18d", &s, tmp);
        if (name[7]) og_group4(tmp, ' ', out);
        else strcpy(out, tmp);
        return 0;
    }
    if (!strcmp(name, "iban_gb")) {
        char b[8];
        og_template("%4a", &s, b, sizeof b);
        for (char *p = b; *p; p++) *p = (char)(*p - 'a' + 'A');
        char t2[32];
        snprintf(t2, sizeof t2, "%s%%14d", b);
        og_iban("GB", t2, &s, out);
        return 0;
    }
    if (!strcmp(name, "iban_nl")) {
        og_iban("NL", "ABNA%10d", &s, out);
        return 0;
    }
    if (!strcmp(name, "ipv4")) {
        static const int first[] = {23, 45, 51, 62, 81, 88, 91, 104, 141, 151, 185, 203, 212};
        snprintf(out, cap, "%d.%d.%d.%d", first[og_next(&s) % 13], (int)(og_next(&s) % 254 + 1),
                 (int)(og_next(&s) % 254 + 1), (int)(og_next(&s) % 254 + 1));
        return 0;
    }
    return -1;
}

#endif
