# pg_cron drives the same cycles with the README's recipe, CALL
# registry_migration.guard() and CALL registry_migration.enqueue(), while
# the worker is off; with the worker on as well, a cycle never runs twice
# at once, whoever holds it (here a session holding the enqueuer's lock).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;

my $sim = RegistrySimulator->new(pre_import_seconds => 30, auto_create => 1);
my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'pg_cron,registry_migration'",
	"cron.database_name = 'postgres'",
	"cron.use_background_workers = on",
	"max_worker_processes = 16",
	"registry_migration.worker_enabled = off",
	"registry_migration.enqueue_interval = '200ms'",
	"registry_migration.registry_url = '" . $sim->url . "'", ''));
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	CREATE EXTENSION registry_migration;
	UPDATE registry_migration.settings SET enabled = true, capacity = 1, max_tags_count = 0;
	INSERT INTO registry_migration.repositories (path) VALUES ('cron/first'), ('cron/second');
	SELECT cron.schedule('registry-migration-guard', '* * * * *', 'CALL registry_migration.guard()');
	SELECT cron.schedule('registry-migration-enqueuer', '* * * * *', 'CALL registry_migration.enqueue()');});

# The log lines the last enqueuer job's process wrote.
sub last_enqueue_job_log
{
	my $pid = $node->safe_psql('postgres', q{SELECT d.job_pid FROM cron.job_run_details d
		JOIN cron.job j USING (jobid) WHERE j.jobname = 'registry-migration-enqueuer'
		ORDER BY d.start_time DESC LIMIT 1});
	return join('', grep { /\[$pid\]/ } split /^/, slurp_file($node->logfile));
}

# The first runs come at the next minute boundary.
ok($node->poll_query_until('postgres', q{SELECT count(DISTINCT jobid) = 2 FROM cron.job_run_details
	WHERE status = 'succeeded'}, 't'), 'both pg_cron jobs ran and succeeded');
is($node->safe_psql('postgres', q{SELECT state FROM registry_migration.repositories WHERE path = 'cron/first'}),
	'pre_importing', 'with the worker off, the enqueue() job started a repository');
like(last_enqueue_job_log(), qr/registry_migration enqueuer cycle stopped: at_capacity, .*started 1/,
	'... and logged its summary');

# Worker on as well; a session holds the enqueuer's cycle lock across the next run.
$node->append_conf('postgresql.conf', "registry_migration.worker_enabled = on\n");
$node->reload;
# The session lives until the next minute's run and past it: its own timer
# must outlast that wait, whatever the default test timeout is.
my $holder = $node->background_psql('postgres', timeout => 300);
$holder->query_safe('SELECT pg_advisory_lock(1380798791, 2)');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2 FROM cron.job_run_details d
	JOIN cron.job j USING (jobid) WHERE j.jobname = 'registry-migration-enqueuer'
	AND d.status = 'succeeded'}), 'the next pg_cron run came');
like(last_enqueue_job_log(), qr/enqueuer cycle stopped: another_cycle_running \(another cycle was running\)/,
	'while another caller holds the enqueue cycle, the pg_cron run returns at once');
like($node->safe_psql('postgres', q{SELECT last_enqueue_summary->>'stopped' FROM registry_migration.worker_status}),
	qr/^another_cycle_running$/, 'and so does the worker');
$holder->query_safe('SELECT pg_advisory_unlock(1380798791, 2)');
$holder->quit;
ok($node->poll_query_until('postgres', q{SELECT last_enqueue_summary->>'ran' = 'true'
	FROM registry_migration.worker_status}), 'the worker runs cycles again once the lock is free');

$node->stop;
done_testing();
