/*
 * transport.h — how every transfer reaches the registry: the CA to trust,
 * the client certificate to present, the proxy to go through. Internal to
 * the registry layer (http.c).
 */
#ifndef RM_TRANSPORT_H
#define RM_TRANSPORT_H

#include "postgres.h"

#include <curl/curl.h>

/*
 * The files of registry_migration.ca_file, client_cert_file and
 * client_key_file, read for one batch of transfers (malloc'd, NULL when
 * the setting is empty). libcurl gets them from memory, so it never opens
 * a file itself: a file swapped for a FIFO cannot hang a backend, and a
 * renewed certificate is used from the next batch on, without a reload.
 */
typedef struct HttpTransport
{
	char	   *ca;
	size_t		ca_len;
	char	   *cert;
	size_t		cert_len;
	char	   *key;
	size_t		key_len;
} HttpTransport;

/*
 * Read the files the settings name. A file that can no longer be used is
 * an error naming the setting (nothing is left allocated then).
 */
extern void transport_load(HttpTransport *transport);

/*
 * Give easy the transport's options: verification always on, the CA, the
 * client certificate, the proxy. transport must outlive easy.
 */
extern void transport_apply(CURL *easy, const HttpTransport *transport);

/* Wipe and free what transport_load read. */
extern void transport_release(HttpTransport *transport);

#endif
