# The enqueue cycle's rules: disabled, capacity and waiting time, final
# imports first, retries of aborted repositories, new work in order, plans,
# the deny list, the tag limit, errors, and the event log's retention.
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

my ($node, $sim) = start_enqueuer_test('enqueuer_rules');
my ($s, $log, $r);

# Disabled: nothing is requested at all.
fresh(enabled => 'false');
$sim->add_repositories({ path => 'off/fin', status => 'pre_import_complete' },
	{ path => 'off/ab', status => 'pre_import_failed' }, { path => 'off/new' });
db_pre_import_done('off/fin', '1 hour');
db_aborted('off/ab', '1 hour');
db_add('off/new');
($s, $log) = enqueue_logged();
is($s->{stopped}, 'disabled', 'disabled: stopped disabled');
ok($s->{ran} && lists_empty($s), '... ran, nothing listed');
is_deeply($log, [], '... and not one request, not even a final import');
is(event_count(), '0', '... nothing changed');

# Final imports first, oldest pre_import_done_at first, outside capacity.
fresh(capacity => 0);
$sim->add_repositories(map { { path => $_, status => 'pre_import_complete' } } qw(fin/newer fin/older fin/middle));
$sim->add_repositories({ path => 'fin/new' });
db_add('fin/new', created_at => "now() - interval '1 year'");
db_pre_import_done('fin/newer', '1 min');
db_pre_import_done('fin/older', '10 min');
db_pre_import_done('fin/middle', '5 min');
($s, $log) = enqueue_logged();
is_deeply($s->{final_imports}, [qw(fin/older fin/middle fin/newer)],
	'capacity 0: every final import is still requested, oldest pre_import_done_at first');
is_deeply($log, [ map { "PUT start $_ import_type=final" } qw(fin/older fin/middle fin/newer) ],
	'... and nothing else');
is($s->{stopped}, 'at_capacity', '... then at_capacity');
is(sql(q{SELECT string_agg(state::text, ',' ORDER BY path) FROM registry_migration.repositories}),
	'importing,default,importing,importing', '... the three are importing, the new one waits');

# A 429 to a final import leaves it pre_import_done.
fresh();
$sim->add_repositories(map { { path => $_, status => 'pre_import_complete' } } qw(fin/p fin/q));
db_pre_import_done('fin/p', '10 min');
db_pre_import_done('fin/q', '5 min');
$sim->set_faults(fault({ kind => 'start' }, respond(429), 1));
($s, $log) = enqueue_logged();
is($s->{stopped}, 'too_many_imports', '429 to a final import: too_many_imports');
is_deeply($log, ['PUT start fin/p import_type=final'], '... no further request in this cycle');
$r = repo('fin/p');
is("$r->{state} $r->{retries_count}", 'pre_import_done 0', '... it stays pre_import_done, no retry');
($s, $log) = enqueue_logged();
is_deeply($s->{final_imports}, [qw(fin/p fin/q)], 'the next cycle requests both');

# The gates: both hold → at_capacity; only the waiting time → waiting_time.
fresh(capacity => 1, enqueue_waiting_time => "'1 hour'");
$sim->add_repositories({ path => 'gate/new' }, { path => 'gate/fin', status => 'pre_import_complete' });
db_add('gate/busy', state => "'importing'", import_started_at => 'now()');
db_add('gate/recent', state => "'import_done'", import_done_at => "now() - interval '1 min'");
db_add('gate/new');
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ], [ 'at_capacity', [] ], 'capacity and waiting time both hold: at_capacity, no request');
settings(capacity => 10);
db_pre_import_done('gate/fin', '2 hours');
($s, $log) = enqueue_logged();
is($s->{stopped}, 'waiting_time', 'a step finished a minute ago, waiting time 1 hour: waiting_time');
is_deeply($log, ['PUT start gate/fin import_type=final'], '... the final import is not held up by it, the new one is');
is(state_of('gate/new'), 'default', '... the new repository waits');
sql(q{UPDATE registry_migration.repositories SET import_done_at = now() - interval '2 hours' WHERE path = 'gate/recent'});
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['gate/new'], 'the last finished step 2 hours ago: the new one starts');

