/* nindub info: what a GGUF file holds — metadata, hyper-parameters, tokenizer summary,
 * tensor table, totals. `--json` prints one JSON object for scripts. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tools/tools.h"

static void usage(FILE *f) {
    fprintf(f, "usage: nindub info [--json] [--no-tensors] [--all-keys] model.gguf\n"
               "  --json        one JSON object on stdout\n"
               "  --no-tensors  omit the tensor table\n"
               "  --all-keys    list every metadata key (long arrays are summarised)\n");
}

/* Short text form of a value (arrays summarised). */
static void value_text(const gguf_value *v, char *out, size_t cap) {
    switch (v->type) {
    case GGUF_VT_STRING:
        snprintf(out, cap, "\"%.*s\"", v->str.len > 80 ? 80 : (int)v->str.len, v->str.ptr);
        if (v->str.len > 80 && cap > 4) snprintf(out + strlen(out) - 1, cap - strlen(out) + 1, "…\"");
        for (char *p = out; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
        break;
    case GGUF_VT_ARRAY:
        snprintf(out, cap, "[%llu × %s]", (unsigned long long)v->arr.n, gguf_vtype_name(v->arr.etype));
        break;
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: snprintf(out, cap, "%g", v->f64); break;
    case GGUF_VT_BOOL: snprintf(out, cap, "%s", v->b ? "true" : "false"); break;
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
        snprintf(out, cap, "%lld", (long long)v->i64);
        break;
    default: snprintf(out, cap, "%llu", (unsigned long long)v->u64); break;
    }
}

static cJSON *value_json(const gguf_value *v) {
    switch (v->type) {
    case GGUF_VT_STRING: {
        char *s = nd_strndup(v->str.ptr, v->str.len);
        cJSON *j = cJSON_CreateString(s ? s : "");
        nd_free(s);
        return j;
    }
    case GGUF_VT_ARRAY: {
        if (v->arr.n > 64) { /* summarise long arrays (vocabularies) */
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "array_of", gguf_vtype_name(v->arr.etype));
            cJSON_AddNumberToObject(o, "length", (double)v->arr.n);
            return o;
        }
        cJSON *a = cJSON_CreateArray();
        for (uint64_t i = 0; i < v->arr.n; i++) {
            gguf_value e = {.type = v->arr.etype};
            if (e.type == GGUF_VT_STRING) e.str = v->arr.strs[i];
            else if (e.type == GGUF_VT_ARRAY) e = v->arr.elems[i];
            else if (e.type == GGUF_VT_FLOAT32 || e.type == GGUF_VT_FLOAT64) e.f64 = gguf_arr_f64(&v->arr, i);
            else if (e.type == GGUF_VT_BOOL) e.b = gguf_arr_i64(&v->arr, i) != 0;
            else e.i64 = gguf_arr_i64(&v->arr, i);
            if (e.type == GGUF_VT_UINT64 || e.type == GGUF_VT_UINT32 || e.type == GGUF_VT_UINT16 ||
                e.type == GGUF_VT_UINT8)
                e.u64 = (uint64_t)gguf_arr_i64(&v->arr, i);
            cJSON_AddItemToArray(a, value_json(&e));
        }
        return a;
    }
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: return cJSON_CreateNumber(v->f64);
    case GGUF_VT_BOOL: return cJSON_CreateBool(v->b);
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
        return cJSON_CreateNumber((double)v->i64);
    default: return cJSON_CreateNumber((double)v->u64);
    }
}

static void shape_text(const gguf_tensor *t, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (uint32_t d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(out + n, cap - n, "%s%llu", d ? " x " : "", (unsigned long long)t->ne[d]);
}

static const char *tok_key(const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "tokenizer.ggml.%s", suffix);
    return buf;
}

typedef struct totals {
    uint64_t params, tensor_bytes;
    uint64_t count_by_type[ND_TYPE_COUNT];
} totals;

static void compute_totals(const gguf_ctx *g, totals *t) {
    memset(t, 0, sizeof *t);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        t->params += g->tensors[i].n_elems;
        t->tensor_bytes += g->tensors[i].nbytes;
        t->count_by_type[g->tensors[i].type]++;
    }
}

static int print_json(const gguf_ctx *g, const char *path, bool tensors) {
    totals tt;
    compute_totals(g, &tt);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddNumberToObject(root, "gguf_version", g->version);
    cJSON_AddNumberToObject(root, "file_size", (double)g->map.size);
    cJSON_AddNumberToObject(root, "alignment", (double)g->alignment);
    cJSON_AddNumberToObject(root, "data_offset", (double)g->data_offset);
    cJSON_AddNumberToObject(root, "n_params", (double)tt.params);
    cJSON_AddNumberToObject(root, "tensor_bytes", (double)tt.tensor_bytes);
    cJSON_AddNumberToObject(root, "bits_per_weight",
                            tt.params ? 8.0 * (double)tt.tensor_bytes / (double)tt.params : 0);
    cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
    for (uint64_t i = 0; i < g->n_kv; i++)
        cJSON_AddItemToObject(meta, g->kv[i].key, value_json(&g->kv[i].val));
    if (tensors) {
        cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", t->name);
            cJSON_AddStringToObject(o, "type", nd_type_info(t->type)->name);
            cJSON *shape = cJSON_AddArrayToObject(o, "shape");
            for (uint32_t d = 0; d < t->n_dims; d++)
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
            cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
            cJSON_AddNumberToObject(o, "offset", (double)(g->data_offset + t->offset));
            cJSON_AddItemToArray(arr, o);
        }
    }
    char *s = cJSON_Print(root);
    int rc = s ? 0 : 1;
    if (s) puts(s);
    cJSON_free(s);
    cJSON_Delete(root);
    return rc;
}

