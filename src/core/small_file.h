/*
 * small_file.h — reading a small file named by a setting (a key, a
 * certificate) without ever blocking.
 *
 * No server headers: unit-tested under sanitizers.
 */
#ifndef RM_SMALL_FILE_H
#define RM_SMALL_FILE_H

#include <stddef.h>

/*
 * The contents of path, read only if it is a regular file of at most max
 * bytes, opened without blocking (a FIFO or a device is refused at once).
 * malloc'd, NUL-terminated, *len bytes; NULL with a reason in err. A file
 * may hold key material: free it with small_file_free.
 */
extern char *small_file_read(const char *path, size_t max, size_t *len,
							 char *err, size_t errlen);

/* Wipe and free what small_file_read returned (NULL is fine). */
extern void small_file_free(char *contents, size_t len);

#endif
