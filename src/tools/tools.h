/* Subcommands of the nindub binary. Each lives in src/tools/<name>.c and has the
 * signature of a main(): it parses its own flags, prints its own errors (stderr) and
 * returns the process exit status (0 ok, 1 runtime failure, 2 usage error). */
#ifndef ND_TOOLS_H
#define ND_TOOLS_H

typedef struct nd_tool {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} nd_tool;

int tool_info(int argc, char **argv);
int tool_run(int argc, char **argv);
int tool_tokenize(int argc, char **argv);
int tool_synth(int argc, char **argv);
int tool_quantize(int argc, char **argv);
int tool_perplexity(int argc, char **argv);
int tool_bench(int argc, char **argv);
int tool_plan(int argc, char **argv);
int tool_chat(int argc, char **argv);
int tool_serve(int argc, char **argv);
int tool_orchestrate(int argc, char **argv);
int tool_imatrix(int argc, char **argv);
int tool_compare(int argc, char **argv);
int tool_convert_tokenizer(int argc, char **argv);

/* Parses a number flag value in [lo, hi]; on error prints "nindub TOOL: FLAG expects ..."
 * on stderr and returns -1. */
int tool_num(const char *tool, const char *flag, const char *s, double lo, double hi, double *out);
/* Servers: SIGINT/SIGTERM set a flag (SIGPIPE ignored); tool_wait_for_stop sleeps until then. */
void tool_catch_stop_signals(void);
void tool_wait_for_stop(void);

#endif