# The gates are evaluated before the final imports: a final import that
# finishes at once neither frees a slot nor starts the waiting time this cycle.
fresh(capacity => 1);
$sim->add_repositories({ path => 'gate/native', native => 1 }, { path => 'gate/next' });
db_pre_import_done('gate/native', '2 hours');
db_add('gate/next');
($s, $log) = enqueue_logged();
is_deeply($s->{finished}, [ { path => 'gate/native', reason => 'native_import' } ], 'final import answered 200: finished');
is($s->{stopped}, 'at_capacity', '... the capacity gate was taken before it: at_capacity');
is_deeply($log, ['PUT start gate/native import_type=final'], '... the new one is not started in this cycle');
fresh(enqueue_waiting_time => "'1 hour'");
$sim->add_repositories({ path => 'gate/native', native => 1 }, { path => 'gate/native-new', native => 1 },
	{ path => 'gate/next' });
db_pre_import_done('gate/native', '2 hours');
db_add('gate/native-new', created_at => "now() - interval '1 day'");
db_add('gate/next');
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['gate/next'], 'the waiting time was checked at the start: the 200 just now does not hold up the new one');
is_deeply(paths_of($s->{finished}), [ 'gate/native', 'gate/native-new' ],
	'... nor does a new one answered 200 in an earlier round');
is_deeply($log, [ 'PUT start gate/native import_type=final', 'PUT start gate/native-new import_type=pre',
	'PUT start gate/next import_type=pre' ], '... all three asked for in one cycle');
is(sql(q{SELECT count(*) FROM registry_migration.repositories WHERE import_done_at > now() - interval '1 hour'}), '2',
	'... though two steps have now finished within the waiting time');

# The waiting time ignores NULL timestamps.
fresh(enqueue_waiting_time => "'1 hour'");
$sim->add_repositories({ path => 'wait/new' });
db_add('wait/skipped', state => "'import_skipped'", skipped_reason => "'not_in_plan'",
	skipped_at => "now() - interval '3 hours'");
db_add('wait/native', state => "'import_done'", import_done_at => "now() - interval '3 hours'",
	skipped_reason => "'native_import'");
db_add('wait/recent', state => "'import_done'", import_done_at => "now() - interval '5 min'");
db_add('wait/new');
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ], [ 'waiting_time', [] ],
	'rows with NULL step timestamps do not hide the recent one: waiting_time');
sql(q{DELETE FROM registry_migration.repositories WHERE path = 'wait/recent'});
# Each kind of finished step counts; a step finished by a repository that has
# moved on (importing, with its pre_import_done_at) does not.
db_add('wait/importing', state => "'importing'", pre_import_started_at => "now() - interval '1 hour'",
	pre_import_done_at => "now() - interval '1 min'", import_started_at => "now() - interval '30 s'");
for my $recent ([ 'pre_import_done', pre_import_started_at => "now() - interval '1 hour'", pre_import_done_at => "now() - interval '1 min'" ],
	[ 'import_aborted', aborted_at => "now() - interval '1 min'", retries_count => 1 ],
	[ 'import_skipped', skipped_at => "now() - interval '1 min'", skipped_reason => "'too_many_tags'" ])
{
	my ($state, %columns) = @$recent;
	db_add('wait/recent', state => "'$state'", %columns);
	($s, $log) = enqueue_logged();
	is($s->{stopped}, 'waiting_time', "a $state row that finished its step a minute ago: waiting_time");
	ok(!grep({ /wait\/new/ } @$log), "... the new one is not asked for");
	sql(q{DELETE FROM registry_migration.repositories WHERE path = 'wait/recent'});
}
# The four finish times count whichever of the four states the row is in: a
# direct change can leave another one later than the row's own (here each
# column once, in a state it does not record).
for my $recent (
	[ 'import_aborted', retries_count => 1, aborted_at => "now() - interval '3 hours'",
	  pre_import_done_at => "now() - interval '1 min'" ],
	[ 'import_done', import_done_at => "now() - interval '3 hours'", aborted_at => "now() - interval '1 min'" ],
	[ 'import_skipped', skipped_reason => "'not_in_plan'", skipped_at => "now() - interval '3 hours'",
	  import_done_at => "now() - interval '1 min'" ],
	[ 'pre_import_done', pre_import_done_at => "now() - interval '3 hours'", skipped_at => "now() - interval '1 min'" ])
{
	my ($state, %columns) = @$recent;
	my ($column) = grep { $columns{$_} =~ /1 min/ } keys %columns;
	db_add('wait/recent', state => "'$state'", %columns);
	($s, $log) = enqueue_logged();
	is($s->{stopped}, 'waiting_time', "a $state row whose $column is a minute ago (its own column 3 hours): waiting_time");
	ok(!grep({ /wait\/new/ } @$log), "... the new one is not asked for");
	sql(q{DELETE FROM registry_migration.repositories WHERE path = 'wait/recent'});
}
# Such rows are found through their own index, not by reading the table.
db_add('wait/recent', state => "'import_done'", import_done_at => "now() - interval '3 hours'",
	aborted_at => "now() - interval '1 min'");
