/*
 * worker_leave.h — the worker leaves a database that is being dropped.
 */
#ifndef RM_WORKER_LEAVE_H
#define RM_WORKER_LEAVE_H

/* Install the utility hook; only while the library is preloaded. */
extern void worker_leave_init(void);

#endif
