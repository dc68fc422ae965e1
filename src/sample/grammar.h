/* nindub grammar: GBNF grammars (llama.cpp syntax) and grammar-constrained sampling.
 *
 * Syntax (one rule per line; a rule continues after `::=`, after `|`, inside parentheses and
 * on following lines that start with `|`):
 *
 *   root   ::= object            # comments run to the end of the line
 *   object ::= "{" ws ( pair ("," ws pair)* )? "}"
 *   pair   ::= [a-z_]+ ":" ws [0-9]{1,3}
 *   ws     ::= [ \t\n]*
 *
 *   "lit"      string literal; escapes \n \t \r \\ \" \[ \] \- \xHH \uHHHH \UHHHHHHHH
 *   [a-z0-9_]  character class (ranges, escapes as above), [^"\\] negated, . any character
 *   name       rule reference (letters, digits, '-', '_')
 *   ( ... )    group; a | b alternation; x* x+ x? x{m} x{m,} x{m,n} x{,n} repetition
 *              (bounds <= GRAMMAR_MAX_REPEAT; the repeated item is the last literal, class,
 *              reference or group)
 *
 * Grammars are over Unicode code points; the text must be valid UTF-8.
 *
 * Matching is a pushdown automaton kept as a set of stacks (like llama.cpp): each stack
 * holds the positions still to match, its top is always a character class (or it is empty:
 * the root rule is complete). Right recursion and nullable repetitions are fine; left
 * recursion that would grow the stack without consuming input (`a ::= a "x" | "y"`) is
 * rejected at parse time. Very ambiguous grammars can still make the stack set large:
 * advancing fails with ND_ERANGE past GRAMMAR_MAX_STACKS stacks or GRAMMAR_MAX_DEPTH
 * positions in one stack (the accept checks then say false).
 *
 * Token bytes may end inside a UTF-8 sequence (byte-level BPE splits characters): the state
 * carries the incomplete sequence and only accepts it if some character it may start is
 * allowed. End-of-generation tokens are allowed exactly when grammar_state_done().
 *
 * Ownership: a grammar is immutable after grammar_parse and may be shared by any number of
 * states and threads; a state belongs to one sequence (not thread-safe) and must not outlive
 * its grammar. Functions taking a const state never modify it.
 */
#ifndef ND_GRAMMAR_H
#define ND_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/nd.h"
#include "sample/sample.h"
#include "tokenizer/tok.h"

#define GRAMMAR_MAX_REPEAT 10000     /* largest m / n in x{m,n} */
#define GRAMMAR_MAX_ELEMS (1u << 22) /* elements after lowering repetitions */
#define GRAMMAR_MAX_STACKS 2048      /* stacks in one state */
#define GRAMMAR_MAX_DEPTH 8192       /* positions in one stack */

typedef struct grammar grammar;
typedef struct grammar_state grammar_state;

/* Parses GBNF text[0..len) (NUL bytes are errors). root: start rule name (NULL: "root").
 * Errors (NULL returned, message "line L:C: ..."):
 *   ND_EFORMAT  syntax errors (empty grammar, unbalanced parentheses, bad escape, bad or
 *               reversed repetition bounds, trailing garbage after a rule, invalid UTF-8,
 *               undefined rule, missing root rule, rule defined twice, left recursion);
 *   ND_ERANGE   grammar too large after expanding repetitions;
 *   ND_ENOMEM.
 * Free with grammar_free. */
grammar *grammar_parse(const char *text, size_t len, const char *root, nd_err *err);
void grammar_free(grammar *g); /* NULL is fine */
/* Number of rules after lowering (groups and repetitions become rules); for tests. */
uint32_t grammar_n_rules(const grammar *g);

