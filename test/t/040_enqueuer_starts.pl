# The enqueue cycle against the registry simulator, part 1: what each answer
# to a start (pre-import or final import) changes, and which answers mean
# that the registry is unavailable (nothing changes, no retry spent, the
# repository is passed over for the rest of the cycle).
#
# Everything asserted is what a user can see: the cycle summaries, the
# repositories' rows, the event log, the requests the simulator received and
# SQLSTATEs. Cycles are called explicitly; nothing sleeps longer than needed.
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

my ($node, $sim) = start_enqueuer_test('enqueuer_starts');
my @summary_keys = qw(ran stopped final_imports retried started finished skipped aborted errors);

fresh();
$sim->add_repositories({ path => 'start/accepted' });
db_add('start/accepted');
my ($s, $log) = enqueue_logged();
ok(!(grep { !exists $s->{$_} } @summary_keys), 'the summary has every documented key')
  or diag explain $s;
ok($s->{ran}, 'ran: true');
is_deeply($s->{started}, ['start/accepted'], '202: listed under started');
is($s->{stopped}, 'nothing_to_do', 'nothing else to do');
is_deeply($log, ['PUT start start/accepted import_type=pre'], 'one pre-import request, sent first');
my $r = repo('start/accepted');
is($r->{state}, 'pre_importing', '202 → pre_importing');
ok($r->{pre_import_started_set}, '... pre_import_started_at recorded');
is($r->{retries_count}, 0, '... no retry counted');
is(events_of('start/accepted'), 'default>pre_importing:start_pre_import', '... one start event');
is(sql(q{SELECT cause || ' ' || http_status FROM registry_migration.events WHERE path = 'start/accepted'}),
	'enqueuer 202', '... caused by the enqueuer, with the HTTP answer');
is($sim->repository('start/accepted')->{status}, 'pre_import_in_progress', 'the registry is pre-importing it');

# 200 and 404, on a pre-import and on a final import.
fresh();
$sim->add_repositories({ path => 'start/native', native => 1 },
	{ path => 'start/imported', status => 'import_complete' });
db_add('start/native', created_at => "now() - interval '2 min'");
db_add('start/missing', created_at => "now() - interval '1 min'");    # not on the old registry
db_pre_import_done('start/imported', '1 hour');
db_pre_import_done('start/gone', '30 min');    # gone from the old registry since its pre-import
($s, $log) = enqueue_logged();
is_deeply($s->{finished}, [ { path => 'start/imported', reason => 'native_import' },
	{ path => 'start/gone', reason => 'not_found' },
	{ path => 'start/native', reason => 'native_import' }, { path => 'start/missing', reason => 'not_found' } ],
	'200 and 404: listed under finished with their reason');
is_deeply([ @{ $s->{started} }, @{ $s->{final_imports} } ], [], '... and not as started or final imports');
is_deeply($log, [ 'PUT start start/imported import_type=final', 'PUT start start/gone import_type=final',
	'PUT start start/native import_type=pre', 'PUT start start/missing import_type=pre' ],
	'final imports first, then the new ones');
for ([ 'start/native', 'native_import' ], [ 'start/missing', 'not_found' ], [ 'start/imported', 'native_import' ],
	[ 'start/gone', 'not_found' ])
{
	my ($path, $reason) = @$_;
	$r = repo($path);
	is("$r->{state} $r->{skipped_reason}", "import_done $reason", "$path: import_done, $reason");
	ok($r->{import_done_set} && !$r->{skipped_set}, "$path: import_done_at set, not skipped");
}
is(events_of('start/missing'), 'default>import_done:finish_import', '404: one finish event');

# 425 / 409: the registry is already doing it; no retry spent.
fresh();
$sim->add_repositories(map { { path => $_, status => 'pre_import_complete' } }
	  qw(run/pre425 run/pre409 run/final425 run/final409));
