/*
 * guc.h — the registry_migration.* configuration parameters.
 */
#ifndef RM_GUC_H
#define RM_GUC_H

extern char *rm_registry_url;
extern char *rm_jwt_private_key_file;
extern char *rm_jwt_issuer;
extern char *rm_jwt_audience;
extern char *rm_ca_file;
extern char *rm_client_cert_file;
extern char *rm_client_key_file;
extern char *rm_proxy;
extern int	rm_jwt_token_lifetime_s;
extern int	rm_connect_timeout_ms;
extern int	rm_request_timeout_ms;
extern int	rm_max_concurrent_requests;
extern char *rm_database;
extern char *rm_worker_role;
/* The configured worker_role was refused when the library was preloaded. */
extern bool rm_worker_role_refused;
extern bool rm_worker_enabled;
extern int	rm_guard_interval_ms;
extern int	rm_enqueue_interval_ms;
extern int	rm_log_level;

/* Whether registry_migration.worker_role names a role (empty: the bootstrap superuser). */
extern bool rm_worker_role_named(void);

extern void guc_init(void);

#endif
