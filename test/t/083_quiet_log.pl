# What reaches the server log. A cycle with nothing to do (nothing to
# start, held by the capacity, the waiting time, a pause or a pending
# Retry-After; a guard whose stale steps all still run) logs its summary at
# DEBUG1; a cycle that changed something, met a problem or could not run
# logs at log_level. So an idle worker writes no line at all. And what the
# registry does routinely — a duplicate or a late notification — is a
# no-change event, never an ERROR in the server log; only the refusals the
# contract names are errors.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_enqueuer_test('quiet_log');

# The server log written since $offset.
sub log_since { return substr(slurp_file($node->logfile), $_[0]) }

# Run a cycle with this session's log at DEBUG1 and return its summary line
# as "LEVEL text" (DEBUG, LOG, ...).
sub cycle_line
{
	my ($kind, $pre) = @_;
	my $offset = -s $node->logfile;
	sql(($pre // '') . "SET log_min_messages = debug1; SELECT registry_migration.run_$kind()");
	my ($level, $text) = log_since($offset) =~ /\b([A-Z]+\d?):  registry_migration (\w+ cycle.*)$/m;
	return defined $level ? "$level $text" : 'no summary line';
}

# ---- cycles with nothing to do: DEBUG1 ----------------------------------------------

my $t = time();
fresh();
like(cycle_line('enqueuer'), qr/^DEBUG enqueuer cycle stopped: nothing_to_do, /,
	'an enqueuer with nothing to do logs at DEBUG1');
like(cycle_line('guard'), qr/^DEBUG guard cycle: 0 stale, /, 'a guard with no stale step logs at DEBUG1');
settings(enabled => 'false');
like(cycle_line('enqueuer'), qr/^DEBUG enqueuer cycle stopped: disabled, /, 'paused: DEBUG1');
settings(enabled => 'true', capacity => 1);
put_row('q/running', 'pre_importing', pre_import_started_at => 'now()');
db_add('q/waiting');
like(cycle_line('enqueuer'), qr/^DEBUG enqueuer cycle stopped: at_capacity, .*started 0/,
	'at capacity, nothing started: DEBUG1');
settings(capacity => 10, enqueue_waiting_time => q{'1 hour'});
put_row('q/finished', 'import_done', import_done_at => 'now()');
like(cycle_line('enqueuer'), qr/^DEBUG enqueuer cycle stopped: waiting_time, /, 'the waiting time: DEBUG1');
settings(enqueue_waiting_time => q{'0'});
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = now() + interval '1 minute'});
like(cycle_line('enqueuer'), qr/^DEBUG enqueuer cycle stopped: retry_after, /, 'a pending Retry-After: DEBUG1');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = NULL});

# A guard whose stale step the registry still runs, within its threshold.
settings(max_step_duration => q{'0'}, pre_import_timeout => q{'1 hour'});
sim_running('q/running', 'pre');
like(cycle_line('guard'), qr/^DEBUG guard cycle: 1 stale, .*left_alone 1, errors 0; left_alone_reasons: running 1$/,
	'a guard that leaves a running step alone logs at DEBUG1, saying why');

# ---- cycles that change something or meet a problem: log_level ------------------------

$sim->add_repositories({ path => 'q/waiting' });
like(cycle_line('enqueuer'), qr/^LOG enqueuer cycle stopped: \w+, .*started 1/,
	'an enqueuer that started a repository logs at log_level (LOG)');
$sim->set_faults(fault({ kind => 'status', path => 'q/running' }, respond(503)));
like(cycle_line('guard'), qr/^LOG guard cycle: 2 stale, .*left_alone 2, .*left_alone_reasons: running 1, registry_unavailable 1$/,
	'a guard the registry cannot answer for one of its steps logs at LOG');
$sim->clear_faults;
my ($holder) = psql_bg('SELECT pg_advisory_lock(1380798791, 2); SELECT pg_sleep(30);');
ok(wait_until(sub { sql(q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 2 AND granted}) }),
	'a session holds the enqueuer lock');
like(cycle_line('enqueuer'), qr/^LOG enqueuer cycle stopped: another_cycle_running \(another cycle was running\)/,
	'a cycle that could not run says so at LOG');
sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cycle_worker'});
$holder->kill_kill;
$node->append_conf('postgresql.conf', "registry_migration.log_level = warning\n");
$node->reload;
settings(enabled => 'false');
like(cycle_line('enqueuer'), qr/^DEBUG enqueuer cycle stopped: disabled/, 'log_level warning: nothing to do is still DEBUG1');
settings(enabled => 'true');
$sim->add_repositories({ path => 'q/third' });
db_add('q/third');
like(cycle_line('enqueuer'), qr/^WARNING enqueuer cycle stopped: .*started 1/, '... a change is at WARNING');
section_time('cycle log levels', $t);

# ---- duplicate and late notifications are never an ERROR --------------------------------

$t = time();
fresh();
put_row('n/pre', 'pre_importing', pre_import_started_at => ago('1 hour'));
put_row('n/imp', 'importing', pre_import_started_at => ago('2 hours'), pre_import_done_at => ago('1 hour'),
	import_started_at => ago('1 hour'));
put_row('n/done', 'import_done', import_done_at => ago('1 hour'));
put_row('n/aborted', 'import_aborted', pre_import_started_at => ago('1 day'), aborted_at => ago('1 hour'),
	retries_count => 1, aborted_in_state => q{'pre_importing'});