is(sql(q{BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;
	SELECT registry_migration.run_enqueuer()->>'stopped';
	SELECT pg_stat_get_xact_numscans('registry_migration.repositories_later_finish'::regclass); COMMIT}),
	"waiting_time\n1", '... through the index repositories_later_finish');
sql(q{DELETE FROM registry_migration.repositories WHERE path = 'wait/recent'});
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['wait/new'], 'without a recent one (an importing row does not count): started');

# Capacity, one repository per round.
fresh(capacity => 2);
$sim->add_repositories(map { { path => "cap/r$_" } } 1, 3, 4);    # cap/r2 is not on the old registry
db_add("cap/r$_", created_at => "now() - interval '" . (10 - $_) . " min'") for 1 .. 4;
($s, $log) = enqueue_logged();
is_deeply($s->{started}, [qw(cap/r1 cap/r3)], 'capacity 2: two started');
is_deeply($s->{finished}, [ { path => 'cap/r2', reason => 'not_found' } ], '... a 404 between them does not take a slot');
is($s->{stopped}, 'at_capacity', '... stopped at_capacity');
is_deeply($log, [ map { "PUT start cap/r$_ import_type=pre" } 1 .. 3 ], '... cap/r4 was not asked for');
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ], [ 'at_capacity', [] ], 'at capacity: the next cycle sends nothing');
settings(capacity => 3);
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['cap/r4'], 'one more slot: one more start');

# Each repository at most once per cycle.
fresh(capacity => 10);
$sim->add_repositories({ path => 'once/ab', status => 'pre_import_failed' }, { path => 'once/fin' });
db_aborted('once/ab', '1 hour');
db_pre_import_done('once/fin', '1 hour');    # the registry never pre-imported it: 424
$sim->set_faults(fault({ kind => 'start', path => 'once/ab' }, respond(400)));
($s, $log) = enqueue_logged();
is_deeply($log, [ 'PUT start once/fin import_type=final', 'GET status once/ab', 'PUT start once/ab import_type=pre' ],
	'a refused retry is not retried again in the same cycle, nor is a final import just aborted');
is_deeply($s->{aborted}, [qw(once/fin once/ab)], '... both listed as aborted once');
is(repo('once/ab')->{retries_count}, 2, '... one retry spent on the aborted one');
is(repo('once/fin')->{retries_count}, 1, '... one on the final import');
settings(max_retries => 3);
sql(q{UPDATE registry_migration.repositories SET aborted_at = now() - interval '1 day' WHERE path = 'once/ab'});
($s, $log) = enqueue_logged();
is_deeply($s->{skipped}, [ { path => 'once/ab', reason => 'too_many_retries' } ],
	'a refused retry that reaches max_retries: listed as skipped too_many_retries');
$r = repo('once/ab');
is(join(' ', $r->{state}, $r->{skipped_reason}, $r->{retries_count}, $r->{aborted_in_state}),
	'import_skipped too_many_retries 3 pre_importing', '... skipped, keeping aborted_in_state');

# Aborted repositories first, oldest aborted_at first; then new ones, oldest
# created_at, then id.
fresh();
$sim->add_repositories({ path => 'ord/ab-young', status => 'pre_import_failed' },
	{ path => 'ord/ab-old', status => 'pre_import_failed' }, map { { path => "ord/new$_" } } 1 .. 3);
db_aborted('ord/ab-young', '5 min');
db_aborted('ord/ab-old', '10 min');
db_add('ord/new1', id => 1001, created_at => "'2020-01-02 00:00+00'");
db_add('ord/new2', id => 1000, created_at => "'2020-01-02 00:00+00'");
db_add('ord/new3', id => 999, created_at => "'2020-01-03 00:00+00'");
($s, $log) = enqueue_logged();
is_deeply($log, [ 'GET status ord/ab-old', 'PUT start ord/ab-old import_type=pre', 'GET status ord/ab-young',
	'PUT start ord/ab-young import_type=pre', map { "PUT start ord/new$_ import_type=pre" } 2, 1, 3 ],
	'aborted ones first (oldest aborted_at), then new ones (oldest created_at, then id)');
