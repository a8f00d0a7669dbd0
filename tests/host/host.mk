# Host-only targets beyond the unit tests: fuzzing, benchmarks and the
# ThreadSanitizer build.
#   make fuzz          the libFuzzer targets, long run (FUZZ_SECONDS each,
#                      default 60); FUZZ_TARGET=spanheap_fuzz runs one
#   make test-fuzz     the short run `make test` includes (TEST_FUZZ_SECONDS,
#                      default 16, split between the targets); writes
#                      "passed failed skipped" to $(RESULTS)/fuzz, a target
#                      each, skipped only if clang's libFuzzer runtime
#                      cannot be installed
#   make bench         the page allocator's benchmark table, -O2 without
#                      sanitizers, plus callgrind instruction counts (not
#                      pass/fail); the table is kept in $(BENCH_DIR)/bench.txt
#   make test-tsan     the host tests under ThreadSanitizer (below)
# Included by the top-level Makefile after HOST_BUILD, MM_SRCS,
# MM_HOST_SRCS and RESULTS are defined.

FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 16
FUZZ_DIR := $(HOST_BUILD)/fuzz
# The targets: the page allocator's and the span heap's, each against its
# model (tests/host/palloc_model.h, tests/host/spanheap_harness.h).
FUZZ_TARGETS := palloc_fuzz spanheap_fuzz
FUZZ_TARGET ?= $(FUZZ_TARGETS)
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))
FUZZ_COMMON_SRCS := $(addprefix mm/,$(MM_SRCS)) $(MM_HOST_SRCS) \
	tests/host/mm_port_posix.c
FUZZ_SRCS_palloc_fuzz := tests/host/palloc_model.c \
	tests/host/palloc_harness.c tests/host/fuzz/palloc_fuzz.c
FUZZ_SRCS_spanheap_fuzz := tests/host/spanheap_harness.c \
	tests/host/fuzz/spanheap_fuzz.c
# Built with clang whatever CC says: libFuzzer is part of clang.
FUZZ_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -I. -DMM_HOSTED=1
FUZZ_FLAGS := -max_len=4096 -timeout=20 -print_final_stats=1 \
	-artifact_prefix=$(FUZZ_DIR)/

$(FUZZ_DIR)/palloc_fuzz: $(FUZZ_SRCS_palloc_fuzz)
$(FUZZ_DIR)/spanheap_fuzz: $(FUZZ_SRCS_spanheap_fuzz)
$(FUZZ_BINS): $(FUZZ_COMMON_SRCS) $(wildcard mm/*.h tests/host/*.h)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $(FUZZ_COMMON_SRCS) $(FUZZ_SRCS_$(@F)) \
		-lpthread

# True when clang can link a libFuzzer target here.
FUZZ_RUNTIME = [ -r "$$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ]

# Each target runs TEST_FUZZ_SECONDS / (number of targets) seconds on its
# own corpus (crashes land in $(FUZZ_DIR)/ as crash-*); one that does not
# build or finds a crash is a failure and the others still run.
test-fuzz:
	@mkdir -p $(RESULTS) $(FUZZ_DIR)
	@tools/install-deps fuzz || true
	@n=$(words $(FUZZ_TARGETS)); \
	if ! $(FUZZ_RUNTIME); then \
		echo "fuzz: 0 passed, 0 failed, $$n skipped (no libFuzzer runtime)"; \
		echo "0 0 $$n" > $(RESULTS)/fuzz; exit 0; fi; \
	secs=$$(( $(TEST_FUZZ_SECONDS) / n )); [ $$secs -ge 1 ] || secs=1; \
	pass=0; fail=0; \
	for t in $(FUZZ_TARGETS); do \
		log=$(FUZZ_DIR)/test-fuzz-$$t.log; \
		mkdir -p $(FUZZ_DIR)/corpus/$$t; \
		if ! $(MAKE) --no-print-directory $(FUZZ_DIR)/$$t; then \
			echo "fuzz: $$t does not build"; fail=$$((fail + 1)); \
		elif $(FUZZ_DIR)/$$t $(FUZZ_FLAGS) -max_total_time=$$secs \
			$(FUZZ_DIR)/corpus/$$t > $$log 2>&1; then \
			grep -h "stat::number_of_executed_units" $$log | \
				sed "s/^stat::number_of_executed_units: */fuzz: $$t ran /; s/$$/ inputs in $$secs s/"; \
			pass=$$((pass + 1)); \
		else \
			tail -n 30 $$log; \
			echo "fuzz: $$t failed (log: $$log)"; fail=$$((fail + 1)); \
		fi; \
	done; \
	echo "fuzz: $$pass passed, $$fail failed"; \
	echo "$$pass $$fail 0" > $(RESULTS)/fuzz; [ $$fail -eq 0 ]

fuzz: $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGET))
	@for t in $(FUZZ_TARGET); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_DIR)/$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
			$(FUZZ_DIR)/corpus/$$t || exit 1; \
	done

