# Back-pressure: a 429 "too many imports" stops new work for the cycle without
# spending a retry, the consecutive 429s of one repository end in an abort,
# and a Retry-After is registry-wide, capped and kept across a restart.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use JSON::PP;
use POSIX qw(strftime);
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_enqueuer_test('back_pressure');
my ($s, $log, $r, $rc, $out, $err);

fresh(start_max_retries => 2);
$sim->add_repositories({ path => 'bp/a' }, { path => 'bp/b' });
db_add('bp/a', created_at => "now() - interval '2 min'");
db_add('bp/b', created_at => "now() - interval '1 min'");
$sim->set_faults(fault({ kind => 'start' }, respond(429)));
for my $n (1, 2)
{
	($s, $log) = enqueue_logged();
	is($s->{stopped}, 'too_many_imports', "429 #$n: too_many_imports");
	ok(lists_empty($s), "429 #$n: nothing listed");
	is_deeply($log, ['PUT start bp/a import_type=pre'], "429 #$n: no other start in this cycle");
	$r = repo('bp/a');
	is("$r->{state} $r->{retries_count}", 'default 0', "429 #$n: the repository is unchanged, no retry counted");
	is(event_count(), '0', "429 #$n: no event");
}
($s, $log) = enqueue_logged();
is($s->{stopped}, 'too_many_imports', '429 #3 = start_max_retries + 1: still too_many_imports');
is_deeply($s->{aborted}, ['bp/a'], '... and the repository is aborted');
$r = repo('bp/a');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted pre_importing 1',
	'... start event then abort');
is(events_of('bp/a'), 'default>pre_importing:start_pre_import pre_importing>import_aborted:abort', '... two events');
is(state_of('bp/b'), 'default', '... the other repository is untouched');

# The (N+1)-th 429 of a retry: retries_count + 1 and a new aborted_at.
fresh(start_max_retries => 0);
$sim->add_repositories({ path => 'bp/retry', status => 'pre_import_failed' });
db_aborted('bp/retry', '1 hour');
my $before = repo('bp/retry');
$sim->set_faults(fault({ kind => 'start' }, respond(429)));
($s, $log) = enqueue_logged();
$r = repo('bp/retry');
is_deeply([ $s->{stopped}, $s->{aborted} ], [ 'too_many_imports', ['bp/retry'] ], 'start_max_retries 0: the first 429 aborts the retry');
is("$r->{state} $r->{retries_count}", 'import_aborted 2', '... still import_aborted, retries_count + 1');
ok($r->{aborted_at} gt $before->{aborted_at}, "... with a new aborted_at ($before->{aborted_at} → $r->{aborted_at})");

# ... and of a final import: aborted in importing.
fresh(start_max_retries => 0);
$sim->add_repositories({ path => 'bp/final', status => 'pre_import_complete' });
db_pre_import_done('bp/final', '1 hour');
$sim->set_faults(fault({ kind => 'start' }, respond(429)));
($s, $log) = enqueue_logged();
$r = repo('bp/final');
is_deeply([ $s->{stopped}, $s->{aborted}, $r->{state}, $r->{aborted_in_state}, $r->{import_started_set} ? 1 : 0 ],
	[ 'too_many_imports', ['bp/final'], 'import_aborted', 'importing', 1 ],
	'the (N+1)-th 429 to a final import: start import, then abort');

# Any other answer ends a run of 429s.
fresh(start_max_retries => 1);
$sim->add_repositories({ path => 'bp/run', status => 'pre_import_complete' });
db_pre_import_done('bp/run', '1 hour');
$sim->set_faults(fault({ kind => 'start' }, respond(429), 1));
($s) = enqueue_logged();
is($s->{stopped}, 'too_many_imports', 'a first 429');
$sim->set_faults(fault({ kind => 'start' }, respond(425), 1));
($s) = enqueue_logged();
is_deeply($s->{final_imports}, ['bp/run'], 'then 425: marked pre_importing');
is(sql(q{SELECT registry_migration.handle_notification('bp/run', 'pre_import_complete')}), 'pre_import_done',
	'the pre-import ends');
$sim->set_faults(fault({ kind => 'start' }, respond(429), 1));
($s) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{aborted} ], [ 'too_many_imports', [] ], 'another 429 is the first of a new run: not aborted');
is(state_of('bp/run'), 'pre_import_done', '... still pre_import_done');