is_deeply($s->{retried}, [qw(ord/ab-old ord/ab-young)], 'retried: the aborted ones');
is_deeply($s->{started}, [qw(ord/new2 ord/new1 ord/new3)], 'started: the new ones');
is(sql(q{SELECT string_agg(path, ' ' ORDER BY pre_import_started_at) FROM registry_migration.repositories
	WHERE path LIKE 'ord/new%'}), 'ord/new2 ord/new1 ord/new3',
	'each start recorded at its own time (clock_timestamp, not the transaction start)');
$r = repo('ord/ab-old');
is(join(' ', $r->{state}, $r->{retries_count}, $r->{aborted_set} ? 'aborted_at' : 'no aborted_at',
		$r->{aborted_in_state} // 'NULL'), 'pre_importing 1 no aborted_at NULL',
	'a retry keeps retries_count and clears aborted_at and aborted_in_state');

# created_before is strict.
fresh(created_before => "'2024-01-01 00:00+00'");
$sim->add_repositories(map { { path => "cb/$_" } } qw(before equal after));
db_add('cb/before', created_at => "'2023-12-31 23:59:59+00'");
db_add('cb/equal', created_at => "'2024-01-01 00:00+00'");
db_add('cb/after', created_at => "'2024-01-01 00:00:01+00'");
($s, $log) = enqueue_logged();
is_deeply([ $s->{started}, $s->{stopped} ], [ ['cb/before'], 'nothing_to_do' ], 'created_before: strictly before only');

# target_plans: '{}' = none, coalesce(plan, 'free'), exact and case-sensitive, NULL = all.
fresh(target_plans => q{'{}'});
$sim->add_repositories(map { { path => "tp/$_" } } qw(null free cap premium));
db_add('tp/null', created_at => "now() - interval '4 min'");
db_add('tp/free', plan => "'free'", created_at => "now() - interval '3 min'");
db_add('tp/cap', plan => "'Free'", created_at => "now() - interval '2 min'");
db_add('tp/premium', plan => "'premium'", created_at => "now() - interval '1 min'");
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ], [ 'nothing_to_do', [] ], q{target_plans '{}': nothing starts, nothing is asked});
settings(target_plans => q{'{free}'});
($s, $log) = enqueue_logged();
is_deeply($s->{started}, [qw(tp/null tp/free)], q{'{free}': plan NULL counts as free; 'Free' does not match});
settings(target_plans => q{'{premium}'});
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['tp/premium'], q{'{premium}': only premium});
settings(target_plans => 'NULL');
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['tp/cap'], 'NULL: every plan');

# Deny list: only new work.
fresh();
sql(q{INSERT INTO registry_migration.denied_namespaces VALUES ('deny')});
$sim->add_repositories({ path => 'deny/fin', status => 'pre_import_complete' },
	{ path => 'deny/ab', status => 'pre_import_failed' }, { path => 'deny/new' }, { path => 'allow/new' });
db_pre_import_done('deny/fin', '1 hour');
db_aborted('deny/ab', '1 hour');
db_add('deny/new', created_at => "now() - interval '2 days'");
db_add('allow/new', created_at => "now() - interval '1 day'");
($s, $log) = enqueue_logged();
is_deeply($s->{final_imports}, ['deny/fin'], 'deny list: a denied pre_import_done still gets its final import');
is_deeply($s->{started}, ['allow/new'], '... denied new and aborted ones are not started');
is_deeply($log, [ 'PUT start deny/fin import_type=final', 'PUT start allow/new import_type=pre' ],
	'... and not even asked about');
is(state_of('deny/ab') . ' ' . state_of('deny/new'), 'import_aborted default', '... they keep their state');

# The selections walk their index in order, whatever the planner knows of
# the root namespaces: with every repository under one root namespace and
# statistics that say so, a cycle never reads the whole table (it used to
# sort every new repository for each one it took).
fresh(capacity => 2);
sql(q{INSERT INTO registry_migration.denied_namespaces VALUES ('other');
	INSERT INTO registry_migration.repositories (path, created_at)
	SELECT 'one/repo-' || i, now() - interval '1 day' + i * interval '1 s' FROM generate_series(1, 5000) AS i;
	ANALYZE registry_migration.repositories;});
