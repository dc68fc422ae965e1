/* nindub plan: will this model fit on this machine, where do its layers go, and how fast
 * will it decode?
 *
 *   nindub plan (-m model.gguf | --preset NAME [--type T]) [--ctx N] [--kv f16|f32]
 *               [--batch N] [--ram 16G] [--vram 0] [--ram-bw 20G] [--vram-bw 200G]
 *               [--disk-bw 2G] [--reserve 1G]
 *
 * Memory: weights (per layer and the rest, from the file's tensor table or the preset's
 * shapes), KV cache (2 × layers × ctx × kv_heads × head_dim × element size), work buffers
 * (activations of one batch, attention scores, logits).
 * Placement, greedy in speed order: output projection and layers to VRAM while they fit,
 * then to RAM (after the KV cache and buffers, keeping --reserve free), the rest streamed
 * from disk each token.
 * Decode speed (the roofline): every token reads each weight once (the embedding only one
 * row) and the KV cache up to the current depth, so
 *   t/token = Σ_tier bytes_tier / bandwidth_tier;  tokens/s = 1 / t.
 * Defaults: RAM from /proc/meminfo (MemAvailable), RAM bandwidth measured as what the
 * engine's decode kernels read per second for this model's weight types (matvec over
 * 256 MiB of each), VRAM 0, disk 2 GB/s.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "quant/quant.h"
#include "tools/presets.h"
#include "tools/tools.h"

#define PLAN_MAX_LAYERS 512

typedef struct shape {
    const char *arch;
    uint32_t n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab;
    uint64_t layer_bytes[PLAN_MAX_LAYERS];
    uint64_t output_bytes;   /* read fully every token */
    uint64_t embd_bytes;     /* only one row read per token (unless tied = output) */
    uint64_t embd_row_bytes;
    uint64_t other_bytes;    /* norms, rope factors */
    uint64_t n_params;
    uint64_t type_bytes[ND_TYPE_COUNT]; /* matrices read every token, by weight type */
    bool tied;
} shape;

static int layer_index(const char *name) {
    return strncmp(name, "blk.", 4) ? -1 : atoi(name + 4);
}

static void add_tensor(shape *s, const char *name, uint32_t type, uint64_t bytes, uint64_t ne0, uint64_t rows,
                       uint64_t elems) {
    int l = layer_index(name);
    s->n_params += elems;
    if (rows > 1 && type < ND_TYPE_COUNT && (strcmp(name, "token_embd.weight") || s->tied))
        s->type_bytes[type] += bytes;
    if (l >= 0 && l < PLAN_MAX_LAYERS) s->layer_bytes[l] += bytes;
    else if (!strcmp(name, "output.weight")) s->output_bytes += bytes;
    else if (!strcmp(name, "token_embd.weight")) {
        s->embd_bytes += bytes;
        s->embd_row_bytes = rows ? bytes / rows : bytes;
    } else s->other_bytes += bytes;
    (void)ne0;
}

typedef struct preset_acc {
    shape *s;
    uint32_t type;
} preset_acc;

static void preset_cb(void *user, const char *name, uint64_t ne0, uint64_t ne1, preset_kind kind) {
    preset_acc *a = user;
    uint32_t t = preset_tensor_type(a->type, ne0, ne1);
    uint64_t rows = ne1 ? ne1 : 1;
    add_tensor(a->s, name, t, q_row_size(t, (int64_t)ne0) * rows, ne0, rows, ne0 * rows);
    (void)kind;
}

static int parse_size(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1e3; end++; break;
    case 'm': case 'M': mul = 1e6; end++; break;
    case 'g': case 'G': mul = 1e9; end++; break;
    case 't': case 'T': mul = 1e12; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B' || *end == 'b') { /* 16GiB, 16GB: binary for i */
        if (*end == 'i') mul = mul == 1e3 ? 1024.0 : mul == 1e6 ? 1048576.0 : mul == 1e9 ? 1073741824.0 : 1099511627776.0;
        end++;
        if (*end == 'B' || *end == 'b') end++;
    }
    if (*end) return -1;
    *out = v * mul;
    return 0;
}

static double mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0;
}

/* The bandwidth decode actually gets with weights of one type: the engine's own
 * matrix-vector product over 256 MiB of them (more than any cache), with the default
 * thread count and kernels, best of three after a warm-up. A plain streaming read would
 * report the hardware's peak, which decode kernels approach more or less closely
 * depending on the type. */