/* A fresh state at the start of the root rule. Free with grammar_state_free. */
grammar_state *grammar_state_new(const grammar *g, nd_err *err);
/* An independent copy (for speculative decoding: advance the copy, drop it on rejection). */
grammar_state *grammar_state_clone(const grammar_state *st, nd_err *err);
/* Makes dst equal to src (same grammar required; ND_EINVAL otherwise). Reuses dst's buffers. */
int grammar_state_copy(grammar_state *dst, const grammar_state *src, nd_err *err);
void grammar_state_free(grammar_state *st); /* NULL is fine */
/* Back to the start of the root rule. */
int grammar_state_reset(grammar_state *st, nd_err *err);

/* True if bytes[0..n) can extend the text matched so far (a trailing incomplete UTF-8
 * sequence is fine if a character it could become is allowed). n == 0 is true. False on
 * invalid UTF-8, and if the check ran out of memory or past the stack limits. */
bool grammar_state_accepts_bytes(const grammar_state *st, const char *bytes, size_t n);
/* Advances over bytes[0..n). On failure the state is unchanged; ND_EINVAL when the bytes are
 * not allowed (message gives the byte offset), ND_ERANGE / ND_ENOMEM from the limits. */
int grammar_state_advance(grammar_state *st, const char *bytes, size_t n, nd_err *err);
/* The root rule can end here (and no UTF-8 sequence is pending): EOG is allowed. */
bool grammar_state_done(const grammar_state *st);
/* More characters are possible (false when done and nothing may follow: only EOG fits). */
bool grammar_state_can_continue(const grammar_state *st);

/* ---------------------------------------------------------------- tokens */

/* Token check: EOG tokens (tok_is_eog) are allowed iff done; other tokens iff their piece
 * (tok_piece_view, special = false) is non-empty and accepted. Ids out of range: false. */
bool grammar_state_accepts_token(const grammar_state *st, const tok_vocab *v, int32_t id);
/* Advances over a token's piece; an EOG token is accepted (state unchanged) iff done.
 * ND_EINVAL if the token is not allowed. */
int grammar_state_accept_token(grammar_state *st, const tok_vocab *v, int32_t id, nd_err *err);
/* ok[i] = token cand[i] is allowed, for i < n. Checking a few candidates is cheap (a stack
 * walk over their bytes); use it on the best candidates first. ND_ENOMEM / ND_ERANGE. */
int grammar_filter_candidates(const grammar_state *st, const tok_vocab *v, const int32_t *cand,
                              size_t n, bool *ok, nd_err *err);
/* allowed[id] = 1 / 0 for every id < tok_n_vocab(v); returns the number allowed (>= 0) or a
 * negative ND_E*. Costs a check per token (most fail on their first byte). */
int64_t grammar_mask(const grammar_state *st, const tok_vocab *v, uint8_t *allowed, nd_err *err);

/* ---------------------------------------------------------------- sampling */

/* Picks the next token from logits[tok_n_vocab(v)] under the grammar with the chain s
 * (whose vocabulary size must be tok_n_vocab(v)). Does not advance st or call smp_accept:
 * the caller does both with the returned id (grammar_state_accept_token, smp_accept).
 *
 * Strategy: the chain draws from the plain logits first; if that token is allowed it is the
 * answer (one check; greedy chains get exactly the best allowed token, sampled chains the
 * usual llama.cpp "sample, then resample under the grammar" behaviour). Otherwise the best
 * candidates are checked in logit order until GRAMMAR_SAMPLE_KEEP allowed ones are found
 * (all tokens are checked when the best GRAMMAR_SAMPLE_HEAD hold fewer) and the chain draws
 * again from them alone. The result is always allowed.
 * Returns the token id, or a negative ND_E*: ND_EINVAL when no token of the vocabulary can
 * continue (a dead end: e.g. the grammar needs a character no token starts with), ND_ENOMEM,
 * ND_ERANGE. */
#define GRAMMAR_SAMPLE_KEEP 64
#define GRAMMAR_SAMPLE_HEAD 1024
int32_t smp_sample_constrained(smp_chain *s, const float *logits, grammar_state *st,
                               const tok_vocab *v, nd_err *err);

#endif