# The admin reset clears the count of 429s with every other counter.
fresh(start_max_retries => 1);
$sim->add_repositories({ path => 'bp/reset' });
db_add('bp/reset');
$sim->set_faults(fault({ kind => 'start' }, respond(429)));
($s) = enqueue_logged();
sql(q{SELECT registry_migration.skip('bp/reset', 'not_in_plan'); SELECT registry_migration.reset('bp/reset')});
($s) = enqueue_logged();
is(state_of('bp/reset'), 'default', 'after reset(), one 429 is the first of a new run: not aborted');

# Retry-After in seconds: registry-wide, persisted, honoured by every cycle.
fresh();
$sim->add_repositories({ path => 'ra/new' }, { path => 'ra/next' }, { path => 'ra/ab', status => 'pre_import_failed' },
	{ path => 'ra/stale', status => 'pre_import_complete' });
db_add('ra/new', created_at => "now() - interval '2 min'");
db_add('ra/next', created_at => "now() - interval '1 min'");
$sim->set_faults(fault({ kind => 'start' }, respond(429, headers => { 'Retry-After' => '2' }), 1));
($s, $log) = enqueue_logged();
is($s->{stopped}, 'too_many_imports', '429 with Retry-After: 2 → too_many_imports');
is(state_of('ra/new'), 'default', '... the repository unchanged');
my $until = sql(q{SELECT extract(epoch FROM retry_after_until - clock_timestamp()) FROM registry_migration.registry_state});
ok($until > 0.5 && $until <= 2.1, "... registry_state.retry_after_until is 2 s ahead ($until s)");
db_aborted('ra/ab', '1 hour');
db_add('ra/stale', state => "'pre_importing'", pre_import_started_at => "now() - interval '1 hour'");
($s, $log) = enqueue_logged();
is($s->{stopped}, 'retry_after', 'the next cycle: stopped retry_after');
ok(defined $s->{retry_after_until}, "... with retry_after_until ($s->{retry_after_until})");
ok(lists_empty($s), '... nothing listed');
is_deeply($log, [], '... and no request at all');
($s, $log) = guard_logged();
is_deeply([ $s->{finished}, $log ], [ ['ra/stale'], ['GET status ra/stale'] ],
	'the guard records a finished pre-import but sends no final import meanwhile');
is(state_of('ra/stale'), 'pre_import_done', '... pre_import_done');
($rc, $out, $err) = $node->psql('postgres', q{SELECT registry_migration.retry('ra/ab')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/55000/, 'retry() while a Retry-After is pending: 55000');
my $deadline = time() + 10;
do { sleep 0.2; ($s, $log) = enqueue_logged() } while ($s->{stopped} eq 'retry_after' && time() < $deadline);
is_deeply($s->{final_imports}, ['ra/stale'], 'once it has passed: the final import is requested');
is_deeply($s->{retried}, ['ra/ab'], '... the aborted one retried');
is_deeply($s->{started}, [qw(ra/new ra/next)], '... and new ones started');

# Retry-After is capped at one hour, in seconds or as an HTTP date.
for my $value ('86400', 'Fri, 01 Jan 2100 00:00:00 GMT')
{
	fresh();
	$sim->add_repositories({ path => 'ra/capped' });
	db_add('ra/capped');
	$sim->set_faults(fault({ kind => 'start' }, respond(429, headers => { 'Retry-After' => $value }), 1));
	enqueue();
	$until = sql(q{SELECT extract(epoch FROM retry_after_until - clock_timestamp()) FROM registry_migration.registry_state});
	ok($until > 3590 && $until <= 3600, "Retry-After: $value → capped at one hour ($until s)");
}
fresh();
$sim->add_repositories({ path => 'ra/date' });
db_add('ra/date');
my $http_date = strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time() + 120));
$sim->set_faults(fault({ kind => 'start' }, respond(429, headers => { 'Retry-After' => $http_date }), 1));
enqueue();
$until = sql(q{SELECT extract(epoch FROM retry_after_until - clock_timestamp()) FROM registry_migration.registry_state});
ok($until > 110 && $until <= 121, "Retry-After as an HTTP date two minutes ahead ($until s)");
$node->restart;
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ], [ 'retry_after', [] ], 'after a server restart the Retry-After still holds');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = NULL});

end_test();