db_add('run/pre425', created_at => "now() - interval '2 min'");
db_add('run/pre409', created_at => "now() - interval '1 min'");
db_pre_import_done('run/final425', '2 hours');
db_pre_import_done('run/final409', '1 hour');
$sim->set_faults(fault({ kind => 'start', path => 'run/pre425' }, respond(425)),
	fault({ kind => 'start', path => 'run/final425' }, respond(425)),
	fault({ kind => 'start', path => 'run/pre409' }, respond(409)),
	fault({ kind => 'start', path => 'run/final409' }, respond(409)));
($s, $log) = enqueue_logged();
is_deeply($s->{final_imports}, [ 'run/final425', 'run/final409' ], '425/409 to final imports: listed as final imports');
is_deeply($s->{started}, [ 'run/pre425', 'run/pre409' ], '425/409 to pre-imports: listed as started');
is_deeply($s->{aborted}, [], 'nothing aborted');
$r = repo('run/pre425');
is($r->{state}, 'pre_importing', '425 to a pre-import → marked pre_importing');
ok($r->{pre_import_started_set}, '... with pre_import_started_at');
$r = repo('run/pre409');
is($r->{state}, 'importing', '409 to a pre-import → marked importing');
ok($r->{import_started_set}, '... with import_started_at');
$r = repo('run/final425');
is($r->{state}, 'pre_importing', '425 to a final import → marked pre_importing');
ok(!$r->{pre_import_done_set}, '... pre_import_done_at cleared');
is(repo('run/final409')->{state}, 'importing', '409 to a final import → marked importing');
is(sql(q{SELECT sum(retries_count) FROM registry_migration.repositories}), '0', 'no retry spent on 425/409');
is(events_of('run/pre425') . ' ' . events_of('run/final409'),
	'default>pre_importing:mark_pre_importing pre_import_done>importing:mark_importing', 'mark events, not starts');

# Refused answers: start event, then abort.
fresh();
my @refused = (400, 424, 418, 201);
for my $i (0 .. $#refused)
{
	my $path = "refused/c$refused[$i]";
	$sim->add_repositories({ path => $path });
	db_add($path, created_at => "now() - interval '" . (10 - $i) . " min'");
}
$sim->set_faults(map { fault({ kind => 'start', path => "refused/c$_" }, respond($_)) } @refused);
$sim->add_repositories({ path => 'refused/final424' });    # never pre-imported on the registry: 424
db_pre_import_done('refused/final424', '1 hour');
($s, $log) = enqueue_logged();
is_deeply($s->{aborted}, [ 'refused/final424', map { "refused/c$_" } @refused ],
	'400, 424, another 4xx, another 2xx: listed as aborted');
is_deeply($s->{started}, [], '... not as started');
is($s->{stopped}, 'nothing_to_do', '... and the cycle went on');
for my $code (@refused)
{
	$r = repo("refused/c$code");
	is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted pre_importing 1',
		"$code: aborted in pre_importing, one retry counted");
	ok($r->{pre_import_started_set} && $r->{aborted_set}, "$code: the start time and the abort time recorded");
	is(events_of("refused/c$code"), 'default>pre_importing:start_pre_import pre_importing>import_aborted:abort',
		"$code: start event, then abort");
}
is(sql(q{SELECT string_agg(DISTINCT http_status::text, ',') FROM registry_migration.events WHERE path = 'refused/c418'}),
	'418', 'the events record the answer');
$r = repo('refused/final424');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted importing 1',
	'424 to a final import: aborted in importing');
ok($r->{import_started_set}, '... import_started_at recorded');

# Registry unavailable: nothing changes, no retry; the repository is passed
# over and the cycle goes on with the next one. A start the registry may have
# carried out (no answer after the request went out, or a 5xx) is recorded
# as start_unanswered; one it declined (401, a redirect) is not.
my %lost = map { $_ => 1 } qw(503 drop hang);
my %unavailable = (
	'503' => respond(503),
	'401' => respond(401),
	'drop' => { type => 'drop' },
	'hang' => { type => 'hang', seconds => 10 },
	'redirect' => { type => 'redirect', location => 'http://127.0.0.1:1/' });
