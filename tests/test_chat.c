/* Chat templates: detection and formatting against the texts the models' own Jinja
 * templates render (written out by hand from the published templates). */
#include "t.h"
#include "tokenizer/chat.h"

static const chat_msg conv[] = {
    {"system", "You are terse."},
    {"user", "Hi"},
    {"assistant", "Hello."},
    {"user", "2+2?"},
};

static void check(chat_tmpl t, const char *want) {
    nd_buf b = {0};
    nd_err err = {0};
    T_EQ_INT(chat_format(t, conv, 4, true, &b, &err), 0);
    T_EQ_STR(b.data, want);
    nd_buf_free(&b);
}

static void test_formats(void) {
    check(CHAT_TMPL_CHATML,
          "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
          "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
          "<|im_start|>assistant\n");
    check(CHAT_TMPL_LLAMA3,
          "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check(CHAT_TMPL_PHI3,
          "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
          "<|user|>\n2+2?<|end|>\n<|assistant|>\n");
    check(CHAT_TMPL_LLAMA2,
          "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello. </s>[INST] 2+2? [/INST]");
    check(CHAT_TMPL_GEMMA,
          "<start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
          "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
}

static void test_detect(void) {
    T_EQ_INT(chat_tmpl_detect("{% for message in messages %}{{'<|im_start|>' + message['role']"), CHAT_TMPL_CHATML);
    T_EQ_INT(chat_tmpl_detect("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"), CHAT_TMPL_LLAMA3);
    T_EQ_INT(chat_tmpl_detect("{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>'}}"), CHAT_TMPL_PHI3);
    T_EQ_INT(chat_tmpl_detect("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"), CHAT_TMPL_LLAMA2);
    T_EQ_INT(chat_tmpl_detect("<start_of_turn>"), CHAT_TMPL_GEMMA);
    T_EQ_INT(chat_tmpl_detect("something else"), CHAT_TMPL_NONE);
    T_EQ_INT(chat_tmpl_detect(NULL), CHAT_TMPL_NONE);
    T_EQ_INT(chat_tmpl_for_arch("qwen3", false), CHAT_TMPL_CHATML);
    T_EQ_INT(chat_tmpl_for_arch("llama", true), CHAT_TMPL_LLAMA3);
    T_EQ_INT(chat_tmpl_for_arch("llama", false), CHAT_TMPL_LLAMA2);
    T_EQ_INT(chat_tmpl_for_arch("phi3", false), CHAT_TMPL_PHI3);
    T_EQ_INT(chat_tmpl_from_name("llama3"), CHAT_TMPL_LLAMA3);
    T_EQ_INT(chat_tmpl_from_name("jinja"), -1);
}

static void test_errors(void) {
    nd_buf b = {0};
    nd_err err = {0};
    chat_msg bad[1] = {{"user", NULL}};
    T_EQ_INT(chat_format(CHAT_TMPL_CHATML, bad, 1, true, &b, &err), ND_EINVAL);
    T_EQ_INT(chat_format((chat_tmpl)99, conv, 1, true, &b, &err), ND_EINVAL);
    T_EQ_INT(chat_format(CHAT_TMPL_NONE, conv, 2, true, &b, &err), 0);
    T_EQ_STR(b.data, "system: You are terse.\nuser: Hi\nassistant:");
    nd_buf_free(&b);
}

int main(void) {
    T_RUN(test_formats);
    T_RUN(test_detect);
    T_RUN(test_errors);
    return t_done();
}