static double measure_type_bw(uint32_t type, nd_pool *pool, const k_kernels *kern, nd_err *err) {
    const int64_t K = 4096; /* a multiple of every block size */
    const size_t row = q_row_size(type, K);
    if (!row) return 0;
    const int64_t N = (int64_t)(((size_t)256 << 20) / row);
    uint8_t *w = nd_malloc(row * (size_t)N);
    float *x = nd_malloc(sizeof(float) * (size_t)K), *y = nd_malloc(sizeof(float) * (size_t)N);
    k_scratch sc = {0};
    double best = 0;
    if (w && x && y) {
        memset(w, 0x11, row * (size_t)N); /* small normal scales and values: any bytes work */
        for (int64_t i = 0; i < K; i++) x[i] = (float)(i % 7) - 3.0f;
        k_env env = {.kern = kern, .pool = pool, .scratch = &sc};
        for (int rep = 0; rep < 4; rep++) {
            double t0 = nd_time_s();
            if (k_matmul(&env, type, w, K, N, x, 1, y, err)) break;
            double bw = (double)(row * (size_t)N) / (nd_time_s() - t0);
            if (rep > 0 && bw > best) best = bw; /* rep 0 warms up (page faults) */
        }
    }
    k_scratch_free(&sc);
    nd_free(w);
    nd_free(x);
    nd_free(y);
    return best;
}

/* Effective RAM bandwidth for this model's mix of weight types: the bytes read per token
 * over the time each type's kernel needs for its share. */
static double measure_ram_bw(const shape *s, nd_err *err) {
    nd_pool *pool = nd_pool_new(nd_pool_default_threads(), err);
    if (!pool) return 10e9;
    k_kernels kern;
    k_select(&kern, K_ISA_BEST);
    double bytes = 0, secs = 0;
    for (uint32_t t = 0; t < ND_TYPE_COUNT; t++) {
        if (!s->type_bytes[t]) continue;
        double bw = measure_type_bw(t, pool, &kern, err);
        if (bw <= 0) continue;
        bytes += (double)s->type_bytes[t];
        secs += (double)s->type_bytes[t] / bw;
    }
    nd_pool_free(pool);
    return secs > 0 ? bytes / secs : 10e9;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nindub plan (-m model.gguf | --preset NAME [--type T]) [options]\n"
               "  --ctx N        context length (default 4096)\n"
               "  --kv f16|f32   KV cache type (default f16)\n"
               "  --batch N      prompt batch (default 512)\n"
               "  --ram SIZE     RAM to use (default: MemAvailable)   --reserve SIZE (default 1G)\n"
               "  --vram SIZE    GPU memory (default 0)\n"
               "  --ram-bw B     RAM read bandwidth in bytes/s (default: measured)\n"
               "  --vram-bw B    (default 200G)   --disk-bw B (default 2G)\n"
               "  sizes take k/M/G/T suffixes (GiB = binary): --ram 16G, --ram-bw 25G\n"
               "presets:");
    preset_print_names(f);
    fputc('\n', f);
}

static const char *human(double b, char *buf, size_t cap) {
    if (b >= 1073741824.0) snprintf(buf, cap, "%.2f GiB", b / 1073741824.0);
    else snprintf(buf, cap, "%.1f MiB", b / 1048576.0);
    return buf;
}

