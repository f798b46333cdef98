# Concurrent cycles: a second enqueuer or guard while one runs returns at
# once, a repository changed while a cycle waits for the registry is left as
# changed ("state changed"), and capacity holds while several sessions run
# cycles at once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use JSON::PP;
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_enqueuer_test('enqueuer_concurrency');
my ($s, $deadline);

fresh();
$sim->add_repositories({ path => 'cc/slow' }, { path => 'cc/stale', status => 'pre_import_complete' });
db_add('cc/slow');
db_add('cc/stale', state => "'pre_importing'", pre_import_started_at => "now() - interval '1 hour'");
$sim->set_faults(fault({ kind => 'start' }, { type => 'delay', ms => 1500 }, 1),
	fault({ kind => 'status' }, { type => 'delay', ms => 1500 }, 1));
$sim->clear_requests;
my ($first, $first_out) = psql_bg('SELECT registry_migration.run_enqueuer()');
my ($first_guard, $guard_out) = psql_bg('SELECT registry_migration.run_guard()');
$deadline = time() + 10;
sleep 0.05 until (grep { !defined $_->{code} } @{ $sim->requests }) == 2 || time() > $deadline;
my $t0 = time();
my $second = enqueue();
my $second_guard = guard();
my $took = time() - $t0;
is_deeply($second, { ran => JSON::PP::false, stopped => 'another_cycle_running', map { $_ => [] } summary_lists() },
	'a second enqueuer while one runs: {"ran": false, "stopped": "another_cycle_running"}, all lists empty');
is($second_guard->{ran}, JSON::PP::false, 'a second guard while one runs: "ran": false');
ok(!(grep { @{ $second_guard->{$_} } } qw(aborted canceled skipped finished left_alone errors)), '... nothing listed');
cmp_ok($took, '<', 1.2, sprintf('... both return at once (%.2f s), without waiting for the running ones', $took));
$first->finish;
$first_guard->finish;
my $first_s = $json->decode(slurp_file($first_out));
ok($first_s->{ran}, 'the first enqueuer ran') && is_deeply($first_s->{started}, ['cc/slow'], '... and started its repository');
is($json->decode(slurp_file($guard_out))->{stale}, 1, 'the guard ran at the same time as the enqueuer');

# A repository that changes while the cycle waits for the registry: the
# change decided on is dropped and reported as "state changed".
fresh(max_tags_count => 5);
$sim->add_repositories({ path => 'race/ab', status => 'pre_import_failed' }, { path => 'race/new' });
db_aborted('race/ab', '1 hour');
db_add('race/new');
$sim->set_faults(fault({ kind => 'status', path => 'race/ab' }, { type => 'delay', ms => 1000 }),
	fault({ kind => 'tags', path => 'race/new' }, { type => 'delay', ms => 1000 }));
$sim->clear_requests;
my ($racer, $racer_out) = psql_bg('SELECT registry_migration.run_enqueuer()');
sub wait_in_flight
{
	my ($kind) = @_;
	my $deadline = time() + 10;
	sleep 0.02 until (grep { $_->{kind} eq $kind && !defined $_->{code} } @{ $sim->requests }) || time() > $deadline;
}
wait_in_flight('status');
is(sql(q{SELECT registry_migration.reset('race/ab')}), 'default', 'reset while the cycle waits for its status');
wait_in_flight('tags');
is(sql(q{SELECT registry_migration.skip('race/new', 'not_in_plan')}), 'import_skipped',
	'skip while the cycle waits for its tag list');
$racer->finish;
$s = $json->decode(slurp_file($racer_out));
is_deeply($s->{errors}, [ { path => 'race/ab', message => 'state changed' }, { path => 'race/new', message => 'state changed' } ],
	'both listed under errors: state changed');
ok(!(grep { @{ $s->{$_} } } qw(final_imports retried started finished skipped aborted)), '... nothing else done');
is_deeply(sent(), [ 'GET status race/ab', 'GET tags race/new n=6' ], '... no start sent');
is(state_of('race/ab') . ' ' . state_of('race/new'), 'default import_skipped', '... the changes made meanwhile stand');

