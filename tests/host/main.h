/* Helpers the host test driver offers to tests. */
#ifndef TESTS_HOST_MAIN_H
#define TESTS_HOST_MAIN_H

#include <stddef.h>

/* Sends the ktest runner's output to buf (NUL-terminated, truncated to
 * size) until host_capture_end(): lets tests run a nested ktest_run. */
void host_capture_begin(char *buf, size_t size);
void host_capture_end(void);

#endif
