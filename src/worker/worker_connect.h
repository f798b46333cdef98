/*
 * worker_connect.h — the worker's connection to its database, as its role.
 */
#ifndef RM_WORKER_CONNECT_H
#define RM_WORKER_CONNECT_H

/* Seconds before the postmaster restarts a worker that exited with an error. */
#define WORKER_RESTART_S 5

/*
 * Connect to registry_migration.database as registry_migration.worker_role,
 * after waiting when earlier attempts failed. A refused connection ends the
 * process (FATAL) with the reason kept for worker_status; a role refused at
 * server start means never connecting, so this then does not return.
 */
extern void worker_connect(void);

#endif