for my $name (sort keys %unavailable)
{
	fresh();
	$sim->add_repositories({ path => 'down/a' }, { path => 'down/b' });
	db_add('down/a', created_at => "now() - interval '2 min'");
	db_add('down/b', created_at => "now() - interval '1 min'");
	$sim->set_faults(fault({ kind => 'start', path => 'down/a' }, $unavailable{$name}));
	my $t0 = time();
	($s, $log) = enqueue_logged($name eq 'hang' ? "SET registry_migration.request_timeout = '300ms';" : '');
	is_deeply([ $s->{stopped}, $s->{unavailable}, $s->{started} ], [ 'nothing_to_do', ['down/a'], ['down/b'] ],
		"$name: passed over, listed unavailable; the cycle goes on");
	is_deeply($log, [ 'PUT start down/a import_type=pre', 'PUT start down/b import_type=pre' ],
		"$name: the next repository is asked for");
	$r = repo('down/a');
	is("$r->{state} $r->{retries_count}", 'default 0', "$name: the repository did not change, no retry");
	is(events_of('down/a'), $lost{$name} ? 'default>default:start_unanswered' : '',
		$lost{$name} ? "$name: recorded as a start whose answer was lost, no state change" : "$name: no event");
	cmp_ok(time() - $t0, '<', 4, "$name: the cycle did not wait for the hung answer") if $name eq 'hang';
}

# No registry_url: 22023 naming the setting, nothing changes.
fresh();
$sim->add_repositories({ path => 'nourl/a' });
db_add('nourl/a');
$sim->clear_requests;
my ($rc, $out, $err) = $node->psql('postgres',
	q{SET registry_migration.registry_url = ''; SELECT registry_migration.run_enqueuer()},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/22023: registry_migration.registry_url is not set/, 'empty registry_url: 22023 naming the setting');
is(state_of('nourl/a') . ' ' . event_count() . ' ' . scalar(@{ $sim->requests }), 'default 0 0', '... nothing changed, nothing sent');

# ... also when it is a final import, a status or a tag list that gets no answer.
sub three_kinds
{
	fresh(max_tags_count => 5);
	$sim->add_repositories({ path => 'down/fin', status => 'pre_import_complete' },
		{ path => 'down/ab', status => 'pre_import_failed' }, { path => 'down/new' });
	db_pre_import_done('down/fin', '1 hour');
	db_aborted('down/ab', '1 hour');
	db_add('down/new');
	$sim->set_faults(@_);
	return enqueue_logged();
}
($s, $log) = three_kinds(fault({ kind => 'start', path => 'down/fin' }, respond(503)));
is_deeply([ $s->{stopped}, $s->{unavailable}, $s->{retried}, $s->{started} ],
	[ 'nothing_to_do', ['down/fin'], ['down/ab'], ['down/new'] ],
	'final import answered 503: passed over, the others are handled');
is(state_of('down/fin'), 'pre_import_done', '... the repository keeps its state');
($s, $log) = three_kinds(fault({ kind => 'status' }, respond(500)));
is_deeply([ $s->{stopped}, $s->{final_imports}, $s->{unavailable}, $s->{started} ],
	[ 'nothing_to_do', ['down/fin'], ['down/ab'], ['down/new'] ],
	'status of an aborted repository answered 500: passed over');
ok(!grep({ m{PUT start down/ab} } @$log), '... no start is sent for it');
$r = repo('down/ab');
is("$r->{state} $r->{retries_count}", 'import_aborted 1', '... no retry spent');
# (libcurl sends a request again once when a reused connection is closed
# without an answer, so the fault stays on.)
for my $answer (respond(429), respond(408), { type => 'truncate' }, { type => 'garbage' }, { type => 'drop' })
{
	($s, $log) = three_kinds(fault({ kind => 'tags' }, $answer));
	my $what = $answer->{code} // $answer->{type};
	is_deeply([ $s->{stopped}, $s->{unavailable}, $log->[-1] ], [ 'nothing_to_do', ['down/new'], 'GET tags down/new n=6' ],
		"tag list answered $what: registry unavailable, passed over");
	ok(!grep({ /PUT start down\/new/ } @$log), "$what: no start is sent");
}
is(state_of('down/new'), 'default', '... the repository keeps its state');

end_test();
