# make coverage: which lines of mm/ the host suite runs (gcov), a
# measurement, not a gate and not part of make test. The host test binary
# is built again into $(COV_BUILD) at -O0 with --coverage (counters
# updated atomically: the suite's threads race on plain ones and gcov then
# misreports), run once (about 4 minutes here, -O0 and ASan), and
# tools/coverage-summary prints each mm/ file's executed lines, fewest
# first, and the total; the annotated sources (lines never run marked
# #####) are left in $(COV_BUILD)/gcov/. What the suite does not run, the
# kernel's tests, the fuzzers or the real programs may (mm/spanheap_fail.c's
# parser is the fuzzers' and the kernel's command line's), so a low file
# is a question, not a verdict. Included by the top-level Makefile after
# host.mk.

COV_BUILD := $(BUILD)/cov
# The hang bound on one test: at -O0 under ASan the differential tests run
# several times slower than make test's build, and with the load at 14 one
# (spanheap_diff.poison_mode) passed 300 s without a line.
COV_TIMEOUT ?= 1200
COV_CFLAGS := $(filter-out -O1,$(HOST_CFLAGS)) -O0 --coverage \
	-fprofile-update=atomic
COV_OBJS := $(patsubst %,$(COV_BUILD)/%.o,$(HOST_TEST_SRCS))

FLAGS_cov := $(CC) $(COV_CFLAGS)
COV_FLAGS := $(call flags_file,cov)

$(COV_BUILD)/%.c.o: %.c $(COV_FLAGS)
	@mkdir -p $(@D)
	$(CC) $(COV_CFLAGS) -c $< -o $@

FLAGS_cov.objs := $(COV_OBJS)
COV_OBJLIST := $(call flags_file,cov.objs)

$(COV_BUILD)/host-test: $(COV_OBJS) $(COV_OBJLIST)
	$(CC) $(COV_CFLAGS) -o $@ $(COV_OBJS) -lpthread

coverage: $(COV_BUILD)/host-test
	@find $(COV_BUILD) -name '*.gcda' -delete
	@tools/run-progress $(COV_TIMEOUT) $(COV_BUILD)/host-test.log \
		$(COV_BUILD)/host-test || \
		{ echo "coverage: the host suite failed, see $(COV_BUILD)/host-test.log"; exit 1; }
	@tools/coverage-summary $(COV_BUILD) $(addprefix mm/,$(MM_SRCS))

.PHONY: coverage
