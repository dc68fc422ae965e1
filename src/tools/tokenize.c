/* nindub tokenize: text -> token ids and pieces, or (--ids) ids -> text. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/tok.h"
#include "tools/tools.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nindub tokenize -m MODEL.gguf [options] [TEXT]\n"
            "  -m, --model FILE     GGUF file with tokenizer metadata\n"
            "  -f, --file FILE      read the text from FILE (\"-\" = stdin)\n"
            "      --no-bos         do not add BOS/EOS even if the vocab asks for them\n"
            "      --parse-special  match control-token text such as <s> as the token\n"
            "      --json           print {\"ids\": [...], \"pieces\": [...]} \n"
            "      --count          print only the number of tokens\n"
            "      --ids \"1 2 3\"    decode these ids to text instead\n"
            "  -h, --help           this help\n");
}

/* Print a piece quoted, with control and non-UTF-8 bytes escaped. */
static void print_piece(const char *s, size_t n) {
    putchar('\'');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int k = c < 0x80 ? 1 : nd_utf8_seq_len((const uint8_t *)s + i, n - i);
        if (k > 1) {
            fwrite(s + i, 1, (size_t)k, stdout);
            i += (size_t)k;
            continue;
        }
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c == '\'') fputs("\\'", stdout);
        else if (c < 0x20 || c >= 0x7f) printf("\\x%02x", c);
        else putchar(c);
        i++;
    }
    putchar('\'');
}

static int parse_id_list(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) {
            free(ids);
            return -1;
        }
        if (k == cap) {
            int32_t *t = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!t) {
                free(ids);
                return -1;
            }
            ids = t;
        }
        ids[k++] = (int32_t)x;
        p = end;
    }
    *out = ids;
    *n = k;
    return 0;
}

static int read_text(const char *file, char **text, size_t *len) {
    if (strcmp(file, "-") != 0) {
        nd_err err = {0};
        if (nd_read_file(file, text, len, &err)) {
            fprintf(stderr, "nindub tokenize: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    nd_buf b = {0};
    char chunk[65536];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (nd_buf_append(&b, chunk, r)) {
            nd_buf_free(&b);
            fprintf(stderr, "nindub tokenize: out of memory reading stdin\n");
            return 1;
        }
    if (nd_buf_append(&b, "", 0)) return 1;
    *text = b.data;
    *len = b.len;
    return 0;
}

static int decode_ids(const tok_vocab *v, const char *list) {
    int32_t *ids;
    size_t n;
    if (parse_id_list(list, &ids, &n)) {
        fprintf(stderr, "nindub tokenize: --ids wants integers separated by spaces or commas\n");
        return 2;
    }
    char *out;
    size_t len;
    nd_err err = {0};
    int rc = tok_decode(v, ids, n, 0, &out, &len, &err);
    free(ids);
    if (rc) {
        fprintf(stderr, "nindub tokenize: %s\n", err.msg);
        return 1;
    }
    fwrite(out, 1, len, stdout);
    putchar('\n');
    nd_free(out);
    return 0;
}

static int print_tokens(const tok_vocab *v, const int32_t *ids, size_t n, bool json) {
    if (!json) {
        for (size_t i = 0; i < n; i++) {
            const char *s;
            size_t k;
            tok_piece_view(v, ids[i], true, &s, &k);
            printf("%6d\t", ids[i]);
            print_piece(s, k);
            putchar('\n');
        }
        return 0;
    }
    cJSON *root = cJSON_CreateObject(), *jids = cJSON_AddArrayToObject(root, "ids");
    cJSON *jp = cJSON_AddArrayToObject(root, "pieces");
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t k;
        tok_piece_view(v, ids[i], true, &s, &k);
        cJSON_AddItemToArray(jids, cJSON_CreateNumber(ids[i]));
        /* cJSON wants NUL-terminated UTF-8; byte pieces of partial characters are shown as
         * their token text instead */
        const char *t = nd_utf8_valid(s, k) && !memchr(s, 0, k) ? s : tok_text(v, ids[i], NULL);
        cJSON_AddItemToArray(jp, cJSON_CreateString(t));
    }
    char *str = cJSON_PrintUnformatted(root);
    if (str) puts(str);
    cJSON_free(str);
    cJSON_Delete(root);
    return str ? 0 : 1;
}

int tool_tokenize(int argc, char **argv) {
    enum { O_NO_BOS = 256, O_PARSE, O_JSON, O_COUNT, O_IDS };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"file", required_argument, NULL, 'f'},
        {"no-bos", no_argument, NULL, O_NO_BOS}, {"parse-special", no_argument, NULL, O_PARSE},
        {"json", no_argument, NULL, O_JSON},     {"count", no_argument, NULL, O_COUNT},
        {"ids", required_argument, NULL, O_IDS}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *file = NULL, *id_list = NULL;
    bool no_bos = false, parse_special = false, json = false, count = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "m:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case O_NO_BOS: no_bos = true; break;
        case O_PARSE: parse_special = true; break;
        case O_JSON: json = true; break;
        case O_COUNT: count = true; break;
        case O_IDS: id_list = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "nindub tokenize: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    int n_text = argc - optind;
    if (!model) {
        fprintf(stderr, "nindub tokenize: -m MODEL.gguf is required\n");
        usage(stderr);
        return 2;
    }
    if (!id_list && ((file && n_text) || (!file && n_text != 1))) {
        fprintf(stderr, "nindub tokenize: give exactly one TEXT argument or -f FILE\n");
        usage(stderr);
        return 2;
    }
    if (id_list && (file || n_text)) {
        fprintf(stderr, "nindub tokenize: --ids cannot be combined with TEXT or -f\n");
        return 2;
    }
    nd_err err = {0};
    gguf_ctx *g = gguf_open(model, &err);
    if (!g) {
        fprintf(stderr, "nindub tokenize: %s\n", err.msg);
        return 1;
    }
    tok_vocab *v = tok_load(g, &err);
    gguf_close(g);
    if (!v) {
        fprintf(stderr, "nindub tokenize: %s: %s\n", model, err.msg);
        return 1;
    }
    int rc;
    if (id_list) {
        rc = decode_ids(v, id_list);
        tok_free(v);
        return rc;
    }
    char *text = NULL;
    size_t len;
    if (file) {
        if (read_text(file, &text, &len)) {
            tok_free(v);
            return 1;
        }
    } else {
        len = strlen(argv[optind]);
    }
    int32_t *ids;
    size_t n;
    rc = tok_encode(v, text ? text : argv[optind], len, !no_bos, parse_special, &ids, &n, &err);
    nd_free(text);
    if (rc) {
        fprintf(stderr, "nindub tokenize: %s\n", err.msg);
        tok_free(v);
        return 1;
    }
    if (count) printf("%zu\n", n);
    else rc = print_tokens(v, ids, n, json);
    nd_free(ids);
    tok_free(v);
    return rc;
}
