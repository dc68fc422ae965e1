/* Tokenizer throughput: ~1 MB of generated mixed text (English prose, C and Python code,
 * some non-ASCII) encoded with every vocab in <fixtures>/vocab and the fixture models.
 * Validates first (decode(encode(x)) == x), then times; prints a table and JSON lines
 * with MB/s, token count and an FNV checksum of the ids. Never pass/fail on speed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf/gguf.h"
#include "tokenizer/tok.h"

static const char *const k_prose[] = {
    "The committee met on Tuesday to review the quarterly figures, which showed a modest rise in revenue. ",
    "It's not that we didn't try; we'd simply run out of time, and they'll say so in the report. ",
    "Under a pale October sky, the harbour lights flickered like distant, patient stars.\n",
    "\"Why now?\" she asked. \"Because tomorrow is too late,\" he said, closing the ledger.\n\n",
    "In 1987, about 3,400 people lived there; by 2023 the figure had grown to 12,950 (+281%). ",
};
static const char *const k_code[] = {
    "static int parse_header(const uint8_t *p, size_t n, struct hdr *out) {\n"
    "    if (n < 16) return -EINVAL;\n    memcpy(out, p, sizeof *out);\n"
    "    for (int i = 0; i < 4; i++) out->crc ^= p[i] << (8 * i);\n    return 0;\n}\n\n",
    "def moving_average(xs, k=3):\n    \"\"\"Return the k-point moving average.\"\"\"\n"
    "    out = []\n    for i in range(len(xs) - k + 1):\n        out.append(sum(xs[i:i + k]) / k)\n"
    "    return out  # TODO: numpy\n\n",
    "\t\tif (x->next != NULL && x->next->value >= threshold) { count++; }\n",
};
static const char *const k_intl[] = {
    "Größere Äpfel schmecken süßer, sagt der Bäcker in München. ",
    "Кошка спит на тёплом подоконнике. ",
    "東京の天気は晴れ、気温は二十度です。",
    "北京欢迎你，今天是星期五。",
    "Café crème, naïve façade, coöperate — «quotes» and emoji 🦙🚀✅. ",
    "مرحبا بالعالم ",
};

static void gen_text(nd_buf *b, size_t target) {
    unsigned long long s = 0x243F6A8885A308D3ull;
    while (b->len < target) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        unsigned r = (unsigned)(s >> 33);
        const char *piece;
        if (r % 10 < 5) piece = k_prose[(r / 10) % 5];
        else if (r % 10 < 8) piece = k_code[(r / 10) % 3];
        else piece = k_intl[(r / 10) % 6];
        nd_buf_append(b, piece, strlen(piece));
    }
}

static uint64_t fnv_ids(const int32_t *ids, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint32_t)ids[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void bench_file(const char *path, const char *name, const nd_buf *text) {
    nd_err err = {0};
    gguf_ctx *g = gguf_open(path, &err);
    if (!g) {
        fprintf(stderr, "skip %s: %s\n", name, err.msg);
        return;
    }
    double t0 = nd_time_s();
    tok_vocab *v = tok_load(g, &err);
    double t_load = nd_time_s() - t0;
    gguf_close(g);
    if (!v) {
        fprintf(stderr, "skip %s: %s\n", name, err.msg);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(v, text->data, text->len, false, false, &ids, &n, &err)) {
        fprintf(stderr, "%s: encode failed: %s\n", name, err.msg);
        tok_free(v);
        return;
    }
    char *back;
    size_t bl;
    bool rt = tok_decode(v, ids, n, 0, &back, &bl, &err) == 0 && bl == text->len &&
              memcmp(back, text->data, bl) == 0;
    nd_free(back);
    nd_free(ids);
    double best = 1e30, best_dec = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t = nd_time_s();
        tok_encode(v, text->data, text->len, false, false, &ids, &n, &err);
        t = nd_time_s() - t;
        if (t < best) best = t;
        t = nd_time_s();
        tok_decode(v, ids, n, 0, &back, &bl, &err);
        t = nd_time_s() - t;
        if (t < best_dec) best_dec = t;
        nd_free(back);
        if (rep < 2) nd_free(ids);
    }
    double mb = (double)text->len / 1e6;
    uint64_t ck = fnv_ids(ids, n);
    printf("%-34s %-4s %-15s %9.2f %9.1f %9zu %6.2f  %016llx %s\n", name,
           tok_get_kind(v) == TOK_KIND_SPM ? "spm" : "bpe", tok_pre_name(v)[0] ? tok_pre_name(v) : "-",
           mb / best, mb / best_dec, n, (double)text->len / (double)n, (unsigned long long)ck,
           rt ? "ok" : "ROUNDTRIP-MISMATCH");
    printf("{\"bench\":\"tokenizer\",\"vocab\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"encode_mb_s\":%.3f,"
           "\"decode_mb_s\":%.3f,\"load_ms\":%.2f,\"checksum\":\"%016llx\",\"roundtrip\":%s}\n",
           name, text->len, n, mb / best, mb / best_dec, t_load * 1e3, (unsigned long long)ck,
           rt ? "true" : "false");
    nd_free(ids);
    tok_free(v);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

int main(void) {
    const char *fx = getenv("NINDUB_FIXTURES");
    if (!fx || !*fx) fx = "../shared/fixtures";
    nd_buf text = {0};
    gen_text(&text, 1u << 20);
    printf("tokenizer bench: %zu bytes of mixed prose/code/non-ASCII text\n", text.len);
    printf("%-34s %-4s %-15s %9s %9s %9s %6s  %-16s\n", "vocab", "kind", "pre", "enc MB/s",
           "dec MB/s", "tokens", "B/tok", "checksum");
    const char *dirs[] = {"vocab", "models"};
    int found = 0;
    for (int d = 0; d < 2; d++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%.900s/%s", fx, dirs[d]);
        DIR *dp = opendir(dir);
        if (!dp) continue;
        struct dirent *de;
        while ((de = readdir(dp))) {
            if (!ends_with(de->d_name, ".gguf")) continue;
            /* the synth models share aidreams' vocab: one of them is enough */
            if (d == 1 && strncmp(de->d_name, "aidreams", 8) != 0 &&
                strcmp(de->d_name, "synth-qwen2-q8_0.gguf") != 0 && strcmp(de->d_name, "synth-phi3-q8_0.gguf") != 0)
                continue;
            char path[2048];
            snprintf(path, sizeof path, "%s/%.255s", dir, de->d_name);
            bench_file(path, de->d_name, &text);
            found++;
        }
        closedir(dp);
    }
    if (!found) printf("no vocabularies found under %s (set NINDUB_FIXTURES): skipped\n", fx);
    nd_buf_free(&text);
    return 0;
}
