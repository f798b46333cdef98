/*
 * worker_grants.h — what the worker's role must be, and hold, before the
 * worker runs a cycle as it.
 */
#ifndef RM_WORKER_GRANTS_H
#define RM_WORKER_GRANTS_H

/*
 * Whether the worker runs as a worker_role that is a superuser, which the
 * setting exists to avoid; warns once each time the role becomes one.
 * Needs a transaction.
 */
extern bool worker_role_is_superuser(void);

/*
 * Raise 42501 naming the first privilege the worker's role lacks on the
 * extension's tables. Needs a transaction.
 */
extern void require_worker_grants(void);

#endif
