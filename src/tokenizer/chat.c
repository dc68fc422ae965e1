/* Chat template families, formatted natively (see chat.h). */
#include <string.h>

#include "tokenizer/chat.h"

static const char *const names[CHAT_TMPL_COUNT] = {"none", "chatml", "llama3", "phi3", "llama2", "gemma"};

const char *chat_tmpl_name(chat_tmpl t) {
    return (unsigned)t < CHAT_TMPL_COUNT ? names[t] : "invalid";
}

int chat_tmpl_from_name(const char *name) {
    for (int i = 0; i < CHAT_TMPL_COUNT; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

chat_tmpl chat_tmpl_detect(const char *j) {
    if (!j) return CHAT_TMPL_NONE;
    if (strstr(j, "<|im_start|>")) return CHAT_TMPL_CHATML;
    if (strstr(j, "<|start_header_id|>")) return CHAT_TMPL_LLAMA3;
    if (strstr(j, "<|assistant|>") && strstr(j, "<|end|>")) return CHAT_TMPL_PHI3;
    if (strstr(j, "<start_of_turn>")) return CHAT_TMPL_GEMMA;
    if (strstr(j, "[INST]")) return CHAT_TMPL_LLAMA2;
    return CHAT_TMPL_NONE;
}

chat_tmpl chat_tmpl_for_arch(const char *arch, bool has_eot_id) {
    if (!arch) return CHAT_TMPL_NONE;
    if (!strncmp(arch, "qwen", 4)) return CHAT_TMPL_CHATML;
    if (!strcmp(arch, "phi3")) return CHAT_TMPL_PHI3;
    if (!strncmp(arch, "gemma", 5)) return CHAT_TMPL_GEMMA;
    if (!strcmp(arch, "llama")) return has_eot_id ? CHAT_TMPL_LLAMA3 : CHAT_TMPL_LLAMA2;
    return CHAT_TMPL_NONE;
}

static int add(nd_buf *o, int *rc, const char *a, const char *b, const char *c) {
    if (!*rc && a) *rc = nd_buf_append(o, a, strlen(a));
    if (!*rc && b) *rc = nd_buf_append(o, b, strlen(b));
    if (!*rc && c) *rc = nd_buf_append(o, c, strlen(c));
    return *rc;
}

/* Llama 2 folds the system prompt into the first user turn. */
static void format_llama2(const chat_msg *m, size_t n, nd_buf *o, int *rc) {
    const char *sys = NULL;
    bool first_user = true;
    for (size_t i = 0; i < n && !*rc; i++) {
        if (!strcmp(m[i].role, "system")) {
            sys = m[i].content;
        } else if (!strcmp(m[i].role, "user")) {
            add(o, rc, "[INST] ", NULL, NULL);
            if (sys && first_user) add(o, rc, "<<SYS>>\n", sys, "\n<</SYS>>\n\n");
            add(o, rc, m[i].content, " [/INST]", NULL);
            first_user = false;
        } else {
            add(o, rc, " ", m[i].content, " </s>");
        }
    }
}

int chat_format(chat_tmpl t, const chat_msg *m, size_t n, bool gen, nd_buf *o, nd_err *err) {
    if ((unsigned)t >= CHAT_TMPL_COUNT) return nd_seterr(err, ND_EINVAL, "unknown chat template %d", (int)t);
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content)
            return nd_seterr(err, ND_EINVAL, "message %zu has no role or no content", i);
    int rc = 0;
    if (t == CHAT_TMPL_LLAMA2) {
        format_llama2(m, n, o, &rc);
    } else {
        for (size_t i = 0; i < n && !rc; i++) {
            const char *r = m[i].role, *c = m[i].content;
            switch (t) {
            case CHAT_TMPL_CHATML:
                add(o, &rc, "<|im_start|>", r, "\n");
                add(o, &rc, c, "<|im_end|>\n", NULL);
                break;
            case CHAT_TMPL_LLAMA3:
                add(o, &rc, "<|start_header_id|>", r, "<|end_header_id|>\n\n");
                add(o, &rc, c, "<|eot_id|>", NULL);
                break;
            case CHAT_TMPL_PHI3:
                add(o, &rc, "<|", r, "|>\n");
                add(o, &rc, c, "<|end|>\n", NULL);
                break;
            case CHAT_TMPL_GEMMA: /* no system role: it is prepended to the next user turn */
                if (!strcmp(r, "system")) {
                    add(o, &rc, "<start_of_turn>user\n", c, "\n\n");
                    if (i + 1 < n && !strcmp(m[i + 1].role, "user")) {
                        add(o, &rc, m[i + 1].content, "<end_of_turn>\n", NULL);
                        i++;
                    } else {
                        add(o, &rc, "<end_of_turn>\n", NULL, NULL);
                    }
                    break;
                }
                add(o, &rc, "<start_of_turn>", strcmp(r, "assistant") ? r : "model", "\n");
                add(o, &rc, c, "<end_of_turn>\n", NULL);
                break;
            default:
                add(o, &rc, r, ": ", c);
                add(o, &rc, "\n", NULL, NULL);
                break;
            }
        }
    }
    if (gen && !rc) {
        switch (t) {
        case CHAT_TMPL_CHATML: add(o, &rc, "<|im_start|>assistant\n", NULL, NULL); break;
        case CHAT_TMPL_LLAMA3: add(o, &rc, "<|start_header_id|>assistant<|end_header_id|>\n\n", NULL, NULL); break;
        case CHAT_TMPL_PHI3: add(o, &rc, "<|assistant|>\n", NULL, NULL); break;
        case CHAT_TMPL_GEMMA: add(o, &rc, "<start_of_turn>model\n", NULL, NULL); break;
        case CHAT_TMPL_LLAMA2: break;
        default: add(o, &rc, "assistant:", NULL, NULL); break;
        }
    }
    if (!o->data && !rc) rc = nd_buf_append(o, "", 0);
    return rc ? nd_seterr(err, ND_ENOMEM, "out of memory formatting the chat") : 0;
}
