/* nindub core: a persistent thread pool for data-parallel kernels.
 *
 * nd_pool_run_items(pool, fn, ctx, n) calls fn(ctx, item, n) exactly once for every item
 * in [0, n) and returns when all calls have returned. Items are claimed one at a time by
 * whichever thread comes first — the caller included — so the caller never waits for a
 * worker that has not started (a descheduled worker on a busy machine costs nothing; one
 * that was preempted inside an item still has to finish it). nd_pool_run(pool, fn, ctx)
 * is the same with n = nd_pool_size(pool), for code that splits work by (ith, nth): every
 * ith runs exactly once, but not necessarily on a distinct thread, nor ith 0 on the
 * caller. Built for many short jobs (hundreds of matrix-vector products per token):
 * workers spin for a short while after a job before they sleep on a futex, so a job that
 * follows quickly starts without a system call.
 *
 * Contract:
 *   - one pool is driven by one thread at a time (nd_pool_run* is not reentrant and must
 *     not be called concurrently on the same pool, nor from inside fn);
 *   - fn must not block waiting for another item (no barriers inside fn: the same thread
 *     may run both); split the work into several runs instead;
 *   - per-item state (scratch indexed by ith) is fine: an item runs on one thread at a time;
 *   - a pool of 1 thread runs fn inline and starts no thread.
 */
#ifndef ND_POOL_H
#define ND_POOL_H

#include "core/nd.h"

typedef struct nd_pool nd_pool;
typedef void (*nd_pool_fn)(void *ctx, int ith, int nth);

#define ND_POOL_MAX_THREADS 512

/* n_threads >= 1 (the caller counts as one); starts n_threads - 1 workers.
 * Returns NULL with ND_EINVAL / ND_ENOMEM / ND_EIO (thread creation) in err. */
nd_pool *nd_pool_new(int n_threads, nd_err *err);
/* Stops and joins the workers. NULL is safe. */
void nd_pool_free(nd_pool *p);
/* Runs fn for items 0..n_items-1 (see above) and waits. n_items <= 0: nothing. */
void nd_pool_run_items(nd_pool *p, nd_pool_fn fn, void *ctx, int n_items);
/* nd_pool_run_items with n_items = nd_pool_size(p): fn(ctx, ith, nth) for every ith. */
void nd_pool_run(nd_pool *p, nd_pool_fn fn, void *ctx);
int nd_pool_size(const nd_pool *p); /* nth; 1 for NULL */

/* Default thread count: the CPUs this process may run on (>= 1). */
int nd_pool_default_threads(void);

#endif