$sim->add_repositories({ path => 'one/repo-1' }, { path => 'one/repo-2' });
is(sql(q{BEGIN;
	SELECT registry_migration.run_enqueuer() ->> 'started';
	SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'registry_migration.repositories'::regclass;
	COMMIT;}), qq{["one/repo-1", "one/repo-2"]\n0},
	'one root namespace: the two oldest started, without one sequential scan of repositories');

# The tag limit.
fresh(max_tags_count => 5);
$sim->add_repositories({ path => 'tag/six', tags => 6 }, { path => 'tag/five', tags => 5 },
	{ path => 'tag/many', tags => 1500 }, { path => 'tag/gone', tags => 50 });
db_add('tag/six', created_at => "now() - interval '4 min'");
db_add('tag/five', created_at => "now() - interval '3 min'");
db_add('tag/many', created_at => "now() - interval '2 min'");
db_add('tag/gone', created_at => "now() - interval '1 min'");
$sim->set_faults(fault({ kind => 'tags', path => 'tag/gone' }, respond(404)));
($s, $log) = enqueue_logged();
is_deeply($s->{skipped}, [ { path => 'tag/six', reason => 'too_many_tags' }, { path => 'tag/many', reason => 'too_many_tags' } ],
	'more tags than max_tags_count: skipped too_many_tags');
is_deeply($s->{started}, [qw(tag/five tag/gone)], 'as many as the limit, or a tag list answered 404: started');
is_deeply($log, [ 'GET tags tag/six n=6', 'GET tags tag/five n=6', 'PUT start tag/five import_type=pre',
	'GET tags tag/many n=6', 'GET tags tag/gone n=6', 'PUT start tag/gone import_type=pre' ],
	'one tag request each, asking for max_tags_count + 1; no start for the skipped ones');
$r = repo('tag/many');
is(join(' ', $r->{state}, $r->{skipped_reason}, $r->{skipped_set} ? 'skipped_at' : '-'),
	'import_skipped too_many_tags skipped_at', 'too_many_tags recorded with skipped_at');
is(events_of('tag/six'), 'default>import_skipped:skip', '... one skip event');
# A registry that ignores n answers with every tag at once: counted the same.
fresh(max_tags_count => 5);
$sim->configure(ignore_tags_n => 1);
$sim->add_repositories({ path => 'tag/all-at-once', tags => 40 }, { path => 'tag/few', tags => 2 });
db_add('tag/all-at-once', created_at => "now() - interval '2 min'");
db_add('tag/few', created_at => "now() - interval '1 min'");
($s, $log) = enqueue_logged();
is_deeply([ $s->{skipped}, $s->{started} ], [ [ { path => 'tag/all-at-once', reason => 'too_many_tags' } ], ['tag/few'] ],
	'a registry that ignores n: 40 tags in one page → too_many_tags; 2 → started');
fresh(max_tags_count => 0);
$sim->add_repositories({ path => 'tag/unlimited', tags => 5000 });
db_add('tag/unlimited');
($s, $log) = enqueue_logged();
is_deeply([ $s->{started}, $log ], [ ['tag/unlimited'], ['PUT start tag/unlimited import_type=pre'] ],
	'max_tags_count 0: no tag request, no limit');

