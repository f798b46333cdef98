/*
 * small_file.c — reading a small file named by a setting without blocking.
 *
 * A setting's file is read by backends and, on reload, by the postmaster:
 * a FIFO, a device or a huge file there must be refused at once, never
 * waited on, or the process would hang deaf to cancel and termination.
 */
#include "core/small_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* What a file that is not a regular file is, for messages. */
static const char *
file_kind(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	if (S_ISSOCK(mode))
		return "a socket";
	return "not a regular file";
}

/* Read all of fd, at most max bytes; malloc'd and NUL-terminated, or NULL. */
static char *
read_all(int fd, size_t max, size_t *len, char *err, size_t errlen)
{
	char	   *buf = malloc(max + 2);
	size_t		used = 0;

	if (buf == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* One byte more than allowed tells a file that grew since fstat. */
	while (used <= max)
	{
		ssize_t		n = read(fd, buf + used, max + 1 - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			snprintf(err, errlen, "could not read it: %s", strerror(errno));
			OPENSSL_cleanse(buf, used);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		used += (size_t) n;
	}
	if (used > max)
	{
		snprintf(err, errlen, "it is larger than %zu bytes", max);
		OPENSSL_cleanse(buf, used);
		free(buf);
		return NULL;
	}
	buf[used] = '\0';
	*len = used;
	return buf;
}

char *
small_file_read(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	/*
	 * O_NONBLOCK: opening a FIFO or a device must not wait for a writer, or
	 * the process (a backend, the postmaster on reload) would hang in open,
	 * deaf to cancel and termination.
	 */
	int			fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	char	   *contents = NULL;

	if (fd < 0)
	{
		snprintf(err, errlen, "could not open it: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0)
		snprintf(err, errlen, "could not stat it: %s", strerror(errno));
	else if (!S_ISREG(st.st_mode))
		snprintf(err, errlen, "it is %s, not a regular file", file_kind(st.st_mode));
	else if ((size_t) st.st_size > max)
		snprintf(err, errlen, "it is larger than %zu bytes", max);
	else
		contents = read_all(fd, max, len, err, errlen);
	close(fd);
	return contents;
}

void
small_file_free(char *contents, size_t len)
{
	if (contents == NULL)
		return;
	OPENSSL_cleanse(contents, len);
	free(contents);
}
