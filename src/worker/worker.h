/*
 * worker.h — the background worker.
 */
#ifndef RM_WORKER_H
#define RM_WORKER_H

/* Register the worker; only while the library is preloaded. */
extern void worker_register(void);

#endif
