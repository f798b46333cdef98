# The background worker: with the library preloaded, a migration
# through the simulator completes with no SQL call but the setup; it is
# woken by committed (not rolled-back) changes; reloads change its
# intervals; it follows a token key replaced under it; it survives
# termination and SIGKILL, DROP DATABASE of another database and DROP
# EXTENSION; it idles on a standby; it leaves its own database when that is
# dropped, and returns when it is re-created.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use File::Copy;
use NotificationReceiver;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(usleep);

my $sim = RegistrySimulator->new(pre_import_seconds => 0.2, import_seconds => 0.1, auto_create => 1);

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.enqueue_interval = '300ms'",
	"registry_migration.guard_interval = '1s'",
	"restart_after_crash = on", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');

# The application that receives notifications and calls handle_notification.
my $receiver = NotificationReceiver->new(node => $node, secret => 's3cret');
$sim->configure(notify_url => $receiver->notify_url, notify_secret => 's3cret');

sub worker_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'registry_migration worker'});
}

sub add_repositories
{
	my ($prefix, $count) = @_;
	$node->safe_psql('postgres', "INSERT INTO registry_migration.repositories (path)
		SELECT '$prefix/repo-' || i FROM generate_series(1, $count) AS i");
}

sub all_done
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM registry_migration.repositories
		WHERE state NOT IN ('import_done', 'import_skipped')}), $what);
}

# ---- the worker is there and reports itself --------------------------------
my $pid = worker_pid();
like($pid, qr/^\d+$/, 'one worker, with a stable backend_type in pg_stat_activity');
ok($node->poll_query_until('postgres', "SELECT pid = $pid AND database = 'postgres'
	FROM registry_migration.worker_status"), 'worker_status shows its pid and database');

# ---- log_level accepts its levels --------------------------------------------
# Written by ALTER SYSTEM and removed again, without a reload. (Here rather
# than in the regression suite, which may run on a DBA's server and writes
# nothing to its configuration.)
for my $level (qw(info debug1 warning))
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET registry_migration.log_level = '$level'");
	is($node->safe_psql('postgres', q{SELECT setting || coalesce(' ' || error, '') FROM pg_file_settings
		WHERE name = 'registry_migration.log_level' AND sourcefile LIKE '%/postgresql.auto.conf'}),
		$level, "log_level = '$level' is accepted and written");
}
$node->safe_psql('postgres', 'ALTER SYSTEM RESET registry_migration.log_level');

# ---- a migration with no SQL call but the setup ----------------------------
add_repositories('first', 40);
$node->safe_psql('postgres', q{UPDATE registry_migration.settings
	SET enabled = true, capacity = 5, max_tags_count = 0, max_step_duration = '5s'});
all_done('40 repositories migrate, driven by the worker alone');
is($node->safe_psql('postgres', q{SELECT count(*) FROM registry_migration.repositories
	WHERE state = 'import_done' AND skipped_reason IS NULL}), '40', 'all 40 imported');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT cause, ',' ORDER BY cause)
	FROM registry_migration.events}), 'enqueuer,notification',
	'the work came from the enqueuer and the notifications');
cmp_ok($sim->state->{peak_running_steps}, '<=', 5, 'never more than capacity at the registry');
ok($node->safe_psql('postgres', q{SELECT last_enqueue_at IS NOT NULL AND last_guard_at IS NOT NULL
	AND last_enqueue_summary ? 'stopped' FROM registry_migration.worker_status}) eq 't',
	'worker_status shows the last cycles and their summaries');

$node->safe_psql('postgres', 'SELECT pg_stat_force_next_flush()');
cmp_ok($node->safe_psql('postgres', q{SELECT n_tup_upd FROM pg_stat_user_tables
	WHERE relid = 'registry_migration.repositories'::regclass}), '>', 0,
	"the worker's writes are in the statistics autovacuum reads");

# ---- reload: intervals, wake on commit, no wake on rollback ----------------
$node->append_conf('postgresql.conf',
	"registry_migration.enqueue_interval = '1h'\nregistry_migration.guard_interval = '1h'\n");
$node->reload;
usleep(700_000);
my $last = $node->safe_psql('postgres', 'SELECT last_enqueue_at FROM registry_migration.worker_status');
sleep 2;
is($node->safe_psql('postgres', 'SELECT last_enqueue_at FROM registry_migration.worker_status'), $last,
	'after a reload to 1h, no enqueue cycle runs by itself');

$node->safe_psql('postgres', q{
	UPDATE registry_migration.settings SET capacity = 1;
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at, pre_import_done_at,
	                                             import_started_at)
	VALUES ('wake/busy', 'importing', now(), now(), now());
	INSERT INTO registry_migration.repositories (path) VALUES ('wake/next');});
$node->safe_psql('postgres', q{BEGIN;
	SELECT registry_migration.handle_notification('wake/busy', 'import_complete');
	ROLLBACK;});
