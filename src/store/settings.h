/*
 * settings.h — the row of registry_migration.settings, read once at the
 * start of every cycle (and once per call of an admin function or
 * notification) and passed down, so one cycle acts on one set of values.
 */
#ifndef RM_SETTINGS_H
#define RM_SETTINGS_H

#include "postgres.h"

#include "utils/timestamp.h"

/*
 * Caps on what the settings row may hold but no computation needs: a longer
 * interval acts as this one, a rate below the minimum as 0 (off) and above
 * the maximum as the maximum. SQL literals, for the statements that read
 * the row.
 */
#define SETTINGS_MAX_INTERVAL "1000 years"
#define SETTINGS_MIN_TAGS_RATE "0.000000001"
#define SETTINGS_MAX_TAGS_RATE "1000000000"

typedef struct MigrationSettings
{
	bool		enabled;
	int32		capacity;
	int32		max_retries;
	int32		start_max_retries;
	double		max_step_duration_s;
	double		pre_import_timeout_s;
	double		import_timeout_s;
	double		pre_import_tags_rate;
	int32		max_tags_count;
	bool		has_created_before;
	TimestampTz created_before;
	bool		has_target_plans;
	Datum		target_plans;	/* text[], copied into the caller's context */
	double		enqueue_waiting_time_s;
	int32		guard_batch_size;
} MigrationSettings;

/* Read the settings row. Requires an SPI connection. */
extern MigrationSettings settings_load(void);

#endif
