/* Stop strings over generated text, for streaming: what to cut and what is safe to show. */
#ifndef ND_STOP_H
#define ND_STOP_H

#include <stddef.h>

/* Scans text[0..len) for the stop strings. Returns the offset of the earliest complete
 * stop string that starts at or after `from` (-1 if none; `from` lets a streaming caller
 * rescan only the tail, minus the longest stop length). *safe gets the length that may
 * be shown now: all of the text except a suffix that is a proper prefix of some stop
 * string (it may still grow into one with the next token). Empty stop strings are
 * ignored. */
long smp_stop_scan(const char *const *stops, int n_stops, const char *text, size_t len, size_t from,
                   size_t *safe);

#endif
