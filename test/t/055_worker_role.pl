# The background worker's role and search path: with worker_role set it
# connects as that role and migrates with exactly the grants of
# the README; a missing or unusable role, a superuser role and a
# missing grant are clear errors in the log and in worker_status, never a
# restart loop; and a database owner cannot redirect the worker's
# statements with ALTER DATABASE ... SET search_path.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use List::Util;
use Test::More;
use Time::HiRes qw(time sleep);

my $root = "$FindBin::RealBin/../..";
my $role = 'registry_migration_worker';
my $sim = RegistrySimulator->new(pre_import_seconds => 0.5, import_seconds => 0.2,
	auto_create => 1, max_imports => 2, retry_after => 1);

# The grants exactly as the documentation gives them.
my ($grants) = slurp_file("$root/README.md")
	=~ /```sql\n-- The worker's role and its grants\.\n((?:(?!```).)*)```/s;
ok(defined $grants, 'the README has the grants of the worker role');
my @grants = grep { /^GRANT/ } map { s/^\s+|\s+$//gr } split /;/, $grants =~ s/--[^\n]*//gr;

my $node = PostgreSQL::Test::Cluster->new('worker_role');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.enqueue_interval = '200ms'",
	"registry_migration.guard_interval = '300ms'",
	"max_worker_processes = 16", ''));
$node->start;
# The documentation's database; CONNECT is only granted, so the grant is needed.
$node->safe_psql('postgres', q{CREATE DATABASE gitlab;
	REVOKE CONNECT ON DATABASE gitlab FROM PUBLIC;});
$node->safe_psql('gitlab', q{CREATE EXTENSION registry_migration;
	UPDATE registry_migration.settings
	   SET enabled = true, capacity = 3, max_tags_count = 0, max_step_duration = '1s';});

sub query { return $node->safe_psql('gitlab', $_[0]) }
sub poll  { return $node->poll_query_until('gitlab', $_[0]) }

# A reload ends the worker's wait before it connects again, so the tests
# need not wait minutes for the next attempt.
sub poll_with_reloads
{
	my ($sql) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1 if query($sql) eq 't';
		$node->reload;
		sleep 1;
	}
	diag("still not true: $sql");
	return 0;
}

sub worker_pid { return query('SELECT pid FROM registry_migration.worker_status') }

# ---- a value the check hook refuses ----------------------------------------
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'gitlab'",
	"registry_migration.worker_role = 'pg_monitor'", ''));
$node->restart;
ok(poll(q{SELECT activity = 'idle: registry_migration.worker_role has an invalid value'
	AND last_error LIKE 'registry_migration.worker_role was refused%' FROM registry_migration.worker_status}),
	'a refused worker_role leaves the worker unconnected, not connected as the bootstrap superuser');
like(slurp_file($node->logfile), qr/invalid value for parameter "registry_migration.worker_role": "pg_monitor"/,
	'the check hook refused the value when the server started');
is(query(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'registry_migration worker'}), '0',
	'no worker session');

# ---- a role that does not exist ---------------------------------------------
$node->append_conf('postgresql.conf', "registry_migration.worker_role = '$role'\n");
$node->restart;
my $restarted = time();
my $offset = -s $node->logfile;
ok(poll(qq{SELECT last_error = 'could not connect to database "gitlab" as role "$role": role "$role" does not exist'
	FROM registry_migration.worker_status}), 'a missing role is the last error in worker_status');
ok(poll(qq{SELECT activity = 'waiting to retry connecting as role "$role"' AND pid > 0
	FROM registry_migration.worker_status}), 'the restarted worker shows itself waiting to connect again');
# Without a growing wait the postmaster would restart the worker every 5 s.
sleep(List::Util::max(0, 20 - (time() - $restarted)));
my $failures = scalar(() = substr(slurp_file($node->logfile), $offset) =~ /FATAL:  role "$role" does not exist/g);
cmp_ok($failures, '<=', 3,
	sprintf('no restart loop: %d connection attempts in %.0f s', $failures, time() - $restarted));
like(slurp_file($node->logfile), qr/registry_migration worker waiting to retry connecting as role "$role" for 10 s/,
	'the wait grows');

ok(poll(q{SELECT activity LIKE 'waiting to retry %' FROM registry_migration.worker_status}),
	'the worker waits again');
my $pid = worker_pid();
like($pid, qr/^[1-9]\d*$/, 'the waiting worker has a pid');
kill 'TERM', $pid;
my $t0 = time();
sleep 0.05 while kill(0, $pid) && time() - $t0 < 5;
cmp_ok(time() - $t0, '<', 1, 'a waiting worker stops within a second on SIGTERM');

# ---- a role without LOGIN, then the documented grants ----------------------
query("CREATE ROLE $role NOLOGIN");
ok(poll_with_reloads(qq{SELECT last_error LIKE '%role "$role" is not permitted to log in'
	FROM registry_migration.worker_status}), 'a role without LOGIN is the last error');
query("ALTER ROLE $role LOGIN");
ok(poll_with_reloads(qq{SELECT last_error LIKE '%permission denied for database "gitlab"%'
	FROM registry_migration.worker_status}), 'without CONNECT on the database: that is the last error');
query($_) for @grants;
ok(poll_with_reloads(qq{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'registry_migration worker' AND usename = '$role'}),
	'after a reload the worker connects; pg_stat_activity shows it as the worker role');
like(slurp_file($node->logfile), qr/registry_migration worker connected to database "gitlab" after \d+ failed attempts/,
	'the log says the connection succeeded in the end');
ok(poll(q{SELECT last_error IS NULL AND last_error_at IS NULL FROM registry_migration.worker_status}),
	'connected, the worker no longer shows the connection error');

# The check hook, with the library loaded: reserved and over-long names are
# refused (22023, nothing written); a plain name is accepted.
for my $bad ('public', 'none', 'pg_read_all_data', 'r' x 64)
{
	my ($rc, $out, $err) = $node->psql('gitlab', "ALTER SYSTEM SET registry_migration.worker_role = '$bad'");
	like($err, qr/invalid value for parameter "registry_migration.worker_role"/, "worker_role '$bad' is refused");
}
query(q{ALTER SYSTEM SET registry_migration.worker_role = 'any_role'; ALTER SYSTEM RESET registry_migration.worker_role;});
pass('a plain role name is accepted');

# ---- a migration with exactly the documented grants ------------------------
query(q{INSERT INTO registry_migration.denied_namespaces VALUES ('denied');
	INSERT INTO registry_migration.repositories (path)
	SELECT 'role/repo-' || i FROM generate_series(1, 6) AS i
	UNION ALL SELECT 'denied/repo';});
ok(poll(q{SELECT count(*) = 6 FROM registry_migration.repositories
	WHERE path LIKE 'role/%' AND state = 'import_done' AND skipped_reason IS NULL}),
	'six repositories migrate, driven by the worker as the worker role');
is(query(q{SELECT state FROM registry_migration.repositories WHERE path = 'denied/repo'}), 'default',
	'the denied one is left alone');
is(query(q{SELECT string_agg(DISTINCT cause, ',' ORDER BY cause) FROM registry_migration.events}),
	'enqueuer,guard', 'both cycles changed repositories');
is(query(q{SELECT retry_after_until IS NOT NULL FROM registry_migration.registry_state}), 't',
	'a Retry-After was recorded in registry_state');
query(q{UPDATE registry_migration.settings SET event_retention = '0'});
ok(poll(q{SELECT count(*) = 0 FROM registry_migration.events}), 'old events are removed');
query(q{UPDATE registry_migration.settings SET event_retention = '30 days'});
is(query(q{SELECT last_error IS NULL AND (cycles->'guard'->>'error')::int = 0
	AND (cycles->'enqueue'->>'error')::int = 0 FROM registry_migration.worker_status}), 't',
	'no error since the worker connected');
is(query("SELECT rolsuper FROM pg_roles WHERE rolname = '$role'"), 'f', 'the worker role is no superuser');

# ---- a missing grant ---------------------------------------------------------
$pid = worker_pid();
query("REVOKE UPDATE ON registry_migration.repositories FROM $role");
query(q{INSERT INTO registry_migration.repositories (path) VALUES ('grant/missing')});
my $missing = qq{role "$role" has no UPDATE privilege on column "state" of table registry_migration.repositories};
ok(poll(qq{SELECT last_error = '$missing' FROM registry_migration.worker_status}),
	'without UPDATE on repositories the cycles fail with a clear last_error');
like(slurp_file($node->logfile), qr/ERROR:  \Q$missing\E/, '... which is in the server log');
sleep 3;
is(worker_pid(), $pid, 'the worker keeps running (same pid)');
is(query(q{SELECT state FROM registry_migration.repositories WHERE path = 'grant/missing'}), 'default',
	'nothing was changed ...');
is(scalar(grep { ($_->{repository} // '') eq 'grant/missing' } @{ $sim->requests }), 0,
	'... and nothing was sent to the registry');
query($_) for @grants;
ok(poll(q{SELECT state = 'import_done' FROM registry_migration.repositories WHERE path = 'grant/missing'}),
	'granted again, the worker migrates it');

# Every documented grant is needed: without it, the worker says which.
for my $grant (grep { !/ON DATABASE/ } @grants)
{
	my ($privileges, $table, $grantee) = $grant =~ /^GRANT (.*) ON (\S+) TO (\S+)$/s or die "unexpected: $grant";
	my $before = query(q{SELECT coalesce(last_error_at, '-infinity') FROM registry_migration.worker_status});
	query("REVOKE $privileges ON $table FROM $grantee");
	my $short = $table =~ s/^registry_migration\.//r;
	ok(poll(qq{SELECT last_error_at > '$before' AND last_error LIKE 'role "$role" has no % privilege on %table registry_migration.$short'
		FROM registry_migration.worker_status}), "without the grant on $table the worker says so");
	query($grant);
}
is(worker_pid(), $pid, 'the worker ran through all of it without a restart');

# ---- a superuser role is refused -------------------------------------------
query("ALTER ROLE $role SUPERUSER");
ok(poll(qq{SELECT activity = 'idle: role "$role" is a superuser'
	AND last_error = 'registry_migration.worker_role "$role" is a superuser' FROM registry_migration.worker_status}),
	'a superuser worker role idles with a clear error');
like(slurp_file($node->logfile), qr/WARNING:  registry_migration.worker_role "$role" is a superuser/,
	'... also in the server log');
query(q{INSERT INTO registry_migration.repositories (path) VALUES ('superuser/waits')});
sleep 1;
is(query(q{SELECT state FROM registry_migration.repositories WHERE path = 'superuser/waits'}), 'default',
	'no cycle runs as a superuser');
query("ALTER ROLE $role NOSUPERUSER");
ok(poll(q{SELECT state = 'import_done' FROM registry_migration.repositories WHERE path = 'superuser/waits'}),
	'after NOSUPERUSER the worker goes on');
ok(poll(q{SELECT last_error IS NULL FROM registry_migration.worker_status}),
	'... and its cycles clear the error about the role');
is(worker_pid(), $pid, 'still the same worker');

# ---- the worker's search path is pinned ------------------------------------
# The owner of the database is not a superuser. An operator of its own on
# migration_state, first on the database's search path, would run with the
# rights of whoever evaluates "state = ..." — here the worker as the
# bootstrap superuser — and make its owner a superuser.
query(q{CREATE ROLE attacker LOGIN; ALTER DATABASE gitlab OWNER TO attacker;});
$node->safe_psql('gitlab', q{
	CREATE SCHEMA evil;
	CREATE TABLE evil.calls (caller name, at timestamptz DEFAULT clock_timestamp());
	GRANT INSERT ON evil.calls TO PUBLIC;
	CREATE FUNCTION evil.eq(a registry_migration.migration_state, b registry_migration.migration_state)
	RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO evil.calls (caller) VALUES (current_user);
		BEGIN
			ALTER ROLE attacker SUPERUSER;
		EXCEPTION WHEN insufficient_privilege THEN
			NULL;
		END;
		RETURN a::text = b::text;
	END $$;
	CREATE OPERATOR evil.= (LEFTARG = registry_migration.migration_state,
		RIGHTARG = registry_migration.migration_state, FUNCTION = evil.eq);
	ALTER DATABASE gitlab SET search_path = evil, public;},
	extra_params => [ '-U', 'attacker' ]);
# The worker as the bootstrap superuser; a stale pre-import for the guard.
$node->append_conf('postgresql.conf', "registry_migration.worker_role = ''\n");
$node->restart;
# From here on, the test's own sessions must not resolve "=" to evil.= either.
$ENV{PGOPTIONS} = '-c search_path=pg_catalog,registry_migration';
$node->safe_psql('gitlab', q{
	UPDATE registry_migration.settings SET enabled = false;
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
	VALUES ('evil/stale', 'pre_importing', now() - interval '1 hour');});
ok($node->poll_query_until('gitlab', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'registry_migration worker' AND usename = current_user}),
	'the worker runs as the bootstrap superuser again');
ok($node->poll_query_until('gitlab', q{SELECT state <> 'pre_importing'
	FROM registry_migration.repositories WHERE path = 'evil/stale'}), 'the guard handled the stale repository');
sleep 1;    # a few more guard cycles
cmp_ok($node->safe_psql('gitlab', q{SELECT extract(epoch FROM now() - last_guard_at)
	FROM registry_migration.worker_status}), '<', 1, 'guard cycles go on');
is($node->safe_psql('gitlab', q{SELECT count(*) FROM evil.calls}), '0',
	"the worker never called the database owner's operator");
is($node->safe_psql('gitlab', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker'}), 'f',
	'the database owner did not become a superuser');

unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no crash in the server log');
$node->stop;
done_testing();
