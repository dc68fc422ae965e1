/* response_format: the bridge to the JSON Schema -> GBNF converter (json_schema.h). */
#include <string.h>

#include "serve/json_schema.h"
#include "serve/srv_internal.h"

int srv_schema_to_gbnf(const char *schema_json, nd_buf *out, nd_err *err) {
    if (!schema_json) return json_schema_any_object_gbnf(out, err);
    return json_schema_to_gbnf(schema_json, strlen(schema_json), out, err);
}
