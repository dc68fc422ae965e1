/* nindub core: a persistent thread pool for data-parallel kernels.
 *
 * nd_pool_run(pool, fn, ctx) calls fn(ctx, ith, nth) once for every ith in [0, nth) — the
 * caller itself runs ith = 0, the pool's workers the rest — and returns when all calls
 * have returned. It is built for many short jobs (hundreds of matrix-vector products per
 * token): workers spin for a short while after a job before they sleep on a futex, so a
 * job that follows quickly starts without a system call.
 *
 * Contract:
 *   - one pool is driven by one thread at a time (nd_pool_run is not reentrant and must
 *     not be called concurrently on the same pool, nor from inside fn);
 *   - fn must not block waiting for another ith (no barriers inside fn): split the work
 *     into several runs instead;
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
/* Runs fn on all threads (see above) and waits. */
void nd_pool_run(nd_pool *p, nd_pool_fn fn, void *ctx);
int nd_pool_size(const nd_pool *p); /* nth; 1 for NULL */

/* Default thread count: the CPUs this process may run on (>= 1). */
int nd_pool_default_threads(void);

#endif
