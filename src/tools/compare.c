/* nindub compare: the quantization comparison table in one command.
 *
 *   nindub compare -m a.gguf -m b.gguf ... -f text.txt --ref f16.gguf [-o report.html]
 *                  [-c 512] [--chunks N] [-t N] [-p 512] [-n 128] [-r 3] [--no-speed]
 *
 * For the reference and every model: file size, bits per weight, perplexity on the text;
 * for every model also the KL-divergence from the reference (mean, p99), same-top-1 %, and
 * prompt / generation tokens/s. Prints a Markdown table; with -o also writes a
 * self-contained HTML page with two SVG charts (quality vs size, speed vs size). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pool.h"
#include "gguf/gguf.h"
#include "tools/eval.h"
#include "tools/tools.h"

#define MAX_MODELS 32

typedef struct row {
    const char *path;
    double size_mib, bpw;
    ppl_result q;
    speed_result sp;
    bool is_ref;
} row;

static void usage(FILE *f) {
    fprintf(f, "usage: nindub compare -m a.gguf [-m b.gguf ...] -f text.txt --ref f16.gguf [-o report.html]\n"
               "                      [-c 512] [--chunks N] [-t N] [-p 512] [-n 128] [-r 3] [--no-speed]\n");
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int file_stats(const char *path, double *size_mib, double *bpw, nd_err *err) {
    gguf_ctx *g = gguf_open(path, err);
    if (!g) return err->code;
    uint64_t params = 0, bytes = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        params += g->tensors[i].n_elems;
        bytes += g->tensors[i].nbytes;
    }
    *size_mib = (double)g->map.size / 1048576.0;
    *bpw = params ? 8.0 * (double)bytes / (double)params : 0;
    gguf_close(g);
    return 0;
}

/* ------------------------------------------------------------------- HTML */

static void html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A scatter plot: x = size (MiB), y = value(row), log-scaled y when asked. */
static void svg_chart(FILE *f, const row *rows, int n, const char *title, const char *ylabel,
                      double (*value)(const row *), bool log_y) {
    const double W = 560, H = 340, L = 84, R = 20, T = 40, B = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        double v = value(&rows[i]);
        if (!(v > 0) && log_y) continue;
        if (!isfinite(v)) continue;
        double y = log_y ? log10(v) : v;
        x0 = fmin(x0, rows[i].size_mib);
        x1 = fmax(x1, rows[i].size_mib);
        y0 = fmin(y0, y);
        y1 = fmax(y1, y);
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n", W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", L);
    html_escape(f, title);
    fprintf(f, "</text>\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" stroke=\"#999\"/>\n",
            L, T, W - L - R, H - T - B);
    if (!(x1 >= x0) || !(y1 >= y0)) {
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">no data</text></svg>\n", L + 20, T + 40);
        return;
    }
    if (x1 - x0 < 1e-9) { x0 -= 1; x1 += 1; }
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    double px = (x1 - x0) * 0.08, py = (y1 - y0) * 0.1;
    x0 -= px; x1 += px; y0 -= py; y1 += py;
#define SX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define SY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
    for (int k = 0; k <= 4; k++) { /* ticks */
        double xv = x0 + (x1 - x0) * k / 4, yv = y0 + (y1 - y0) * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%.1f</text>\n", SX(xv),
                H - B + 16, xv);
        double shown = log_y ? pow(10, yv) : yv;
        fprintf(f, fabs(shown) >= 100 ? "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0f</text>\n"
                                      : "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
                L - 6, SY(yv) + 4, shown);
        fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", L, W - R, SY(yv), SY(yv));
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">file size (MiB)</text>\n",
            (L + W - R) / 2, H - 12);
    fprintf(f, "<text x=\"14\" y=\"%.0f\" font-size=\"12\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">",
            (T + H - B) / 2, (T + H - B) / 2);
    html_escape(f, ylabel);
    fputs("</text>\n", f);
    for (int i = 0; i < n; i++) {
        double v = value(&rows[i]);
        if ((log_y && !(v > 0)) || !isfinite(v)) continue;
        double x = SX(rows[i].size_mib), y = SY(log_y ? log10(v) : v);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>", x, y,
                rows[i].is_ref ? "#c0392b" : "#2471a3");
        html_escape(f, base_name(rows[i].path));
        bool right_half = x > L + (W - L - R) * 0.6; /* labels point inwards so they stay inside */
        fprintf(f, "</title></circle>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"%s\">",
                right_half ? x - 8 : x + 8, y + 3.5, right_half ? "end" : "start");
        html_escape(f, base_name(rows[i].path));
        fputs("</text>\n", f);
    }
#undef SX
#undef SY
    fputs("</svg>\n", f);
}

static double v_kld(const row *r) { return r->is_ref ? NAN : r->q.kld_mean; }
static double v_tg(const row *r) { return r->sp.tg_avg; }
static double v_pp(const row *r) { return r->sp.pp_avg; }

