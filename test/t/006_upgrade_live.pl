# The upgrade from 1.0 as an operator does it in production: the server runs
# the current library (preloaded, its background worker migrating a populated
# 1.0 database against the registry, notifications arriving), and
# ALTER EXTENSION registry_migration UPDATE runs in the middle of the
# migration. The same worker process goes on through the upgrade without an
# error, the migration completes with nothing lost or retried, and the
# per-state counts that 1.1 adds are right. First, in a database of its own,
# a writer half-way through its transaction: the update neither deadlocks
# with it nor waits beyond lock_timeout.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;

my $total = 120;
my $sim = RegistrySimulator->new(pre_import_seconds => 0.3, import_seconds => 0.2, auto_create => 1);

my $node = PostgreSQL::Test::Cluster->new('upgrade_live');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.enqueue_interval = '200ms'",
	"registry_migration.guard_interval = '500ms'",
	# A lock wait in the worker or in the upgrade shows in the log.
	"log_lock_waits = on",
	"deadlock_timeout = '100ms'", ''));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub extversion { return sql(q{SELECT extversion FROM pg_extension WHERE extname = 'registry_migration'}) }

sub worker_pid
{
	return sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'registry_migration worker'});
}

# ---- a 1.0 database served by the current library ---------------------------
sql(q{CREATE EXTENSION registry_migration VERSION '1.0'});
is(extversion(), '1.0', 'the database starts at 1.0');

# Between the restart onto the new library and the ALTER EXTENSION, every C
# function of 1.0's SQL must still be found in the library.
my @symbols = split /\n/, sql(q{
	SELECT DISTINCT p.prosrc FROM pg_proc p
	  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'registry_migration'
	 WHERE p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') ORDER BY 1});
cmp_ok(scalar(@symbols), '>=', 10, scalar(@symbols) . ' C functions in 1.0');
my @missing;
for my $symbol (@symbols)
{
	my ($rc, $out, $err) = $node->psql('postgres', "BEGIN; CREATE FUNCTION public.probe() RETURNS void
		LANGUAGE c AS '\$libdir/registry_migration', '$symbol'; ROLLBACK;");
	push @missing, $symbol if $rc != 0;
}
is("@missing", '', "the library serves every C function of 1.0's SQL");

# ---- a writer that holds one table and then needs another -------------------
# In a database of its own: a transaction that changed a repository and,
# while the update runs, goes on to write registry_state (as a cycle does
# when the registry answers 429). The update must let it finish; taking its
# locks one statement at a time, it held registry_state and waited for the
# repository while the writer waited for it: a deadlock.
sql(q{CREATE DATABASE lock_order});
$node->safe_psql('lock_order', q{CREATE EXTENSION registry_migration VERSION '1.0';
	INSERT INTO registry_migration.repositories (path) VALUES ('held/a')});
my $writer = $node->background_psql('lock_order', on_error_stop => 0);
$writer->query_safe(q{BEGIN; UPDATE registry_migration.repositories SET plan = 'gold' WHERE path = 'held/a'});
my ($timeout_rc, $timeout_out, $timeout_err) = $node->psql('lock_order',
	"SET lock_timeout = '300ms'; ALTER EXTENSION registry_migration UPDATE TO '1.1'",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($timeout_err, qr/55P03: the update could not lock the extension's tables within lock_timeout/,
	'with a lock_timeout, an update that cannot lock its tables gives up with 55P03');
is($node->safe_psql('lock_order', q{SELECT extversion FROM pg_extension WHERE extname = 'registry_migration'}),
	'1.0', 'and leaves the database at 1.0');
my ($order_out, $order_err) = ('', '');
my $order_update = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('lock_order'),
		'-c', "ALTER EXTENSION registry_migration UPDATE TO '1.1'" ],
	'<', \undef, '>', \$order_out, '2>', \$order_err);
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE datname = 'lock_order' AND query LIKE 'ALTER EXTENSION%'
	  AND (wait_event_type = 'Lock' OR wait_event = 'PgSleep')}),
	'the update waits for the writer');
my (undef, $state_failed) = $writer->query(q{UPDATE registry_migration.registry_state SET retry_after_until = NULL});
my (undef, $commit_failed) = $writer->query('COMMIT');
is("$state_failed $commit_failed", '0 0', 'the writer goes on and commits while the update waits')
  or diag($writer->{stderr});
$writer->quit;
$order_update->finish;
is($order_err, '', 'and then the update succeeds');
is($node->safe_psql('lock_order', q{SELECT extversion || ' ' || (SELECT plan FROM registry_migration.repositories)
	FROM pg_extension WHERE extname = 'registry_migration'}), '1.1 gold', 'both changes stand');

# The registry sends notifications; the application delivers them. Here the
# test is the application: it delivers what the registry sent so far.
my $delivered = 0;
my $refused = 0;
sub deliver_notifications
{
	my @new = sort { $a->{seq} <=> $b->{seq} } grep { $_->{seq} > $delivered } @{ $sim->notifications };
	return unless @new;
	$delivered = $new[-1]->{seq};
	# One session, one transaction per notification, as a receiver does.
	my ($rc, $out, $err) = $node->psql('postgres', join('', map {
		"SELECT registry_migration.handle_notification('$_->{path}', '$_->{status}');\n" } @new),
		on_error_stop => 0);
	$refused += () = $err =~ /ERROR/g;
}