# A change meanwhile that leaves the migration state as it was (here the
# plan) does not drop the registry's answer: the start it accepted is
# recorded, and the change stands too. race/plan429 also ends its run of
# 429s with that answer.
fresh();
$sim->add_repositories({ path => 'race/plan' }, { path => 'race/plan429' });
db_add('race/plan', created_at => "'2020-01-01'");
db_add('race/plan429', created_at => "'2020-01-02'", consecutive_429s => 2);
$sim->set_faults(fault({ kind => 'start' }, { type => 'delay', ms => 1000 }));
$sim->clear_requests;
($racer, $racer_out) = psql_bg('SELECT registry_migration.run_enqueuer()');
wait_in_flight('start');
sql(q{UPDATE registry_migration.repositories SET plan = 'gold' WHERE path LIKE 'race/%'});
$racer->finish;
$s = $json->decode(slurp_file($racer_out));
is_deeply([ $s->{started}, $s->{errors} ], [ [ 'race/plan', 'race/plan429' ], [] ],
	'repositories whose plan changed while their start was out: both started, no error');
is(sql(q{SELECT string_agg(path || ' ' || state || ' ' || plan || ' ' || consecutive_429s, ', ' ORDER BY path)
	FROM registry_migration.repositories}), 'race/plan pre_importing gold 0, race/plan429 pre_importing gold 0',
	'... recorded as pre_importing, with the new plan, and the run of 429s ended');
is(sql(q{SELECT string_agg(path || ' ' || event, ', ' ORDER BY id) FROM registry_migration.events}),
	'race/plan start_pre_import, race/plan429 start_pre_import', '... and each start in the event log');

# Capacity holds while several sessions run cycles at once.
sub run_concurrent_cycles
{
	my ($name, $capacity, $repos, $script) = @_;
	fresh(capacity => $capacity, max_step_duration => "'0.1 s'");
	$sim->add_repositories(map { { path => "$name/r$_", pre_import_seconds => 0.03, import_seconds => 0.03 } } 1 .. $repos);
	sql("INSERT INTO registry_migration.repositories (path, created_at)
		SELECT '$name/r' || i, now() - (i || ' s')::interval FROM generate_series(1, $repos) AS i");
	my @workers = map { (psql_bg($script))[0] } 1 .. 3;
	my ($peak_db, $samples) = (0, 0);
	my $deadline = time() + 40;
	while (time() < $deadline)
	{
		my ($in_process, $left) = split /\|/, sql(q{SELECT
			count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing')),
			count(*) FILTER (WHERE state <> 'import_done') FROM registry_migration.repositories});
		$peak_db = $in_process if $in_process > $peak_db;
		$samples++;
		last if $left == 0;
		sleep 0.02;
	}
	$_->kill_kill for @workers;
	# Their backends end too before anything else starts.
	sql(q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cycle_worker'});
	$node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'cycle_worker'})
	  or die 'cycle workers did not end';
	my $left = sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state <> 'import_done'});
	return ($peak_db, $samples, $left, $sim->_control('GET', 'state?repositories=0')->{peak_running_steps});
}

my $loop = join('', map { "SELECT registry_migration.run_enqueuer(); SELECT registry_migration.run_guard(); SELECT pg_sleep(0.01);\n" } 1 .. 400);
my ($peak_db, $samples, $left, $peak_sim) = run_concurrent_cycles('cc', 4, 60, $loop);
is($left, 0, 'three sessions running cycles at once finished 60 repositories');
cmp_ok($peak_db, '<=', 4, "... never more than capacity 4 in process in the database (peak $peak_db, $samples samples)");
cmp_ok($peak_sim, '<=', 4, "... nor running on the registry (peak $peak_sim)");

# The same, with each cycle inside a transaction that commits a moment later
# (a person, or a job that does more in the same transaction).
$loop = join('', map { "BEGIN; SELECT registry_migration.run_enqueuer(); SELECT pg_sleep(0.05); COMMIT; SELECT registry_migration.run_guard();\n" } 1 .. 300);
($peak_db, $samples, $left, $peak_sim) = run_concurrent_cycles('tx', 4, 40, $loop);
is($left, 0, 'cycles inside longer transactions finished 40 repositories');
# (The cycle lock ends with the function, before the commit; the row locks
# make the next cycle wait for the rows the previous one changed.)
cmp_ok($peak_sim, '<=', 4, "... never more than capacity 4 running on the registry (peak $peak_sim)");
cmp_ok($peak_db, '<=', 4, "... nor in process in the database (peak $peak_db)");

end_test();
