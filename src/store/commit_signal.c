/*
 * commit_signal.c — a transaction callback that calls the registered
 * listener once per committed transaction that raised the signal.
 */
#include "postgres.h"

#include "access/xact.h"

#include "store/commit_signal.h"

static void (*listener) (void) = NULL;
static bool raised = false;

static void
at_transaction_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && raised)
		listener();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		raised = false;
}

void
commit_signal_listen(void (*fn) (void))
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
