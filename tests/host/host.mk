# Host-only targets beyond the unit tests: fuzzing and benchmarks.
#   make fuzz          libFuzzer targets, long run (FUZZ_SECONDS, default 60)
#   make test-fuzz     the short fuzz run that `make test` includes
#   make bench         benchmark tables (not pass/fail)
# (placeholder until the page allocator lands)
test-fuzz:
	@true
fuzz:
	@echo "no fuzz targets yet"
bench:
	@echo "no benchmarks yet"
.PHONY: test-fuzz fuzz bench
