/* nindub serve: JSON Schema -> GBNF grammar (for response_format / structured outputs).
 *
 * Supported: type (string, number, integer, boolean, null, object, array, or a list of
 * them), properties + required, additionalProperties (false / true / a schema), enum, const,
 * items + minItems / maxItems, string minLength / maxLength, anyOf / oneOf (alternation;
 * oneOf's "exactly one" is not enforced), allOf with one member, $ref to "#", "#/definitions/…"
 * and "#/$defs/…" (recursion allowed), boolean schemas `true`, nested schemas.
 *
 * Choices (documented differences from the letter of JSON Schema):
 *  - Properties come out in the order of "properties"; optional ones may be left out.
 *  - additionalProperties defaults to false when "properties" is given (the model should
 *    produce the declared keys only) and to true otherwise ({"type":"object"} is any object).
 *    Extra keys, when allowed, come after the declared ones.
 *  - "required" names that "properties" does not declare are required with any value.
 *  - Numbers: at most 16 integer and 16 fraction digits; exponents without leading zeros.
 *  - Strings: \u escapes of lone surrogates (\uD800-\uDFFF) are not produced (not valid
 *    I-JSON); other characters come raw or escaped. "format" is an annotation (ignored),
 *    as the specification allows.
 *  - Whitespace between tokens is limited like llama.cpp's converter: nothing, one space,
 *    or a newline and up to 20 spaces/tabs; none before the value or after the root.
 * Keywords that would restrict the language and are not implemented (pattern, minimum,
 * maximum, multipleOf, prefixItems, uniqueItems, not, if/then/else, minProperties …) are
 * refused with ND_EUNSUPPORTED naming the keyword and its JSON pointer, so the server can
 * answer 400 instead of producing output that does not validate. Unknown keywords are
 * ignored (annotations).
 */
#ifndef ND_JSON_SCHEMA_H
#define ND_JSON_SCHEMA_H

#include <stddef.h>

#include "core/nd.h"

struct cJSON;

/* Appends the GBNF grammar (start rule "root") for the schema text[0..len) to out.
 * Errors: ND_EFORMAT (not JSON, a schema that is not an object/boolean, malformed keyword
 * values: message gives the JSON pointer), ND_EUNSUPPORTED (see above), ND_ENOTFOUND (a
 * $ref that does not resolve), ND_ERANGE (bounds above GRAMMAR_MAX_REPEAT, nesting deeper
 * than 64), ND_ENOMEM. On failure out is left as it was. */
int json_schema_to_gbnf(const char *text, size_t len, struct nd_buf *out, nd_err *err);
/* Same from a parsed schema (cJSON owned by the caller). */
int json_schema_to_gbnf_cjson(const struct cJSON *schema, struct nd_buf *out, nd_err *err);
/* Grammar of any JSON object (response_format {"type": "json_object"}). */
int json_schema_any_object_gbnf(struct nd_buf *out, nd_err *err);

#endif
