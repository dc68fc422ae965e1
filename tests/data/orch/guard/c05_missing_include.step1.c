#include <stdio.h>
#include <stdlib.h>
char *dup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}