static int write_html(const char *path, const row *rows, int n, const char *text, bool speed, nd_err *err) {
    size_t len = strlen(path);
    char *tmp = nd_malloc(len + 16);
    if (!tmp) return nd_seterr(err, ND_ENOMEM, "out of memory");
    snprintf(tmp, len + 16, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = nd_seterr(err, ND_EIO, "cannot write %s: %s", tmp, strerror(errno));
        nd_free(tmp);
        return rc;
    }
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nindub compare</title>\n<style>"
          "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:16px 0}"
          "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#eee}"
          "td:first-child,th:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:24px}"
          "</style></head><body>\n<h1>Quantization comparison</h1>\n<p>Text: ", f);
    html_escape(f, text);
    fputs(". KL-divergence and same-top-1 are measured against the reference model (red).</p>\n<table>\n"
          "<tr><th>model</th><th>size (MiB)</th><th>bpw</th><th>PPL</th><th>mean KLD</th><th>p99 KLD</th>"
          "<th>same top-1</th><th>pp t/s</th><th>tg t/s</th></tr>\n", f);
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        fputs("<tr><td>", f);
        html_escape(f, base_name(r->path));
        if (r->is_ref) fputs(" (reference)", f);
        fprintf(f, "</td><td>%.2f</td><td>%.2f</td><td>%.4f</td>", r->size_mib, r->bpw, r->q.ppl);
        if (r->is_ref) fputs("<td>—</td><td>—</td><td>—</td>", f);
        else fprintf(f, "<td>%.5f</td><td>%.4f</td><td>%.2f%%</td>", r->q.kld_mean, r->q.kld_p99, 100 * r->q.same_top1);
        if (speed) fprintf(f, "<td>%.1f</td><td>%.1f</td></tr>\n", r->sp.pp_avg, r->sp.tg_avg);
        else fputs("<td>—</td><td>—</td></tr>\n", f);
    }
    fputs("</table>\n<div class=\"charts\">\n", f);
    svg_chart(f, rows, n, "Quality vs size", "mean KLD (log scale)", v_kld, true);
    if (speed) {
        svg_chart(f, rows, n, "Generation speed vs size", "tg tokens/s", v_tg, false);
        svg_chart(f, rows, n, "Prompt speed vs size", "pp tokens/s", v_pp, false);
    }
    fputs("</div>\n<p>Made by <code>nindub compare</code>.</p>\n</body></html>\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        remove(tmp);
        int rc = nd_seterr(err, ND_EIO, "writing %s failed", path);
        nd_free(tmp);
        return rc;
    }
    nd_free(tmp);
    return 0;
}

int tool_compare(int argc, char **argv) {
    const char *models[MAX_MODELS], *ref = NULL, *text = NULL, *out = NULL;
    int n_models = 0, threads = 0, reps = 3;
    long n_ctx = 512, chunks = -1, n_prompt = 512, n_gen = 128;
    bool speed = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        char *end = NULL;
        long v = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--no-speed")) { speed = false; continue; }
        if (!has) goto bad;
        const char *val = argv[++i];
        if (!strcmp(a, "-m")) {
            if (n_models == MAX_MODELS) { fprintf(stderr, "nindub compare: at most %d models\n", MAX_MODELS); return 2; }
            models[n_models++] = val;
            continue;
        }
        if (!strcmp(a, "--ref")) { ref = val; continue; }
        if (!strcmp(a, "-f")) { text = val; continue; }
        if (!strcmp(a, "-o")) { out = val; continue; }
        v = strtol(val, &end, 10);
        if (*end || v < 0) goto bad;
        if (!strcmp(a, "-c") && v >= 8) n_ctx = v;
        else if (!strcmp(a, "--chunks") && v >= 1) chunks = v;
        else if (!strcmp(a, "-t") && v >= 1 && v <= ND_POOL_MAX_THREADS) threads = (int)v;
        else if (!strcmp(a, "-p")) n_prompt = v;
        else if (!strcmp(a, "-n")) n_gen = v;
        else if (!strcmp(a, "-r") && v >= 1 && v <= 64) reps = (int)v;
        else goto bad;
        continue;
    bad:
        fprintf(stderr, "nindub compare: bad or incomplete option '%s'\n", a);
        usage(stderr);
        return 2;
    }
    if (!n_models || !ref || !text) {
        usage(stderr);
        return 2;
    }
    row *rows = nd_calloc((size_t)n_models + 1, sizeof *rows);
    char kld_path[64];
    snprintf(kld_path, sizeof kld_path, "/tmp/nindub-compare-%d.kld", (int)getpid());
    nd_err err = {0};
    int rc = 1, n = 0;
    if (!rows) return 1;
    for (int i = 0; i <= n_models; i++) {
        row *r = &rows[n];
        r->path = i == 0 ? ref : models[i - 1];
        r->is_ref = i == 0;
        fprintf(stderr, "nindub compare: %s %s\n", r->is_ref ? "reference" : "model", r->path);
        ppl_opts po = {.model = r->path, .text = text, .n_ctx = n_ctx, .max_chunks = chunks, .threads = threads,
                       .kld_base = r->is_ref ? kld_path : NULL, .kld = r->is_ref ? NULL : kld_path, .progress = true};
        if (file_stats(r->path, &r->size_mib, &r->bpw, &err) || ppl_eval(&po, &r->q, &err) ||
            (speed && bench_speed(r->path, threads, n_prompt, n_gen, reps, &r->sp, &err))) {
            fprintf(stderr, "nindub compare: %s: %s\n", r->path, err.msg);
            goto done;
        }
        n++;
    }
    printf("| model | size (MiB) | bpw | PPL | mean KLD | p99 KLD | same top-1 | pp t/s | tg t/s |\n"
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        printf("| %s%s | %.2f | %.2f | %.4f | ", base_name(r->path), r->is_ref ? " (ref)" : "", r->size_mib, r->bpw,
               r->q.ppl);
        if (r->is_ref) printf("— | — | — | ");
        else printf("%.5f | %.4f | %.2f%% | ", r->q.kld_mean, r->q.kld_p99, 100 * r->q.same_top1);
        if (speed) printf("%.1f | %.1f |\n", r->sp.pp_avg, r->sp.tg_avg);
        else printf("— | — |\n");
    }
    if (out && write_html(out, rows, n, text, speed, &err)) {
        fprintf(stderr, "nindub compare: %s\n", err.msg);
        goto done;
    }
    if (out) fprintf(stderr, "nindub compare: wrote %s\n", out);
    rc = 0;
done:
    remove(kld_path);
    nd_free(rows);
    return rc;
}