sleep 2;
is($node->safe_psql('postgres', q{SELECT state FROM registry_migration.repositories WHERE path = 'wake/next'}),
	'default', 'a rolled-back notification does not wake the worker');
$node->safe_psql('postgres', q{SELECT registry_migration.handle_notification('wake/busy', 'import_complete')});
ok($node->poll_query_until('postgres', q{SELECT state <> 'default' FROM registry_migration.repositories
	WHERE path = 'wake/next'}), 'a committed notification wakes the worker, which fills the freed slot');

$node->append_conf('postgresql.conf', "registry_migration.worker_enabled = off\n");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT activity LIKE 'idle: %worker_enabled is off'
	FROM registry_migration.worker_status}), 'worker_enabled = off idles the worker');
$node->append_conf('postgresql.conf', join("\n", "registry_migration.worker_enabled = on",
	"registry_migration.enqueue_interval = '200ms'", "registry_migration.guard_interval = '1s'", ''));
$node->reload;
$last = $node->safe_psql('postgres', 'SELECT last_enqueue_at FROM registry_migration.worker_status');
ok($node->poll_query_until('postgres', "SELECT last_enqueue_at > '$last' FROM registry_migration.worker_status"),
	'a reload back to 200ms restarts the cycles');
all_done('the woken repository finishes too');

# ---- termination and SIGKILL in the middle of a migration ------------------
$sim->configure(latency_ms => 100);
add_repositories('second', 30);
$node->safe_psql('postgres', q{UPDATE registry_migration.settings SET capacity = 10});
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM registry_migration.repositories
	WHERE path LIKE 'second/%' AND state <> 'default'});
$pid = worker_pid();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'registry_migration worker' AND pid <> $pid"), 'a terminated worker comes back');
all_done('the migration completes after the termination');

add_repositories('third', 30);
$node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM registry_migration.repositories
	WHERE path LIKE 'third/%' AND state <> 'default'});
$pid = worker_pid();
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'registry_migration worker' AND pid <> $pid"),
	'after SIGKILL (crash restart) the worker comes back');
all_done('the migration completes after the crash, nothing stuck');
is($node->safe_psql('postgres', q{SELECT count(*) FROM registry_migration.repositories
	WHERE retries_count > 0 OR state <> 'import_done'}), '0', 'nothing lost, no retry spent');
$sim->configure(latency_ms => 0);

# ---- termination while the worker waits on a hung registry -----------------
$node->append_conf('postgresql.conf', "registry_migration.request_timeout = '60s'\n");
$node->reload;
$sim->set_faults({ match => { kind => 'start' }, action => { type => 'hang', seconds => 120 } });
add_repositories('hung', 1);
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'registry_migration worker' AND query = 'enqueue cycle' AND state = 'active'}),
	'the worker is waiting on a hung start request');
usleep(300_000);
$pid = worker_pid();
my $t0 = Time::HiRes::time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid"),
	'the terminated worker exits');
my $took = Time::HiRes::time() - $t0;
cmp_ok($took, '<', 10, sprintf('... without waiting for the request timeout (%.2f s)', $took));
$sim->clear_faults;
$node->append_conf('postgresql.conf', "registry_migration.request_timeout = '10s'\n");
$node->reload;
all_done('the repository whose start hung is migrated after the restart');

# ---- a guard summary longer than its slot in shared memory -----------------
# A guard batch of stale repositories with ~200-byte paths gives a summary of
# some 20 kB: worker_status must still read (it casts the summary to jsonb),
# showing the lists cut to fit and the full length of each.
$node->safe_psql('postgres', q{UPDATE registry_migration.settings SET enabled = false;
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
	SELECT 'long/' || repeat('x', 190) || '-' || i, 'pre_importing', now() - interval '1 hour'
	  FROM generate_series(1, 300) AS i;});
ok($node->poll_query_until('postgres', q{SELECT s->>'truncated' = 'true' AND (s->>'stale')::int = 100
	AND (SELECT sum(value::int) FROM jsonb_each_text(s->'counts')) >= 100
	AND EXISTS (SELECT FROM jsonb_each_text(s->'counts') AS c WHERE c.value::int > jsonb_array_length(s->c.key))
	FROM (SELECT last_guard_summary AS s FROM registry_migration.worker_status) AS w}),
	'a long guard summary is stored cut to valid JSON, with the length of each list');
note('a cut summary: ', $node->safe_psql('postgres', 'SELECT last_guard_summary FROM registry_migration.worker_status'));
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM registry_migration.repositories
	WHERE path LIKE 'long/%' AND state = 'pre_importing'}), 'the guard handled all 300');
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT * FROM registry_migration.worker_status');
is($err, '', 'worker_status reads without an error afterwards');
$node->safe_psql('postgres', q{DELETE FROM registry_migration.repositories WHERE path LIKE 'long/%';
	UPDATE registry_migration.settings SET enabled = true;});

