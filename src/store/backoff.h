/*
 * backoff.h — the registry-wide Retry-After: when the registry answers a
 * start with "too many imports" and a Retry-After, no cycle starts anything
 * before that time. Kept in registry_migration.registry_state so it
 * survives a restart.
 */
#ifndef RM_BACKOFF_H
#define RM_BACKOFF_H

#include "postgres.h"

#include "utils/timestamp.h"

/* The longest Retry-After honoured, in seconds. */
#define BACKOFF_MAX_S 3600

/* True, with the end time, while a Retry-After has not passed. SPI needed. */
extern bool backoff_pending(TimestampTz *until);

/* Record a Retry-After of seconds from now (capped); returns its end. */
extern TimestampTz backoff_record(int64 seconds);

#endif
