/*
 * worker_wait.h — how the worker sleeps: on its latch, so that a wake, a
 * signal or the postmaster's death ends the sleep at once.
 */
#ifndef RM_WORKER_WAIT_H
#define RM_WORKER_WAIT_H

#include "postgres.h"

#include "utils/timestamp.h"

/* Milliseconds from now until when, rounded up; 0 when it has passed. */
extern long ms_until(TimestampTz when);

/*
 * Sleep at most timeout_ms (-1: until woken), then handle interrupts and a
 * pending configuration reload. Returns whether the latch was set; *reloaded
 * (when not NULL) tells whether the configuration was reloaded.
 */
extern bool worker_wait(long timeout_ms, bool *reloaded);

#endif
