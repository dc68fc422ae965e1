/* Persistent thread pool: generation counter + spin-then-futex wake, work items claimed
 * through one atomic word. See pool.h for the contract.
 *
 * Protocol. A job is n_items calls fn(ctx, item, n_items). The driver publishes (fn, ctx,
 * n_items), resets `done`, stores `claim` = (job << 32 | 0) and bumps `gen` (seq_cst, the
 * futex word). Every thread — the driver included — claims items by CAS on `claim`: the
 * high half must still be the job it woke for, the low half is the next item. The driver
 * returns once `done` == n_items, so it never waits for a worker that has not started:
 * a descheduled worker that wakes late finds the job closed (a later job number in
 * `claim`, or no item left) and touches nothing of it. fn/ctx/n_items are read after the
 * claim word was seen with the job number and before the CAS that proves the job was
 * still open; a CAS that fails discards them.
 * Idle workers spin on `gen` for ~SPIN_NS, then register in `sleepers` and futex-wait on
 * `gen`; the driver only issues a wake syscall when `sleepers` is non-zero. Both sides use
 * seq_cst on (gen, sleepers) so either the driver sees the sleeper or the sleeper's
 * futex_wait sees the new gen (and returns at once). */
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
    _Atomic uint64_t claim;    /* job number << 32 | next unclaimed item */
    _Atomic int done;          /* items of the current job that have returned */
    _Atomic int sleepers;      /* workers inside futex_wait (or about to be) */
    _Atomic bool quit;
    _Atomic(nd_pool_fn) fn;    /* current job (relaxed: ordered by `claim`) */
    _Atomic(void *) ctx;
    _Atomic int n_items;
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

/* Claims and runs items of job `job` until none is left or the job is gone. */
static void run_items(nd_pool *p, uint32_t job) {
    uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(c >> 32) != job) return;
        const nd_pool_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *const ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        const int n = atomic_load_explicit(&p->n_items, memory_order_relaxed);
        const int item = (int)(uint32_t)c;
        if (item >= n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acquire,
                                                   memory_order_acquire))
            continue; /* c reloaded */
        fn(ctx, item, n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        c = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    nd_worker *w = arg;
    nd_pool *p = w->pool;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_new_gen(p, seen);
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        run_items(p, seen);
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
        atomic_store(&p->claim, 0); /* no job: late claims fail */
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

void nd_pool_run_items(nd_pool *p, nd_pool_fn fn, void *ctx, int n_items) {
    if (n_items <= 0) return;
    if (!p || p->nth == 1 || n_items == 1) {
        for (int i = 0; i < n_items; i++) fn(ctx, i, n_items);
        return;
    }
    const uint32_t job = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->n_items, n_items, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)job << 32, memory_order_release);
    atomic_store(&p->gen, job); /* seq_cst: wakes spinners, pairs with `sleepers` */
    if (atomic_load(&p->sleepers) > 0) gen_wake_all(p);
    run_items(p, job);
    for (unsigned spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_items;
         spins++) {
        if (spins < (1u << 16))
            cpu_relax();
        else
            sched_yield(); /* a worker holding an item was descheduled */
    }
}

void nd_pool_run(nd_pool *p, nd_pool_fn fn, void *ctx) {
    nd_pool_run_items(p, fn, ctx, nd_pool_size(p));
}