sub wait_delivering
{
	my ($query) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		deliver_notifications();
		return 1 if sql($query) eq 't';
		select(undef, undef, undef, 0.05);
	}
	return 0;
}

sql(qq{INSERT INTO registry_migration.repositories (path)
	SELECT 'live/repo-' || i FROM generate_series(1, $total) AS i});
sql(q{UPDATE registry_migration.settings
	SET enabled = true, capacity = 10, max_tags_count = 0, max_step_duration = '3s'});
ok(wait_delivering(q{SELECT count(*) FILTER (WHERE state = 'import_done') >= 30
	AND count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing')) > 0
	FROM registry_migration.repositories}),
	'the worker migrates on 1.0: some repositories done, some in process');

# ---- the upgrade, in the middle of the migration -----------------------------
my $pid = worker_pid();
like($pid, qr/^\d+$/, 'the worker runs');
my $log_offset = -s $node->logfile;
my $in_process = sql(q{SELECT count(*) FROM registry_migration.repositories
	WHERE state IN ('pre_importing', 'pre_import_done', 'importing')});
# The update runs in the background, its transaction held open a moment so
# that the worker's cycles and the notifications, delivered meanwhile, meet
# its locks.
my ($upgrade_out, $upgrade_err) = ('', '');
my $upgrade = IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		'-c', 'BEGIN', '-c', "ALTER EXTENSION registry_migration UPDATE TO '1.1'",
		'-c', 'SELECT pg_sleep(1)', '-c', 'COMMIT' ],
	'<', \undef, '>', \$upgrade_out, '2>', \$upgrade_err);
while ($upgrade->pumpable)
{
	deliver_notifications();
	$upgrade->pump_nb;
	select(undef, undef, undef, 0.05);
}
$upgrade->finish;
is($upgrade_err, '', "ALTER EXTENSION ... UPDATE TO '1.1' succeeds while $in_process repositories are in process");
is(extversion(), '1.1', 'the database is at 1.1');
my $since_upgrade = sql('SELECT clock_timestamp()');

# ---- the migration goes on ---------------------------------------------------
ok(wait_delivering(qq{SELECT last_enqueue_at > '$since_upgrade' AND last_guard_at > '$since_upgrade'
	FROM registry_migration.worker_status}), 'the worker runs both cycles after the upgrade');
is(worker_pid(), $pid, 'the same worker process: it was neither restarted nor crashed');
ok(wait_delivering(q{SELECT count(*) = 0 FROM registry_migration.repositories
	WHERE state NOT IN ('import_done', 'import_skipped')}), 'the migration completes after the upgrade');
deliver_notifications();

is(sql(q{SELECT count(*) || ' ' || count(*) FILTER (WHERE state = 'import_done' AND skipped_reason IS NULL)
	FROM registry_migration.repositories}), "$total $total", "all $total repositories imported, none lost");
is(sql(q{SELECT count(*) FROM registry_migration.repositories WHERE retries_count > 0}), '0',
	'no retry spent on the upgrade');
is(sql(q{SELECT count(*) FROM registry_migration.repositories r
	WHERE NOT EXISTS (SELECT FROM registry_migration.events e
	                   WHERE e.repository_id = r.id AND e.new_state = 'import_done')}), '0',
	'the event log records the import of every repository');
cmp_ok(sql(qq{SELECT count(*) FROM registry_migration.events
	WHERE cause = 'notification' AND at > '$since_upgrade'}), '>', 0,
	'notifications changed repositories after the upgrade');
cmp_ok($sim->state->{peak_running_steps}, "<=", 10, 'capacity held at the registry across the upgrade');

# The counts 1.1 keeps by trigger: right, and nothing for recount_states() to repair.
is(sql(q{SELECT string_agg(state || '=' || repositories, ' ' ORDER BY state)
	FROM registry_migration.state_counts WHERE repositories > 0}), "import_done=$total",
	'state_counts after the upgrade');
is(sql(q{SELECT done || ' ' || skipped || ' ' || remaining || ' ' || in_process
	FROM registry_migration.progress}), "$total 0 0 0", 'progress after the upgrade');
is(sql(q{SELECT count(*) FROM registry_migration.recount_states()}), '0',
	'recount_states() finds nothing to repair: the counts were right through the upgrade');

# The worker and the notifications never failed over the upgrade.
my $log = substr(slurp_file($node->logfile), $log_offset);
my @errors = grep { /\b(ERROR|FATAL|PANIC):/ } split /\n/, $log;
is(scalar(@errors), 0, 'no error in the server log since the upgrade began')
  or diag(join("\n", @errors[0 .. ($#errors < 20 ? $#errors : 19)]));
like($log, qr/process $pid still waiting for \w+Lock/, "the worker met the update's locks and waited");
is($refused, 0, 'every notification was accepted');
is(sql('SELECT last_error IS NULL FROM registry_migration.worker_status'), 't',
	'worker_status shows no error');

$sim->stop;
$node->stop;
done_testing();
