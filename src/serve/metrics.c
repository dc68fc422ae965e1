/* /metrics in the Prometheus text exposition format (version 0.0.4). */
#include <stdio.h>

#include "serve/srv_internal.h"

void srv_metrics_status_locked(srv_t *s, int status) {
    srv_metrics *m = &s->met;
    if (status >= 200 && status < 300) m->status[0]++;
    else if (status == 400) m->status[1]++;
    else if (status == 401) m->status[2]++;
    else if (status == 404 || status == 405) m->status[3]++;
    else if (status == 413) m->status[4]++;
    else if (status == 429 || status == 503) m->status[5]++;
    else m->status_500++;
}

char *srv_metrics_text(srv_t *s) {
    static const char *const eps[8] = {"chat_completions", "completions", "models", "tokenize", "detokenize", "health", "metrics", "unknown"};
    static const char *const st[6] = {"2xx", "400", "401", "404_405", "413", "429_503"};
    pthread_mutex_lock(&s->mu);
    srv_metrics m = s->met;
    int busy = s->n_busy, q = s->q_len, n = s->n_slots, state = s->state;
    pthread_mutex_unlock(&s->mu);
    double now = nd_time_s(), tps = m.tps;
    if (m.win_t0 > 0 && now - m.win_t0 > 2.0) tps = (double)m.win_tok / (now - m.win_t0); /* idle: decays */
    nd_buf b = {0};
    int rc = 0;
#define P(...) rc |= nd_buf_printf(&b, __VA_ARGS__)
    P("# HELP nindub_requests_total HTTP requests received, by endpoint.\n# TYPE nindub_requests_total counter\n");
    for (int i = 0; i < 8; i++) P("nindub_requests_total{endpoint=\"%s\"} %llu\n", eps[i], (unsigned long long)m.requests[i]);
    P("# HELP nindub_responses_total HTTP responses, by status class.\n# TYPE nindub_responses_total counter\n");
    for (int i = 0; i < 6; i++) P("nindub_responses_total{status=\"%s\"} %llu\n", st[i], (unsigned long long)m.status[i]);
    P("nindub_responses_total{status=\"500\"} %llu\n", (unsigned long long)m.status_500);
    P("# HELP nindub_errors_total Error responses, by type.\n# TYPE nindub_errors_total counter\n");
    P("nindub_errors_total{type=\"invalid_request\"} %llu\n", (unsigned long long)(m.status[1] + m.status[3] + m.status[4]));
    P("nindub_errors_total{type=\"authentication\"} %llu\n", (unsigned long long)m.status[2]);
    P("nindub_errors_total{type=\"unavailable\"} %llu\n", (unsigned long long)m.status[5]);
    P("nindub_errors_total{type=\"server\"} %llu\n", (unsigned long long)m.status_500);
    P("# HELP nindub_prompt_tokens_total Prompt tokens of admitted requests.\n# TYPE nindub_prompt_tokens_total counter\n"
      "nindub_prompt_tokens_total %llu\n", (unsigned long long)m.prompt_tokens);
    P("# HELP nindub_prompt_tokens_cached_total Prompt tokens reused from a slot's cache.\n"
      "# TYPE nindub_prompt_tokens_cached_total counter\nnindub_prompt_tokens_cached_total %llu\n",
      (unsigned long long)m.cached_tokens);
    P("# HELP nindub_generated_tokens_total Tokens generated.\n# TYPE nindub_generated_tokens_total counter\n"
      "nindub_generated_tokens_total %llu\n", (unsigned long long)m.gen_tokens);
    P("# HELP nindub_generation_tokens_per_second Generated tokens/s over the last second of work.\n"
      "# TYPE nindub_generation_tokens_per_second gauge\nnindub_generation_tokens_per_second %.3f\n", tps);
    P("# HELP nindub_spec_drafted_tokens_total Draft tokens proposed and verified (speculative decoding).\n"
      "# TYPE nindub_spec_drafted_tokens_total counter\nnindub_spec_drafted_tokens_total %llu\n",
      (unsigned long long)m.spec_drafted);
    P("# HELP nindub_spec_accepted_tokens_total Draft tokens the target accepted.\n"
      "# TYPE nindub_spec_accepted_tokens_total counter\nnindub_spec_accepted_tokens_total %llu\n",
      (unsigned long long)m.spec_accepted);
    P("# HELP nindub_engine_steps_total Batched forward passes.\n# TYPE nindub_engine_steps_total counter\n"
      "nindub_engine_steps_total %llu\n", (unsigned long long)m.steps);
    P("# HELP nindub_batch_tokens_total Tokens run through the model (prompt + generation).\n"
      "# TYPE nindub_batch_tokens_total counter\nnindub_batch_tokens_total %llu\n", (unsigned long long)m.batch_tokens);
    P("# HELP nindub_engine_busy_seconds_total Time in forward passes and sampling.\n"
      "# TYPE nindub_engine_busy_seconds_total counter\nnindub_engine_busy_seconds_total %.6f\n", m.busy_s);
    P("# HELP nindub_requests_cancelled_total Requests cancelled by a client disconnect.\n"
      "# TYPE nindub_requests_cancelled_total counter\nnindub_requests_cancelled_total %llu\n",
      (unsigned long long)m.cancelled);
    P("# HELP nindub_queue_depth Requests waiting for a slot.\n# TYPE nindub_queue_depth gauge\nnindub_queue_depth %d\n", q);
    P("# HELP nindub_slots_busy Slots running a request.\n# TYPE nindub_slots_busy gauge\nnindub_slots_busy %d\n", busy);
    P("# HELP nindub_slots_total Slots.\n# TYPE nindub_slots_total gauge\nnindub_slots_total %d\n", n);
    P("# HELP nindub_ready 1 when the model is loaded and requests are accepted.\n# TYPE nindub_ready gauge\n"
      "nindub_ready %d\n", state == SRV_READY);
#undef P
    if (rc) {
        nd_buf_free(&b);
        return NULL;
    }
    return b.data;
}
