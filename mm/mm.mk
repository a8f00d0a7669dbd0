# The mm/ library's sources, for any build that wants the allocator: include
# this file and compile $(addprefix mm/,$(MM_SRCS)) with your port.
MM_SRCS := pallocbits.c palloc.c palloc_grow.c palloc_check.c pagecache.c \
	palloc_scav.c mheap.c mheap_alloc.c mheap_grow.c mheap_heads.c mheap_scav.c mheap_scav_thread.c \
	sizeclasses.c spanheap_span.c spanheap_large.c spanheap_structs.c spanheap_central.c \
	spanheap_cache.c spanheap_flush.c spanheap.c spanheap_free.c spanheap_bulk.c spanheap_realloc.c spanheap_copy.c spanheap_usercopy.c spanheap_init.c spanheap_sweep.c \
	spanheap_sweeper.c \
	spanheap_stats.c spanheap_check.c spanheap_check_cache.c \
	spanheap_poison.c spanheap_redzone.c spanheap_track.c spanheap_depot.c spanheap_where.c spanheap_freed.c \
	spanheap_guard.c spanheap_guard_own.c spanheap_guard_report.c spanheap_meta.c spanheap_meta_blocks.c \
	spanheap_leak.c spanheap_fail.c failpoint.c objcache.c objcache_leak.c objcache_track.c objcache_own.c objcache_guard.c objcache_stash.c objcache_list.c objcache_bulk.c mempool.c \
	mempool_check.c mempool_setup.c pcpu.c pcpu_check.c \
	rseq.c

# Test hooks (palloc_testing.h): only for test binaries, never the kernel
# proper. MM_HOST_SRCS is what the host test build adds, as paths.
MM_TEST_SRCS := palloc_testing.c
MM_HOST_SRCS := $(addprefix mm/,$(MM_TEST_SRCS))
