/*
 * registry_migration.c — module entry point.
 *
 * _PG_init only calls the per-module initialisation functions.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"

#include "guc.h"
#include "store/commit_signal.h"
#include "worker/worker.h"
#include "worker/worker_leave.h"
#include "worker/worker_shared.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * libcurl's global state must be set up once per process, before any
	 * thread or handle exists; done here so every backend has it.
	 */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise libcurl")));
	guc_init();
	commit_signal_listen(worker_wake);
	if (process_shared_preload_libraries_in_progress)
	{
		worker_shared_init();
		worker_register();
		worker_leave_init();
	}
}
