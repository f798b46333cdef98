/*
 * notifications.h — what the registry's notification of the end of a step
 * changes. It never calls the registry; repeated and late notifications
 * change nothing and are recorded in the event log.
 */
#ifndef RM_NOTIFICATIONS_H
#define RM_NOTIFICATIONS_H

#include "postgres.h"

#include "core/decision.h"

/*
 * Handle the notification that the step of the repository at path ended
 * with status (one that registry_status_ends_step() accepts; status_text is
 * its spelling, for the event log). Returns the repository's state
 * afterwards. Raises P0002 when there is no such repository and 55000 when
 * the repository is not at a step the notification can end.
 */
extern MigrationState notification_handle(const char *path, RegistryStatus status,
										  const char *status_text);

#endif
