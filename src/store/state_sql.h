/*
 * state_sql.h — migration states as SQL literals, built from the C name
 * table, so a statement names a state the way states.c spells it. A literal
 * (not a parameter) lets the planner match the partial indexes.
 */
#ifndef RM_STATE_SQL_H
#define RM_STATE_SQL_H

#include "postgres.h"

#include "core/states.h"

/* 'importing' */
extern char *state_sql_literal(MigrationState state);

/* The states for which member() holds, as "'a', 'b', 'c'", in enum order. */
extern char *state_sql_list(bool (*member) (MigrationState));

#endif
