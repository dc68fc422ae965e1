/* Persistent thread pool: generation counter + spin-then-futex wake, atomic completion
 * count. See pool.h for the contract.
 *
 * Protocol. The driver publishes (fn, ctx), sets `pending` to the number of workers and
 * bumps `gen` (seq_cst). A worker that sees a new `gen` runs its share and decrements
 * `pending`. Idle workers spin on `gen` for ~SPIN_NS, then register in `sleepers` and
 * futex-wait on `gen`; the driver only issues a wake syscall when `sleepers` is non-zero.
 * Both sides use seq_cst on (gen, sleepers) so either the driver sees the sleeper or the
 * sleeper's futex_wait sees the new gen (and returns at once). */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/pool.h"

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define SPIN_NS 300000.0 /* how long an idle worker polls before sleeping */

typedef struct nd_worker {
    struct nd_pool *pool;
    int ith;
    pthread_t tid;
} nd_worker;

struct nd_pool {
    int nth;                   /* threads including the driver */
    nd_worker *workers;        /* [nth - 1] */
    _Atomic uint32_t gen;      /* job generation; also the futex word */
    _Atomic int pending;       /* workers that have not finished the current job */
    _Atomic int sleepers;      /* workers inside futex_wait (or about to be) */
    _Atomic bool quit;
    nd_pool_fn fn;             /* current job, published before gen is bumped */
    void *ctx;
#ifndef __linux__
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ------------------------------------------------------------ sleeping */

#ifdef __linux__
static void gen_wait(nd_pool *p, uint32_t seen) {
    syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}
static void gen_wake_all(nd_pool *p) {
    syscall(SYS_futex, (uint32_t *)&p->gen, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
static void gen_wait(nd_pool *p, uint32_t seen) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->gen) == seen) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
static void gen_wake_all(nd_pool *p) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
#endif

/* Waits until gen != seen and returns the new value. */
static uint32_t wait_new_gen(nd_pool *p, uint32_t seen) {
    uint32_t g;
    double t0 = 0;
    for (unsigned spins = 0;; spins++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        if ((spins & 255) != 255) {
            cpu_relax();
            continue;
        }
        double now = nd_time_s();
        if (t0 == 0) t0 = now;
        if ((now - t0) * 1e9 < SPIN_NS) continue;
        atomic_fetch_add(&p->sleepers, 1);
        if (atomic_load(&p->gen) == seen) gen_wait(p, seen);
        atomic_fetch_sub(&p->sleepers, 1);
        t0 = 0;
    }
}

static void *worker_main(void *arg) {
    nd_worker *w = arg;
    nd_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_new_gen(p, seen);
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        p->fn(p->ctx, w->ith, p->nth);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
    return NULL;
}

/* ------------------------------------------------------------------ API */

int nd_pool_default_threads(void) {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

nd_pool *nd_pool_new(int n_threads, nd_err *err) {
    if (n_threads < 1 || n_threads > ND_POOL_MAX_THREADS) {
        nd_seterr(err, ND_EINVAL, "thread count %d out of range 1..%d", n_threads,
                  ND_POOL_MAX_THREADS);
        return NULL;
    }
    nd_pool *p = nd_calloc(1, sizeof *p);
    if (!p) {
        nd_seterr(err, ND_ENOMEM, "out of memory creating a thread pool");
        return NULL;
    }
    p->nth = n_threads;
#ifndef __linux__
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    if (n_threads == 1) return p;
    p->workers = nd_calloc((size_t)n_threads - 1, sizeof *p->workers);
    if (!p->workers) {
        nd_free(p);
        nd_seterr(err, ND_ENOMEM, "out of memory creating a thread pool");
        return NULL;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        nd_worker *w = &p->workers[i];
        w->pool = p;
        w->ith = i + 1;
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc != 0) {
            p->nth = i + 1; /* only join the ones that started */
            nd_pool_free(p);
            nd_seterr(err, ND_EIO, "cannot start thread %d of %d: %s", i + 2, n_threads,
                      strerror(rc));
            return NULL;
        }
    }
    return p;
}

void nd_pool_free(nd_pool *p) {
    if (!p) return;
    if (p->nth > 1) {
        atomic_store(&p->quit, true);
        atomic_fetch_add(&p->gen, 1);
        gen_wake_all(p);
        for (int i = 0; i < p->nth - 1; i++) pthread_join(p->workers[i].tid, NULL);
    }
#ifndef __linux__
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    nd_free(p->workers);
    nd_free(p);
}

int nd_pool_size(const nd_pool *p) { return p ? p->nth : 1; }

void nd_pool_run(nd_pool *p, nd_pool_fn fn, void *ctx) {
    if (!p || p->nth == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->nth - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/ctx/pending */
    if (atomic_load(&p->sleepers) > 0) gen_wake_all(p);
    fn(ctx, 0, p->nth);
    for (unsigned spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0;
         spins++) {
        if (spins < (1u << 16))
            cpu_relax();
        else
            sched_yield(); /* workers descheduled (oversubscribed machine) */
    }
}