int tool_plan(int argc, char **argv) {
    const char *path = NULL, *pname = NULL, *tname = "q4_0";
    double ctx = 4096, batch = 512, ram = -1, vram = 0, ram_bw = -1, vram_bw = 200e9, disk_bw = 2e9,
           reserve = 1e9;
    uint32_t kv = ND_TYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        double *num = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") && has) { path = argv[++i]; continue; }
        else if (!strcmp(a, "--preset") && has) { pname = argv[++i]; continue; }
        else if (!strcmp(a, "--type") && has) { tname = argv[++i]; continue; }
        else if (!strcmp(a, "--kv") && has) {
            const char *k = argv[++i];
            if (!strcmp(k, "f16")) kv = ND_TYPE_F16;
            else if (!strcmp(k, "f32")) kv = ND_TYPE_F32;
            else { fprintf(stderr, "nindub plan: --kv wants f16 or f32\n"); return 2; }
            continue;
        }
        else if (!strcmp(a, "--ctx")) num = &ctx;
        else if (!strcmp(a, "--batch")) num = &batch;
        else if (!strcmp(a, "--ram")) num = &ram;
        else if (!strcmp(a, "--vram")) num = &vram;
        else if (!strcmp(a, "--ram-bw")) num = &ram_bw;
        else if (!strcmp(a, "--vram-bw")) num = &vram_bw;
        else if (!strcmp(a, "--disk-bw")) num = &disk_bw;
        else if (!strcmp(a, "--reserve")) num = &reserve;
        if (!num || !has || parse_size(argv[++i], num)) {
            fprintf(stderr, "nindub plan: bad or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!path == !pname || ctx < 1 || batch < 1 || ctx > 1e8 || (ram_bw == 0) || disk_bw <= 0 ||
        (vram > 0 && vram_bw <= 0)) {
        if (!path == !pname) fprintf(stderr, "nindub plan: give a model file (-m) or a preset (--preset)\n");
        else fprintf(stderr, "nindub plan: --ctx/--batch must be >= 1 and bandwidths > 0\n");
        usage(stderr);
        return 2;
    }
    shape *s = nd_calloc(1, sizeof *s);
    if (!s) return 1;
    model_t *m = NULL;
    nd_err err = {0};
    char name[256];
    if (path) {
        if (!(m = model_load(path, &err))) {
            fprintf(stderr, "nindub plan: %s\n", err.msg);
            nd_free(s);
            return 1;
        }
        const model_hparams *h = &m->hp;
        *s = (shape){.arch = h->arch_name, .n_layer = (uint32_t)h->n_layer, .n_embd = (uint32_t)h->n_embd,
                     .n_head = (uint32_t)h->n_head, .n_head_kv = (uint32_t)h->n_head_kv,
                     .head_dim = (uint32_t)h->head_dim_k, .n_ff = (uint32_t)h->n_ff,
                     .n_vocab = (uint32_t)h->n_vocab, .tied = m->tied_output};
        for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
            const gguf_tensor *t = &m->gguf->tensors[i];
            add_tensor(s, t->name, t->type, t->nbytes, t->ne[0], t->n_elems / t->ne[0], t->n_elems);
        }
        snprintf(name, sizeof name, "%s", path);
    } else {
        const preset *p = preset_find(pname);
        int t = nd_type_from_name(tname);
        if (!p || t < 0 || !q_is_weight_type((uint32_t)t)) {
            fprintf(stderr, "nindub plan: unknown %s '%s'\n", p ? "type" : "preset", p ? tname : pname);
            nd_free(s);
            return 2;
        }
        *s = (shape){.arch = p->arch, .n_layer = p->layers, .n_embd = p->dim, .n_head = p->heads,
                     .n_head_kv = p->kv_heads, .head_dim = p->head_dim, .n_ff = p->ffn, .n_vocab = p->vocab,
                     .tied = p->tied};
        preset_acc acc = {s, (uint32_t)t};
        preset_tensors(p, p->layers, p->vocab, preset_cb, &acc);
        snprintf(name, sizeof name, "preset %s, %s", pname, tname);
    }
    if (s->n_layer > PLAN_MAX_LAYERS) {
        fprintf(stderr, "nindub plan: %u layers is more than this planner handles (%d)\n", s->n_layer, PLAN_MAX_LAYERS);
        model_free(m);
        nd_free(s);
        return 1;
    }
    if (ram < 0) ram = mem_available();
    bool measured = ram_bw < 0;
    if (measured) ram_bw = measure_ram_bw(s, &err);

    /* memory */
    double kv_elt = kv == ND_TYPE_F16 ? 2 : 4;
    double kv_layer = 2.0 * ctx * s->n_head_kv * s->head_dim * kv_elt;
    double kv_total = kv_layer * s->n_layer;
    double q_dim = (double)s->n_head * s->head_dim;
    double work = 4.0 * batch * (3 * s->n_embd + 2 * q_dim + 3 * (double)s->n_ff) + /* activations */
                  4.0 * batch * s->n_head * ctx +                                 /* attention scores */
                  4.0 * s->n_vocab * (batch > 1 ? 1 : 1) +                        /* logits of the last token */
                  (double)batch * s->n_ff * 1.125;                                /* quantized activations */
    double weights = 0;
    for (uint32_t l = 0; l < s->n_layer; l++) weights += (double)s->layer_bytes[l];
    double out_b = s->tied ? (double)s->embd_bytes : (double)s->output_bytes;
    double embd_b = s->tied ? 0 : (double)s->embd_bytes;
    weights += out_b + embd_b + (double)s->other_bytes;

    /* placement: output first (read every token), then layers, into VRAM, then RAM */
    double vram_left = vram, ram_left = ram - reserve - kv_total - work - embd_b - (double)s->other_bytes;
    double per_tok[3] = {0, 0, 0}; /* bytes read per token from vram, ram, disk */
    int tier_out = 2, n_vram = 0, n_ram = 0, n_disk = 0;
    if (out_b <= vram_left) { vram_left -= out_b; tier_out = 0; }
    else if (out_b <= ram_left) { ram_left -= out_b; tier_out = 1; }
    per_tok[tier_out] += out_b;
    per_tok[1] += (double)s->embd_row_bytes;
    int tier_of_layer[PLAN_MAX_LAYERS];
    for (uint32_t l = 0; l < s->n_layer; l++) {
        double b = (double)s->layer_bytes[l];
        int tier = 2;
        if (b <= vram_left) { vram_left -= b; tier = 0; n_vram++; }
        else if (b <= ram_left) { ram_left -= b; tier = 1; n_ram++; }
        else n_disk++;
        tier_of_layer[l] = tier;
        per_tok[tier] += b;
    }
    double bw[3] = {vram_bw, ram_bw, disk_bw};
    double t_weights = 0;
    for (int i = 0; i < 3; i++)
        if (per_tok[i] > 0) t_weights += per_tok[i] / bw[i];
    /* the KV cache lives in RAM (or VRAM with its layer); read up to the current depth */
    double t_kv_full = kv_total / ram_bw, t_kv_half = t_kv_full / 2;

    char b1[32], b2[32], b3[32], b4[32];
    printf("plan for %s\n", name);
    printf("  %s, %u layers, dim %u, %u heads (%u KV, head dim %u), ffn %u, vocab %u, %.1f M parameters\n", s->arch,
           s->n_layer, s->n_embd, s->n_head, s->n_head_kv, s->head_dim, s->n_ff, s->n_vocab, (double)s->n_params / 1e6);
    printf("\nmemory\n");
    printf("  %-34s %12s\n", "weights", human(weights, b1, sizeof b1));
    printf("  %-34s %12s  (per layer %s)\n", "  of which layers", human(weights - out_b - embd_b - (double)s->other_bytes, b1, sizeof b1),
           human(s->n_layer ? (weights - out_b - embd_b - (double)s->other_bytes) / s->n_layer : 0, b2, sizeof b2));
    printf("  %-34s %12s%s\n", "  output projection", human(out_b, b1, sizeof b1), s->tied ? " (tied to the embedding)" : "");
    if (!s->tied) printf("  %-34s %12s\n", "  token embedding", human(embd_b, b1, sizeof b1));
    printf("  %-34s %12s  (ctx %.0f, %s)\n", "KV cache", human(kv_total, b1, sizeof b1), ctx, nd_type_info(kv)->name);
    printf("  %-34s %12s  (batch %.0f)\n", "work buffers", human(work, b1, sizeof b1), batch);
    printf("  %-34s %12s\n", "total", human(weights + kv_total + work, b1, sizeof b1));
    printf("\nmachine\n");
    printf("  RAM   %s usable (%s kept free), read %.1f GB/s%s\n", human(ram, b1, sizeof b1), human(reserve, b2, sizeof b2),
           ram_bw / 1e9, measured ? " (measured: the engine's matvec on this model's weight types, all threads)" : "");
    printf("  VRAM  %s, read %.1f GB/s\n", human(vram, b1, sizeof b1), vram_bw / 1e9);
    printf("  disk  read %.1f GB/s\n", disk_bw / 1e9);
    printf("\nplacement\n");
    printf("  %-10s %8s %14s %14s\n", "tier", "layers", "bytes/token", "time/token");
    const char *tn[3] = {"VRAM", "RAM", "disk"};
    int nl[3] = {n_vram, n_ram, n_disk};
    for (int i = 0; i < 3; i++)
        printf("  %-10s %8d %14s %11.2f ms%s\n", tn[i], nl[i], human(per_tok[i], b3, sizeof b3),
               per_tok[i] > 0 ? 1e3 * per_tok[i] / bw[i] : 0.0, tier_out == i ? "  + output projection" : "");
    if (n_disk) {
        int first = -1;
        for (uint32_t l = 0; l < s->n_layer && first < 0; l++)
            if (tier_of_layer[l] == 2) first = (int)l;
        printf("  layers from %d on are streamed from disk each token: expect the disk to set the pace\n", first);
    }
    printf("\nprediction (decode, bandwidth roofline)\n");
    printf("  empty context   %8.1f tokens/s\n", 1.0 / t_weights);
    printf("  half context    %8.1f tokens/s\n", 1.0 / (t_weights + t_kv_half));
    printf("  full context    %8.1f tokens/s\n", 1.0 / (t_weights + t_kv_full));
    bool fits = n_disk == 0 && tier_out != 2 && ram_left >= 0;
    printf("\nverdict: %s\n", fits ? (n_vram == (int)s->n_layer && tier_out == 0 ? "fits in VRAM" : "fits in memory")
                                   : "does not fit in memory: layers stream from disk (works, slowly)");
    (void)b4;
    model_free(m);
    nd_free(s);
    return 0;
}
