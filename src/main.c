/* nindub: one binary, git-style subcommands (see src/tools/). */
#include <stdio.h>
#include <string.h>

#include "tools/tools.h"

static const nd_tool tools[] = {
    {"run", tool_run, "generate text from a prompt (streamed), with speed figures"},
    {"serve", tool_serve, "OpenAI-compatible HTTP server with continuous batching (/v1/chat/completions ...)"},
    {"orchestrate", tool_orchestrate, "OpenAI-compatible front: scrubs secrets, routes, prunes context, compile-checks code"},
    {"chat", tool_chat, "interactive multi-turn chat in the model's chat template"},
    {"info", tool_info, "show a GGUF model: metadata, hyper-parameters, tensors, totals"},
    {"tokenize", tool_tokenize, "text -> token ids and pieces (or --ids: ids -> text)"},
    {"synth", tool_synth, "write a random-weight model with the shape of a real one"},
    {"quantize", tool_quantize, "convert a model's weights to another type (q4_k_m, q8_0 ...)"},
    {"imatrix", tool_imatrix, "collect an importance matrix (mean squared activations) for quantize --imatrix"},
    {"perplexity", tool_perplexity, "perplexity of a text (llama.cpp protocol), KL-divergence vs a reference"},
    {"bench", tool_bench, "prompt and generation speed, llama-bench compatible output"},
    {"plan", tool_plan, "memory and speed plan: what fits where on this machine, predicted tokens/s"},
    {"compare", tool_compare, "size / perplexity / KLD / speed table of several quantizations, HTML report"},
    {"convert-tokenizer", tool_convert_tokenizer, "Hugging Face tokenizer.json -> vocabulary-only GGUF"},
};
#define N_TOOLS (sizeof tools / sizeof tools[0])

static void usage(FILE *f) {
    fprintf(f, "usage: nindub <command> [options]   (nindub <command> --help for details)\n\n"
               "commands:\n");
    for (size_t i = 0; i < N_TOOLS; i++) fprintf(f, "  %-18s %s\n", tools[i].name, tools[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_TOOLS; i++)
        if (!strcmp(argv[1], tools[i].name)) return tools[i].run(argc - 1, argv + 1);
    fprintf(stderr, "nindub: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