# ---- DROP DATABASE of another database, DROP EXTENSION ---------------------
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('postgres', 'DROP DATABASE other');
pass('DROP DATABASE of another database is not blocked');

add_repositories('fourth', 20);
$node->safe_psql('postgres', 'DROP EXTENSION registry_migration');
pass('DROP EXTENSION while the worker runs');
usleep(500_000);
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'registry_migration worker'}), '1', 'the worker stays up without the extension');
$node->safe_psql('postgres', q{CREATE EXTENSION registry_migration;
	UPDATE registry_migration.settings
	   SET enabled = true, capacity = 5, max_tags_count = 0, max_step_duration = '5s';});
add_repositories('fifth', 10);
all_done('after CREATE EXTENSION again the worker migrates the new repositories');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal 11|server process .* was terminated by signal (?!9)/,
	'no crash in the server log');

# ---- the token key rotated under the running worker -------------------------
# A registry that trusts only a new key refuses the worker's token until the
# key file is replaced; from the next request on the worker signs with the
# new key, without a reload or a restart.
my $fixtures = "$FindBin::RealBin/../fixtures";
my $keyed = RegistrySimulator->new(pre_import_seconds => 0.2, import_seconds => 0.1, auto_create => 1,
	jwt_public_key => "$fixtures/jwt_rotated_key.pub.pem");
$keyed->configure(notify_url => $receiver->notify_url, notify_secret => 's3cret');
my $keydir = PostgreSQL::Test::Utils::tempdir;
copy("$fixtures/jwt_test_key.pem", "$keydir/worker.key") or die "copy: $!";
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $keyed->url . "'",
	"registry_migration.jwt_private_key_file = '$keydir/worker.key'", ''));
$node->reload;
$node->poll_query_until('postgres',
	"SELECT current_setting('registry_migration.jwt_private_key_file') = '$keydir/worker.key'")
  or die 'the key file setting was not applied';
my $failed_before = $node->safe_psql('postgres',
	q{SELECT (answers->>'failed')::int FROM registry_migration.worker_status});
add_repositories('rotated', 1);
ok($node->poll_query_until('postgres', "SELECT (answers->>'failed')::int > $failed_before
	FROM registry_migration.worker_status"), 'a registry that trusts only a new key refuses the worker\'s token');
is($node->safe_psql('postgres', q{SELECT state FROM registry_migration.repositories
	WHERE path = 'rotated/repo-1'}), 'default', '... and the repository waits');
copy("$fixtures/jwt_rotated_key.pem", "$keydir/worker.key.new") or die "copy: $!";
rename("$keydir/worker.key.new", "$keydir/worker.key") or die "rename: $!";
all_done('the new key renamed over the file: the worker signs with it, without a reload, '
	  . 'and the repository is imported');
ok(scalar(grep { $_->{token_valid} } @{ $keyed->requests }) > 0, '... with tokens the registry verified');
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.jwt_private_key_file = ''", ''));
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('registry_migration.jwt_private_key_file') = ''")
  or die 'the key file setting was not applied';
$keyed->stop;

# ---- a standby keeps the worker idle ---------------------------------------
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
ok($standby->poll_query_until('postgres', q{SELECT activity = 'idle: the server is in recovery'
	FROM registry_migration.worker_status}), 'on a standby the worker idles');
$standby->stop;

# ---- DROP DATABASE of the worker's own database ----------------------------
# A session connected to a database makes DROP DATABASE fail; the worker
# leaves its database when it is dropped (pg_regress drops and re-creates
# contrib_regression, where a DBA may point the worker), and returns once a
# database of that name exists again. A DROP that fails anyway (a role that
# does not own the database) leaves the worker where it is.
$receiver->stop;    # its connections would make the drop fail, as any session's
$pid = worker_pid();
$node->safe_psql('template1', 'CREATE ROLE regress_not_owner LOGIN');
my ($drop_rc, $drop_out, $drop_err) = $node->psql('template1', 'DROP DATABASE postgres',
	extra_params => [ '-U', 'regress_not_owner' ]);
like($drop_err, qr/must be owner of database postgres/, 'a role that does not own it cannot drop it');
is(worker_pid(), $pid, '... and the worker stays connected');
($drop_rc, $drop_out, $drop_err) = $node->psql('template1', 'DROP DATABASE postgres',
	timeout => 30);
is($drop_err, '', 'DROP DATABASE of the database the worker is connected to succeeds');
like(slurp_file($node->logfile), qr/registry_migration worker asked to leave database "postgres", which is being dropped/,
	'... and says so in the log');
$node->safe_psql('template1', 'CREATE DATABASE postgres');
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');
ok($node->poll_query_until('postgres', q{SELECT database = 'postgres' AND activity = 'waiting'
	FROM registry_migration.worker_status}), 'the worker returns to the re-created database');
isnt(worker_pid(), $pid, '... as a new process');

$node->stop;
done_testing();