put_row('n/young', 'pre_importing', pre_import_started_at => 'now()');
my $offset = -s $node->logfile;
my @delivered = map { my ($p, $s) = @$_; "$p $s -> " . sql("SELECT registry_migration.handle_notification('$p', '$s')") } (
	[ 'n/pre', 'pre_import_complete' ], [ 'n/pre', 'pre_import_complete' ],    # applied, then a duplicate
	[ 'n/imp', 'pre_import_complete' ],                                        # late: the import runs
	[ 'n/done', 'import_complete' ], [ 'n/done', 'import_failed' ],             # duplicate; late
	[ 'n/aborted', 'pre_import_failed' ],                                      # already handled
	[ 'n/young', 'pre_import_failed' ], [ 'n/young', 'pre_import_failed' ]);   # held for the guard, twice
is_deeply(\@delivered, [
	'n/pre pre_import_complete -> pre_import_done', 'n/pre pre_import_complete -> pre_import_done',
	'n/imp pre_import_complete -> importing',
	'n/done import_complete -> import_done', 'n/done import_failed -> import_done',
	'n/aborted pre_import_failed -> import_aborted',
	'n/young pre_import_failed -> pre_importing', 'n/young pre_import_failed -> pre_importing' ],
	'duplicate and late notifications are answered with the state, as calls that succeed');
is(join(' | ', map { events_of($_) } qw(n/pre n/imp n/done n/aborted n/young)),
	'pre_importing>pre_import_done:finish_pre_import pre_import_done>pre_import_done:notification'
	  . ' | importing>importing:notification'
	  . ' | import_done>import_done:notification import_done>import_done:notification'
	  . ' | import_aborted>import_aborted:notification'
	  . ' | pre_importing>pre_importing:failure_pending pre_importing>pre_importing:failure_pending',
	'... each recorded as an event, the harmless ones with new_state = old_state');
my $log = log_since($offset);
unlike($log, qr/ERROR:/, '... and none of them put an ERROR in the server log');

# The refusals the contract names stay errors: the same check sees them.
my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT registry_migration.handle_notification('n/unknown', 'import_complete')});
like($err, qr/does not exist/, 'a notification for an unknown repository is refused');
like(log_since($offset), qr/ERROR:  repository "n\/unknown" does not exist/, '... as an ERROR in the server log');
section_time('notifications', $t);

# ---- an idle worker writes nothing -----------------------------------------------------

$t = time();
my $wsim = RegistrySimulator->new(pre_import_seconds => 600, auto_create => 1);
my $worker_node = start_node('quiet_worker', sim => $wsim, conf => [
	"shared_preload_libraries = 'registry_migration'", "registry_migration.database = 'postgres'",
	"registry_migration.enqueue_interval = '100ms'", "registry_migration.guard_interval = '200ms'" ]);
use_node($node, $sim);    # the helpers stay on the first node
$worker_node->safe_psql('postgres', q{UPDATE registry_migration.settings
	   SET enabled = true, capacity = 1, max_tags_count = 0, max_step_duration = '0',
	       pre_import_timeout = '1 hour';});
ok($worker_node->poll_query_until('postgres', q{SELECT last_guard_at IS NOT NULL AND last_enqueue_at IS NOT NULL
	FROM registry_migration.worker_status}), 'the worker runs its cycles');

# Cycles the worker ran in $seconds, and its summary lines in the log meanwhile.
sub worker_quiet_for
{
	my ($seconds) = @_;
	my $offset = -s $worker_node->logfile;
	my $cycles = 0;
	my $last = '';
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		my $at = $worker_node->safe_psql('postgres', 'SELECT last_enqueue_at FROM registry_migration.worker_status');
		$cycles++ if $at ne $last;
		$last = $at;
		sleep 0.05;
	}
	my @lines = grep { /registry_migration (enqueuer|guard) cycle/ }
	  split /\n/, substr(slurp_file($worker_node->logfile), $offset);
	return ($cycles, scalar @lines);
}
my ($cycles, $lines) = worker_quiet_for(3);
cmp_ok($cycles, '>=', 10, "nothing in process: the worker ran $cycles enqueue cycles in 3 s");
is($lines, 0, '... and wrote no summary line');
$worker_node->safe_psql('postgres', q{INSERT INTO registry_migration.repositories (path) VALUES ('w/one'), ('w/two')});
ok($worker_node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM registry_migration.repositories
	WHERE state = 'pre_importing'}), 'a repository is started');
ok(wait_until(sub { slurp_file($worker_node->logfile) =~ /LOG:  registry_migration enqueuer cycle stopped: \w+, .*started 1/ }),
	'... and that cycle is in the log at LOG');
sleep 0.5;
($cycles, $lines) = worker_quiet_for(3);
cmp_ok($cycles, '>=', 10, "one step running, at capacity: $cycles enqueue cycles in 3 s");
is($lines, 0, '... no summary line either (the guard leaves the running step alone)');
is($worker_node->safe_psql('postgres', q{SELECT last_guard_summary->'left_alone_reasons'->>'running'
	FROM registry_migration.worker_status}), '1', "... worker_status shows why the guard left it alone");
$worker_node->stop;
$wsim->stop;
section_time('idle worker', $t);

end_test();
