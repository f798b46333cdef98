/*
 * commit_signal.h — "this transaction changed what the cycles should do"
 * (a step finished, a repository was aborted or skipped, a notification was
 * handled, the settings changed), delivered once when the transaction
 * commits and never when it rolls back.
 *
 * The store raises the signal without knowing who listens; the module that
 * wants it (the background worker, to refill a freed slot at once)
 * registers its listener from above.
 */
#ifndef RM_COMMIT_SIGNAL_H
#define RM_COMMIT_SIGNAL_H

#include <stdbool.h>

/*
 * Install the one listener for this process; called from _PG_init. It is
 * told whether the transaction also wants a guard cycle at once.
 */
extern void commit_signal_listen(void (*listener) (bool guard_wanted));

/* Have the listener called when the current transaction commits. */
extern void commit_signal_raise(void);

/*
 * The same, and a guard cycle is wanted at once: something waits for the
 * guard's confirmation with the registry (a held failure notification).
 */
extern void commit_signal_raise_guard(void);

#endif