# Aborted repositories: what retry_decision says about the registry's status.
fresh(capacity => 30);
my @aborted = (
	[ 'rd/pre-complete', { status => 'pre_import_complete' } ],
	[ 'rd/pre-failed', { status => 'pre_import_failed' } ],
	[ 'rd/pre-canceled', { status => 'pre_import_canceled' } ],
	[ 'rd/imp-failed', { status => 'import_failed' }, pre_import_done_at => "now() - interval '2 hours'" ],
	[ 'rd/imp-canceled', { status => 'import_canceled' }, pre_import_done_at => "now() - interval '2 hours'" ],
	[ 'rd/limit', { status => 'pre_import_failed' }, retries_count => 3 ],
	[ 'rd/unknown-pre', {} ],    # the new registry has no record: 404
	[ 'rd/unknown-final', { status => 'pre_import_complete' }, pre_import_done_at => "now() - interval '2 hours'" ],
	[ 'rd/unknown-final404', { status => 'pre_import_complete' }, pre_import_done_at => "now() - interval '2 hours'" ],
	[ 'rd/unknown-limit', {}, retries_count => 3, pre_import_done_at => "now() - interval '2 hours'" ],
	[ 'rd/done', { status => 'import_complete' } ],
	[ 'rd/native', { native => 1 } ],
	[ 'rd/running', { status => 'pre_import_complete' } ],
);
for my $i (0 .. $#aborted)
{
	my ($path, $model, %columns) = @{ $aborted[$i] };
	$sim->add_repositories({ path => $path, %$model });
	db_aborted($path, (100 - $i) . ' min', %columns);
}
$sim->set_faults(fault({ kind => 'status', path => 'rd/unknown-final' }, { type => 'malformed_json' }),
	fault({ kind => 'status', path => 'rd/unknown-final404' }, respond(404)),
	fault({ kind => 'status', path => 'rd/running' },
		respond(200, body => '{"name":"running","path":"rd/running","status":"pre_import_in_progress","detail":""}')));
($s, $log) = enqueue_logged();
is_deeply($s->{retried}, [qw(rd/pre-complete rd/pre-failed rd/pre-canceled rd/imp-failed rd/imp-canceled
	  rd/unknown-pre rd/unknown-final rd/unknown-final404 rd/running)], 'retried, in aborted_at order');
is_deeply($s->{skipped}, [ { path => 'rd/limit', reason => 'too_many_retries' },
	{ path => 'rd/unknown-limit', reason => 'too_many_retries' } ], 'skipped at the retry limit');
is_deeply(paths_of($s->{finished}), [qw(rd/done rd/native)], 'finished on the registry: recorded as finished');
is($s->{finished}[1]{reason}, 'native_import', '... native with its reason');
is_deeply([ map { s/^GET status \S+$/status/r } @$log ],
	[ 'status', 'PUT start rd/pre-complete import_type=final', 'status', 'PUT start rd/pre-failed import_type=pre',
	  'status', 'PUT start rd/pre-canceled import_type=pre', 'status', 'PUT start rd/imp-failed import_type=final',
	  'status', 'PUT start rd/imp-canceled import_type=final', 'status', 'status',
	  'PUT start rd/unknown-pre import_type=pre', 'status', 'PUT start rd/unknown-final import_type=final',
	  'status', 'PUT start rd/unknown-final404 import_type=final', 'status', 'status', 'status', 'status' ],
	'a status request each, then the start retry_decision calls for (none at the limit, none when finished or running)');
my %expect = (
	'rd/pre-complete' => 'importing 1 import_aborted>pre_import_done:finish_pre_import pre_import_done>importing:start_import',
	'rd/pre-failed' => 'pre_importing 1 import_aborted>pre_importing:start_pre_import',
	'rd/pre-canceled' => 'pre_importing 1 import_aborted>pre_importing:start_pre_import',
	'rd/imp-failed' => 'importing 1 import_aborted>importing:start_import',
	'rd/imp-canceled' => 'importing 1 import_aborted>importing:start_import',
	'rd/limit' => 'import_skipped 3 import_aborted>import_skipped:skip',
	'rd/unknown-pre' => 'pre_importing 1 import_aborted>pre_importing:start_pre_import',
	'rd/unknown-final' => 'importing 1 import_aborted>importing:start_import',
	'rd/unknown-final404' => 'importing 1 import_aborted>importing:start_import',
	'rd/unknown-limit' => 'import_skipped 3 import_aborted>import_skipped:skip',
	'rd/done' => 'import_done 1 import_aborted>import_done:finish_import',
	'rd/native' => 'import_done 1 import_aborted>import_done:finish_import',
	'rd/running' => 'pre_importing 1 import_aborted>pre_importing:mark_pre_importing',
);
for my $path (map { $_->[0] } @aborted)
{
	$r = repo($path);
	is(join(' ', $r->{state}, $r->{retries_count}, events_of($path)), $expect{$path}, "$path: $expect{$path}");
}
is(repo('rd/native')->{skipped_reason}, 'native_import', 'native: finished as native_import');

# Every cycle removes up to 1 000 old events at its start, also when disabled.
fresh(enabled => 'false', event_retention => "'1 hour'");
sql(q{INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event, at)
	SELECT 1, 'old/events', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', now() - interval '2 hours'
	  FROM generate_series(1, 1500);
	INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event)
	VALUES (1, 'old/events', 'pre_importing', 'import_done', 'notification', 'finish_import')});
enqueue();
is(event_count(), '501', 'a cycle removes 1 000 events older than event_retention');
enqueue();
is(event_count(), '1', 'the next one the rest; a recent event stays');

end_test();
