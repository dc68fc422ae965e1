/* libFuzzer target: the server's request JSON handling. The first byte picks the endpoint
 * (chat / completions); the rest is the body. Valid requests must produce a consistent
 * srv_req; invalid ones a 400-class error whose JSON object is well-formed. Response
 * builders run on a fake task built from the request. */
#include <stdlib.h>
#include <string.h>

#include "serve/srv_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    srv_ep ep = data[0] & 1 ? SRV_EP_CHAT : SRV_EP_COMPLETION;
    srv_req r;
    srv_apierr e = {0};
    if (srv_req_parse(&r, ep, (const char *)data + 1, size - 1, &e) != 0) {
        if (e.status < 400 || e.status > 500) abort();
        char *j = srv_error_json(&e);
        cJSON *back = j ? cJSON_Parse(j) : NULL;
        if (j && !cJSON_IsObject(cJSON_GetObjectItem(back, "error"))) abort();
        cJSON_Delete(back);
        nd_free(j);
        return 0;
    }
    if (ep == SRV_EP_CHAT ? r.n_msgs < 1 : !r.prompt && !r.n_prompt_ids) abort();
    if (r.n_stops < 0 || r.n_stops > SRV_MAX_STOPS || r.logprobs > SRV_MAX_TOP_LOGPROBS) abort();
    for (int i = 0; i < r.n_stops; i++)
        if (!r.stops[i] || !*r.stops[i] || strlen(r.stops[i]) > SRV_MAX_STOP_LEN) abort();
    if (r.rf == SRV_RF_JSON_SCHEMA && !r.schema) abort();
    /* response builders on a fake finished task */
    srv_task t;
    memset(&t, 0, sizeof t);
    t.req = r;
    t.model_id = "fuzz";
    strcpy(t.id, "cmpl-fuzz");
    t.text = r.prompt ? r.prompt : (char *)"";
    t.finish = "stop";
    char *fin = srv_json_final(&t);
    cJSON *back = fin ? cJSON_Parse(fin) : NULL;
    if (!cJSON_IsObject(back)) abort(); /* parses: invalid UTF-8 was cleaned */
    cJSON_Delete(back);
    nd_buf sse = {0};
    const char *txt = r.prompt ? r.prompt : "";
    srv_sse_delta(&sse, &t, txt, strlen(txt), true, NULL, NULL);
    srv_sse_usage(&sse, &t);
    srv_sse_done(&sse);
    nd_buf_free(&sse);
    nd_free(fin);
    srv_req_free(&r);
    return 0;
}
