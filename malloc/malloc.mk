# libmm_malloc.so: mm/ with the production port, as the C library's malloc
# for any Linux program (LD_PRELOAD=build/malloc/libmm_malloc.so, or link
# it). Included by the top-level Makefile after mm/mm.mk.
#   make malloc          build it
#   make test-real-quick (part of make test) real programs under it
#   make test-real       the longer set (Python's tests, redis-benchmark)
#   make bench-real      ours against glibc, jemalloc, mimalloc and tcmalloc
#   make plot-rss        RSS over a burst, a free and an idle minute
MALLOC_BUILD := $(BUILD)/malloc
MALLOC_SO := $(MALLOC_BUILD)/libmm_malloc.so
MALLOC_SRCS := $(addprefix mm/,$(MM_SRCS)) malloc/port_prod.c \
	malloc/slots.c malloc/malloc.c
# Production flags: no sanitizers, no MM_TEST_HOOKS; only the malloc API
# is exported; initial-exec TLS (the slot index) needs no allocation; and
# the compiler must not turn our own code into calls of malloc or free.
MALLOC_CFLAGS := -std=gnu11 -O2 -g -fPIC -Wall -Wextra -Werror \
	-Wno-unused-parameter -fvisibility=hidden -ftls-model=initial-exec \
	-fno-builtin-malloc -fno-builtin-free -fno-builtin-calloc \
	-fno-builtin-realloc -fno-plt -I. -MMD -MP
MALLOC_OBJS := $(patsubst %,$(MALLOC_BUILD)/%.o,$(MALLOC_SRCS))

$(MALLOC_BUILD)/%.c.o: %.c
	@mkdir -p $(@D)
	$(CC) $(MALLOC_CFLAGS) -c $< -o $@

$(MALLOC_SO): $(MALLOC_OBJS)
	$(CC) -shared -Wl,-z,now -Wl,-z,noexecstack -o $@ $^ -lpthread

malloc: $(MALLOC_SO)

.PHONY: malloc
