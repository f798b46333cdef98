/*
 * state_sql.c — migration states as SQL literals.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "store/state_sql.h"

char *
state_sql_literal(MigrationState state)
{
	/* The labels are lower-case words and underscores: no quoting needed. */
	return psprintf("'%s'", migration_state_name(state));
}

char *
state_sql_list(bool (*member) (MigrationState))
{
	StringInfoData list;

	initStringInfo(&list);
	for (int i = 0; i < MS_COUNT; i++)
	{
		if (!member((MigrationState) i))
			continue;
		if (list.len > 0)
			appendStringInfoString(&list, ", ");
		appendStringInfo(&list, "'%s'", migration_state_name((MigrationState) i));
	}
	return list.data;
}