BENCH_DIR := $(HOST_BUILD)/bench
BENCH_BIN := $(BENCH_DIR)/palloc_bench
BENCH_SRCS := $(addprefix mm/,$(MM_SRCS)) tests/host/mm_port_posix.c \
	tests/host/bench/palloc_bench.c

$(BENCH_BIN): $(BENCH_SRCS) $(wildcard mm/*.h tests/host/*.h)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I. -DMM_HOSTED=1 -o $@ $(BENCH_SRCS) -lpthread

bench: $(BENCH_BIN) | deps-bench
	@BENCH_DIR=$(BENCH_DIR) $(BENCH_BIN) | tee $(BENCH_DIR)/bench.txt

.PHONY: test-fuzz fuzz bench

# ThreadSanitizer: the host tests' sources built a second time with
# -fsanitize=thread (ASan and TSan cannot share a binary) into
# $(TSAN_BUILD).
#   make test-tsan     runs them all but TSAN_EXCLUDE (the differential tests:
#                      one thread each, and slow under TSan); TSAN_TESTS narrows
#                      further. Writes "passed failed skipped" to
#                      $(RESULTS)/host-tsan. A report stops the run
#                      (halt_on_error) and tools/ktap-check fails it: the KTAP
#                      document is cut short, and it rejects any
#                      "WARNING: ThreadSanitizer" line anyway.
TSAN_BUILD := $(BUILD)/host-tsan
TSAN_CFLAGS := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=thread -fno-omit-frame-pointer -I. -MMD -MP -DMM_HOSTED=1
TSAN_OBJS := $(patsubst %,$(TSAN_BUILD)/%.o,$(HOST_TEST_SRCS))
TSAN_TEST := $(TSAN_BUILD)/host-test
TSAN_TESTS ?=
TSAN_EXCLUDE ?= palloc_diff.*,spanheap_diff.*
TSAN_RUN_OPTIONS := halt_on_error=1 second_deadlock_stack=1
TSAN_TIMEOUT ?= 300

$(TSAN_BUILD)/%.c.o: %.c
	@mkdir -p $(@D)
	$(CC) $(TSAN_CFLAGS) -c $< -o $@

$(TSAN_TEST): $(TSAN_OBJS)
	$(CC) $(TSAN_CFLAGS) -o $@ $^ -lpthread

test-tsan: $(TSAN_TEST)
	@mkdir -p $(RESULTS)
	@TSAN_OPTIONS="$(TSAN_RUN_OPTIONS)" HOST_TEST_EXCLUDE='$(TSAN_EXCLUDE)' \
		timeout -k 5 $(TSAN_TIMEOUT) $(TSAN_TEST) '$(TSAN_TESTS)' \
		> $(BUILD)/host-tsan.log 2>&1; \
	tools/ktap-check host-tsan $(BUILD)/host-tsan.log $(RESULTS)/host-tsan \
		"exit status $$? (log: $(BUILD)/host-tsan.log)"

.PHONY: test-tsan
