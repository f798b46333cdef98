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

/* Install the one listener for this process; called from _PG_init. */
extern void commit_signal_listen(void (*listener) (void));

/* Have the listener called when the current transaction commits. */
extern void commit_signal_raise(void);

#endif
