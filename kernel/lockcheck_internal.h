/* Shared by the lock checker's files (lockcheck.c, lockcheck_record.c). */
#ifndef KERNEL_LOCKCHECK_INTERNAL_H
#define KERNEL_LOCKCHECK_INTERNAL_H

/* A violation's message, formatted, at most this long (the end cut). */
#define LOCKCHECK_MESSAGE_MAX 192

/* Reports a violation's message: panics with it, or in test mode records
 * it (lockcheck_set_record, lockcheck_record_only). Any context but NMI. */
void lockcheck_report(const char *msg);

#endif
