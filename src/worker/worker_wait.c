/*
 * worker_wait.c — the worker's one way of sleeping.
 *
 * Every wait of the worker (between cycles, before reconnecting, idling
 * without a valid role) ends the same way: reset the latch, let a
 * termination through, and apply a reload at once, since a reload is how
 * an operator fixes a setting the worker is waiting on.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"

#include "worker/worker_wait.h"

/*
 * Rounded up: a wait of the milliseconds rounded down ends just before
 * when, and the caller, finding it not yet due, would wait again with a
 * timeout of 0 — spinning through its loop for up to a millisecond.
 */
long
ms_until(TimestampTz when)
{
	TimestampTz left = when - GetCurrentTimestamp();

	return left > 0 ? (long) ((left + 999) / 1000) : 0;
}

bool
worker_wait(long timeout_ms, bool *reloaded)
{
	int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout_ms >= 0 ? WL_TIMEOUT : 0);
	int			rc = WaitLatch(MyLatch, events, timeout_ms, PG_WAIT_EXTENSION);
	bool		reload;

	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	reload = ConfigReloadPending;
	if (reload)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (reloaded)
		*reloaded = reload;
	return (rc & WL_LATCH_SET) != 0;
}
