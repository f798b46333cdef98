/*
 * commit_signal.c — a transaction callback that calls the registered
 * listener once per committed transaction that raised the signal.
 */
#include "postgres.h"

#include "access/xact.h"

#include "store/commit_signal.h"

static void (*listener) (bool guard_wanted) = NULL;
static bool raised = false;
static bool guard_wanted = false;

static void
at_transaction_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && raised)
		listener(guard_wanted);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		raised = guard_wanted = false;
}

void
commit_signal_listen(void (*fn) (bool guard_wanted))
{
	Assert(listener == NULL);
	listener = fn;
	RegisterXactCallback(at_transaction_end, NULL);
}

void
commit_signal_raise(void)
{
	if (listener != NULL)
		raised = true;
}

void
commit_signal_raise_guard(void)
{
	if (listener != NULL)
		raised = guard_wanted = true;
}
