/*
 * settings_trigger.c — AFTER UPDATE trigger on registry_migration.settings.
 *
 * The worker reads the settings at every cycle, so a change (enabling the
 * migration, raising the capacity) raises the commit signal: the worker is
 * woken when the change commits instead of at its next tick.
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"

#include "store/commit_signal.h"

PG_FUNCTION_INFO_V1(rm_settings_changed);

Datum
rm_settings_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("settings_changed() must be called as a trigger")));
	commit_signal_raise();
	return PointerGetDatum(NULL);
}