static void print_text(const gguf_ctx *g, const char *path, bool tensors, bool all_keys) {
    char buf[256], key[128];
    totals tt;
    compute_totals(g, &tt);
    gguf_str arch = {"", 0}, name = {"", 0};
    gguf_get_str(g, "general.architecture", &arch, NULL);
    gguf_get_str(g, "general.name", &name, NULL);
    printf("file:          %s (%.2f MiB, GGUF v%u, %llu tensors, %llu metadata keys)\n", path,
           (double)g->map.size / 1048576.0, g->version, (unsigned long long)g->n_tensors,
           (unsigned long long)g->n_kv);
    printf("architecture:  %.*s\n", (int)arch.len, arch.ptr);
    if (name.len) printf("name:          %.*s\n", (int)name.len, name.ptr);

    printf("\nhyper-parameters:\n");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const char *k = g->kv[i].key;
        if (arch.len && !strncmp(k, arch.ptr, arch.len) && k[arch.len] == '.') {
            value_text(&g->kv[i].val, buf, sizeof buf);
            printf("  %-40s %s\n", k + arch.len + 1, buf);
        }
    }

    gguf_str model = {"", 0}, pre = {"", 0};
    const gguf_array *toks = NULL, *merges = NULL;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &model, NULL)) {
        gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL);
        gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks, NULL);
        gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, &merges, NULL);
        printf("\ntokenizer:     %.*s%s%.*s, %llu tokens, %llu merges\n", (int)model.len, model.ptr,
               pre.len ? ", pre " : "", (int)pre.len, pre.ptr,
               (unsigned long long)(toks ? toks->n : 0), (unsigned long long)(merges ? merges->n : 0));
        static const char *const ids[] = {"bos_token_id", "eos_token_id", "unknown_token_id",
                                          "padding_token_id", "eot_token_id"};
        for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
            uint32_t id;
            if (!gguf_get_u32(g, tok_key(ids[i], key, sizeof key), &id, NULL)) {
                printf("  %-16s %u", ids[i], id);
                if (toks && id < toks->n)
                    printf("  '%.*s'", (int)(toks->strs[id].len > 40 ? 40 : toks->strs[id].len),
                           toks->strs[id].ptr);
                putchar('\n');
            }
        }
        if (gguf_find(g, "tokenizer.chat_template")) printf("  chat template    present\n");
    }

    if (all_keys) {
        printf("\nmetadata:\n");
        for (uint64_t i = 0; i < g->n_kv; i++) {
            value_text(&g->kv[i].val, buf, sizeof buf);
            printf("  %-44s %-8s %s\n", g->kv[i].key, gguf_vtype_name(g->kv[i].val.type), buf);
        }
    }

    if (tensors) {
        printf("\n%-4s %-40s %-6s %-28s %12s\n", "#", "tensor", "type", "shape", "bytes");
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            shape_text(t, buf, sizeof buf);
            printf("%-4llu %-40s %-6s %-28s %12llu\n", (unsigned long long)i, t->name,
                   nd_type_info(t->type)->name, buf, (unsigned long long)t->nbytes);
        }
    }

    printf("\ntotals: %llu parameters (%.2f M), tensors %.2f MiB, %.3f bits per weight\n",
           (unsigned long long)tt.params, (double)tt.params / 1e6, (double)tt.tensor_bytes / 1048576.0,
           tt.params ? 8.0 * (double)tt.tensor_bytes / (double)tt.params : 0.0);
    printf("types: ");
    for (int i = 0; i < ND_TYPE_COUNT; i++)
        if (tt.count_by_type[i]) printf(" %s×%llu", nd_type_info((uint32_t)i)->name,
                                        (unsigned long long)tt.count_by_type[i]);
    putchar('\n');
}

int tool_info(int argc, char **argv) {
    bool json = false, tensors = true, all_keys = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--no-tensors")) tensors = false;
        else if (!strcmp(argv[i], "--all-keys")) all_keys = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "nindub info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "nindub info: one model file at a time ('%s' is extra)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    nd_err err = {0};
    gguf_ctx *g = gguf_open(path, &err);
    if (!g) {
        fprintf(stderr, "nindub info: %s\n", err.msg);
        return 1;
    }
    int rc = json ? print_json(g, path, tensors) : (print_text(g, path, tensors, all_keys), 0);
    gguf_close(g);
    return rc;
}
