/* Read-only file mapping, whole-file reads, progress lines. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/nd.h"

int nd_map_open(nd_map *m, const char *path, nd_err *err) {
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nd_seterr(err, ND_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nd_seterr(err, ND_EIO, "%s is not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return nd_seterr(err, ND_EIO, "cannot map %s: %s", path, strerror(e));
        }
        m->data = p;
    }
    m->size = (size_t)st.st_size;
    m->fd = fd;
    return 0;
}

void nd_map_close(nd_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->size = 0;
    m->fd = -1;
}

int nd_read_file(const char *path, char **out, size_t *len, nd_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return nd_seterr(err, ND_EIO, "cannot open %s: %s", path, strerror(errno));
    nd_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (nd_buf_append(&b, chunk, n)) {
            fclose(f);
            nd_buf_free(&b);
            return nd_seterr(err, ND_ENOMEM, "out of memory reading %s", path);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        nd_buf_free(&b);
        return nd_seterr(err, ND_EIO, "read error on %s", path);
    }
    if (!b.data && nd_buf_reserve(&b, 0)) return nd_seterr(err, ND_ENOMEM, "out of memory");
    b.data[b.len] = 0;
    *out = b.data;
    if (len) *len = b.len;
    return 0;
}

/* ---------------------------------------------------------------- progress */

void nd_progress_begin(nd_progress *p, const char *label, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->tty = isatty(STDERR_FILENO);
    p->t_start = nd_time_s();
}

static void progress_draw(nd_progress *p, double now) {
    double frac = p->total ? (double)p->done / (double)p->total : 0;
    if (frac > 1) frac = 1;
    int width = 30, fill = (int)(frac * width + 0.5);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double el = now - p->t_start, eta = frac > 0.001 ? el / frac - el : 0;
    fprintf(stderr, "\r%s [%s] %5.1f%%  %.1fs elapsed, ~%.0fs left  ", p->label, bar, frac * 100,
            el, eta);
    fflush(stderr);
}

void nd_progress_update(nd_progress *p, uint64_t done) {
    p->done = done;
    if (!p->tty) return;
    double now = nd_time_s();
    if (now - p->t_last < 0.1 && done < p->total) return;
    p->t_last = now;
    progress_draw(p, now);
}

void nd_progress_end(nd_progress *p) {
    if (!p->tty) return;
    p->done = p->total;
    progress_draw(p, nd_time_s());
    fputc('\n', stderr);
}
