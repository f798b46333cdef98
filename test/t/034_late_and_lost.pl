# Late failure notifications and lost start answers.
#
# A start whose answer is lost (a timeout after the request went out, a
# 5xx) may have been carried out: it is recorded as start_unanswered, and
# then a completion notification for a repository still at default is
# applied as if the start had been accepted, and a 200 to a later start is
# our own import finishing, not a native repository.
#
# A notification does not name the attempt it reports: a failure reported
# while the step is only seconds old is held (failure_pending), the guard
# confirms it with one status request, and only a failure the registry
# confirms aborts; the retry that followed an earlier attempt's failure is
# left alone. The worker, woken by the notification, confirms at once; any
# guard cycle (SQL, pg_cron) does it too.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use JSON::PP;
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_enqueuer_test('late_and_lost');
create_attempt_function();
my ($s, $g, $r, $p);
my $t = time();

# A start request the registry carries out, whose answer never arrives in
# time (its body trickles in past the request timeout).
my $short_timeout = "SET registry_migration.request_timeout = '300ms';";
sub start_answer_lost
{
	my ($path, $type) = @_;
	return fault({ kind => 'start', path => $path, import_type => $type },
		{ type => 'trickle', interval_ms => 100, seconds => 3 }, 1);
}

# ---- a pre-import start whose answer was lost ---------------------------------------

fresh();
$p = 'lost/pre';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.1, import_outcomes => ['hang'] });
db_add($p);
$sim->set_faults(start_answer_lost($p, 'pre'));
$s = enqueue($short_timeout);
is_deeply([ $s->{unavailable}, $s->{started} ], [ [$p], [] ],
	'lost pre-import answer: the repository is passed over as unavailable');
is(state_of($p) . ' ' . events_of($p), 'default default>default:start_unanswered',
	'... it stays default, and the start is recorded as start_unanswered');
is(join(',', map { $_->{cause} } event_rows($p)), 'enqueuer', '... by the enqueuer');
ok($sim->wait_for_status($p, 'pre_import_complete', 10), '... the registry had started it, and finishes it');
is_deeply([ deliver(1) ], ['pre_import_complete -> pre_import_done'],
	'its pre_import_complete notification is applied as if the start had been accepted (not refused)');
is(events_of($p), 'default>default:start_unanswered default>pre_importing:start_pre_import '
	  . 'pre_importing>pre_import_done:finish_pre_import', '... the start and its end are recorded');
is_deeply(enqueue()->{final_imports}, [$p], '... and the enqueuer requests the final import');

# ---- a final import start whose answer was lost, then 200 ----------------------------

fresh();
$sim->add_repositories({ path => 'lost/final', status => 'pre_import_complete', import_seconds => 0.1 },
	{ path => 'elsewhere/done', status => 'import_complete' });
db_pre_import_done('lost/final', '2 hours');
db_pre_import_done('elsewhere/done', '1 hour');
$sim->set_faults(start_answer_lost('lost/final', 'final'));
$s = enqueue($short_timeout);
is_deeply([ $s->{unavailable}, $s->{finished} ],
	[ ['lost/final'], [ { path => 'elsewhere/done', reason => 'native_import' } ] ],
	'lost final import answer: passed over; a repository imported elsewhere answers 200: native_import');
is(events_of('lost/final'), 'pre_import_done>pre_import_done:start_unanswered', '... the lost start is recorded');
ok($sim->wait_for_status('lost/final', 'import_complete', 10), '... the registry imports it (its notification is lost)');
$s = enqueue();
is_deeply($s->{finished}, [ { path => 'lost/final', reason => '' } ],
	'the next final import start is answered 200: our own import finished, no reason');
$r = row('lost/final');
is(join(' ', $r->{state}, $r->{skipped_reason} // 'no-reason'), 'import_done no-reason',
	'... import_done without a skip reason (not native_import)');
is(row('elsewhere/done')->{skipped_reason}, 'native_import', '... while the one imported elsewhere is native_import');
is(sql(q{SELECT string_agg(format('%s %s %s', path, event, coalesce(skipped_reason::text, '-')), ', ' ORDER BY id)
	FROM registry_migration.events WHERE event = 'finish_import'}),
	'elsewhere/done finish_import native_import, lost/final finish_import -',
	'the event log carries each finish reason');
section_time('lost starts', $t);

# ---- a failure notification about an earlier attempt ---------------------------------

# The duplicate of a failure notification: the first copy, for a step a
# fraction of a second old, is held and confirmed (a genuine early failure
# is aborted); the enqueuer retries; the second copy arrives late and does
# not abort the retry.
$t = time();
fresh();
$p = 'late/dup';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.1, pre_import_outcomes => [qw(failed hang)] });
db_add($p);
is_deeply(enqueue()->{started}, [$p], 'failure notification: pre-import started');
ok($sim->wait_for_status($p, 'pre_import_failed', 10), '... it fails on the registry at once');
$sim->clear_requests;
is_deeply([ deliver(1) ], ['pre_import_failed -> pre_importing'],
	'the failure notification for a step under a second old changes nothing yet (returns pre_importing)');
is_deeply([ requests() ], [], '... handle_notification asked the registry nothing');
is(events_of($p), 'default>pre_importing:start_pre_import pre_importing>pre_importing:failure_pending',
	'... it is recorded as failure_pending');
$g = guard();
is_deeply([ $g->{stale}, $g->{aborted}, $g->{errors} ], [ 0, [$p], [] ],
	'the guard confirms it with the registry: a genuine failure, aborted');
is_deeply([ requests_with_code() ], ["status $p 200"], '... with exactly one status request');
$r = repo($p);
is("$r->{state} $r->{retries_count} $r->{aborted_in_state}", 'import_aborted 1 pre_importing',
	'... import_aborted, one retry spent, aborted_in_state pre_importing');
is(join(',', map { $_->{registry_status} // '-' } grep { $_->{event} eq 'abort' } event_rows($p)),
	'pre_import_failed', "... the abort records the registry's status");
is_deeply(enqueue()->{retried}, [$p], 'the enqueuer retries the pre-import (it now hangs on the registry)');
$sim->clear_requests;
is(notify($p, 'pre_import_failed'), 'pre_importing',
	"the first attempt's failure notification arrives again, late: the retry is not aborted");
$g = guard();
is_deeply([ $g->{aborted}, $g->{left_alone} ], [ [], [$p] ],
	'the guard asks the registry, which runs the retry: the report is dismissed');
is(left_alone_reasons($g), 'failure_dismissed 1', '... counted as failure_dismissed');
is_deeply([ requests() ], ["status $p"], '... one status request');
$r = repo($p);
is("$r->{state} $r->{retries_count}", 'pre_importing 1', '... still pre_importing, no retry spent');
is((events($p))[-1], "guard failure_dismissed pre_importing>pre_importing 200 pre_import_in_progress",
	'... recorded as failure_dismissed, with the status the registry gave');
$sim->clear_requests;
$g = guard();
is_deeply([ [ requests() ], $g->{left_alone} ], [ [], [] ], 'a dismissed report is not asked about again');

# The first delivery itself is late: the guard found the failed step (its
# notification delayed), the enqueuer retried, then the notification comes.
fresh();
$p = 'late/delayed';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.1, pre_import_outcomes => [qw(failed hang)] });
db_add($p);
enqueue();
ok($sim->wait_for_status($p, 'pre_import_failed', 10), 'delayed notification: the pre-import failed');
settings(max_step_duration => q{'0'});
is_deeply(guard()->{aborted}, [$p], '... the guard finds it failed and aborts it (the notification is still on its way)');
settings(max_step_duration => q{'5 min'});
is_deeply(enqueue()->{retried}, [$p], '... the enqueuer retries it');
is_deeply([ deliver(1) ], ['pre_import_failed -> pre_importing'], '... the delayed notification arrives: held');
$g = guard();
is_deeply([ $g->{aborted}, $g->{left_alone} ], [ [], [$p] ], '... the registry runs the retry: dismissed');
is(repo($p)->{retries_count} . ' ' . state_of($p), '1 pre_importing', '... the retry goes on, no retry spent');

# A canceled step confirmed at the retry limit: skipped as the notification
# would have (migration_canceled_by_registry).
fresh(max_retries => 1);
$p = 'late/canceled';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.1, pre_import_outcomes => ['canceled'] });
db_add($p);
enqueue();
ok($sim->wait_for_status($p, 'pre_import_canceled', 10), 'canceled at the limit: the registry cancels the step');
is_deeply([ deliver(1) ], ['pre_import_canceled -> pre_importing'], '... the notification is held');
is_deeply(guard()->{skipped}, [$p], '... the guard confirms it: skipped');
is(row($p)->{skipped_reason}, 'migration_canceled_by_registry', '... migration_canceled_by_registry');

# A finished pre-import that a late failure notification reaches: the
# registry's status says complete, the report is dismissed.
fresh();
$p = 'late/done';
$sim->add_repositories({ path => $p, status => 'pre_import_complete' });
put_row($p, 'pre_import_done', pre_import_started_at => ago('1 hour'), pre_import_done_at => 'now()');
is(notify($p, 'pre_import_failed'), 'pre_import_done', 'a failure for a pre-import just recorded as done: held');
is_deeply(guard()->{left_alone}, [$p], '... the registry reports it complete: dismissed');
is(state_of($p), 'pre_import_done', '... still pre_import_done');

# The registry does not know the repository (404): nothing contradicts the
# notification, which is then applied as it would have been.
fresh();
$p = 'late/unknown';
put_row($p, 'importing', pre_import_started_at => ago('1 hour'), pre_import_done_at => ago('1 hour'),
	import_started_at => 'now()');
is(notify($p, 'import_failed'), 'importing', 'a failure for a repository the registry does not know: held');
is_deeply(guard()->{aborted}, [$p], '... the status request is answered 404: aborted');
like((events($p))[-1], qr/^guard abort importing>import_aborted 404 -$/, '... by the guard, with the 404');
section_time('late failures', $t);

# ---- a held report is never stuck -------------------------------------------------------

# A pre-import that fails at once, its failure notification held, and the
# registry unable to answer status requests.
sub held_while_unavailable
{
	my ($path) = @_;
	$sim->add_repositories({ path => $path, pre_import_seconds => 0.1, pre_import_outcomes => ['failed'] });
	db_add($path);
	enqueue();
	ok($sim->wait_for_status($path, 'pre_import_failed', 10), "$path: the pre-import failed");
	is_deeply([ deliver(1) ], ['pre_import_failed -> pre_importing'], "$path: its notification is held");
	$sim->set_faults(fault({ kind => 'status' }, respond(503)));
}

$t = time();
fresh();
$p = 'late/outage';
held_while_unavailable($p);
$g = guard();
is_deeply([ $g->{aborted}, $g->{left_alone} ], [ [], [$p] ],
	'the status request fails: the report stays held, nothing changes');
is(left_alone_reasons($g), 'confirmation_pending 1', '... counted as confirmation_pending');
is(state_of($p), 'pre_importing', '... pre_importing');
$sim->clear_faults;
is_deeply(guard()->{aborted}, [$p], '... the next guard cycle confirms it: aborted');

# The step turns stale while the registry cannot answer: the report is
# dropped, and the guard's usual rules for stale steps take over.
fresh(max_step_duration => q{'1 s'});
$p = 'late/stale';
held_while_unavailable($p);
is_deeply(guard()->{left_alone}, [$p], '... held while the registry cannot answer');
ok(wait_until(sub { sql(q{SELECT pre_import_started_at < clock_timestamp() - interval '1 s'
	FROM registry_migration.repositories WHERE path = 'late/stale'}) eq 't' }), '... the step becomes stale');
$sim->clear_faults;
$g = guard();
is_deeply([ $g->{stale}, $g->{aborted} ], [ 1, [$p] ],
	'the stale step is handled by the usual guard rules (the registry reports it failed: aborted)');
section_time('held reports', $t);

$sim->stop;
$node->stop;

# ---- the worker confirms at once ----------------------------------------------------------

# Its periodic cycles are an hour apart: only the notification's wake can
# make it confirm.
$t = time();
my $wsim = RegistrySimulator->new(pre_import_seconds => 0.1, import_seconds => 0.1, cancel_cooldown => 0);
my $wnode = start_node('late_worker', sim => $wsim, conf => [
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.guard_interval = '1h'",
	"registry_migration.enqueue_interval = '1h'" ]);
create_attempt_function();
$p = 'worker/late';
$wsim->add_repositories({ path => $p, pre_import_outcomes => [qw(failed hang)] });
db_add($p);
settings(enabled => 'true', capacity => 5, max_tags_count => 0);
ok($wnode->poll_query_until('postgres', q{SELECT state = 'pre_importing' FROM registry_migration.repositories
	WHERE path = 'worker/late'}), 'worker: woken by the settings change, it starts the pre-import');
ok($wsim->wait_for_status($p, 'pre_import_failed', 10), '... the pre-import fails');
is(notify($p, 'pre_import_failed'), 'pre_importing', '... its failure notification is held');
ok($wnode->poll_query_until('postgres', q{SELECT string_agg(format('%s:%s', cause, event), ' ' ORDER BY id)
	= 'enqueuer:start_pre_import notification:failure_pending guard:abort enqueuer:start_pre_import'
	FROM registry_migration.events WHERE path = 'worker/late'}),
	'... the worker, woken by it, confirms with the registry, aborts, and retries');
is(notify($p, 'pre_import_failed'), 'pre_importing', 'the same notification again, late: held');
ok($wnode->poll_query_until('postgres', q{SELECT count(*) = 1 FROM registry_migration.events
	WHERE path = 'worker/late' AND event = 'failure_dismissed' AND cause = 'guard'}),
	'... the worker confirms it: the registry runs the retry, the report is dismissed');
is(repo($p)->{state} . ' ' . repo($p)->{retries_count}, 'pre_importing 1', '... the retry goes on');
$wsim->stop;
$wnode->stop;
section_time('worker', $t);

# ---- the worker looks at a step as soon as it is stale ------------------------------------

# Its periodic guard is an hour away and no notification arrives (this
# simulator sends none): only looking at a step when it becomes stale can
# finish the migration of this repository.
$t = time();
my $ssim = RegistrySimulator->new(pre_import_seconds => 0.1, import_seconds => 0.1);
my $snode = start_node('stale_worker', sim => $ssim, conf => [
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.guard_interval = '1h'",
	"registry_migration.enqueue_interval = '1h'" ]);
$p = 'worker/stale';
$ssim->add_repositories({ path => $p });
db_add($p);
settings(enabled => 'true', capacity => 5, max_tags_count => 0, max_step_duration => "'2 s'");
ok($snode->poll_query_until('postgres', q{SELECT state = 'import_done' FROM registry_migration.repositories
	WHERE path = 'worker/stale'}), 'notifications lost, guard an hour away: the repository is imported');
is($snode->safe_psql('postgres', q{SELECT string_agg(format('%s:%s', cause, event), ' ' ORDER BY id)
	FROM registry_migration.events WHERE path = 'worker/stale'}),
	'enqueuer:start_pre_import guard:finish_pre_import guard:start_import guard:finish_import',
	'... each step found finished by the guard');
is($snode->safe_psql('postgres', q{SELECT bool_and(e.at - s.at >= interval '2 s')
	FROM registry_migration.events e
	JOIN LATERAL (SELECT at FROM registry_migration.events s WHERE s.path = e.path
	               AND s.event IN ('start_pre_import', 'start_import') AND s.id < e.id
	             ORDER BY s.id DESC LIMIT 1) s ON true
	WHERE e.path = 'worker/stale' AND e.event LIKE 'finish_%'}), 't',
	'... once its step had lasted max_step_duration, not before');

# A hung pre-import: the guard cancels it as soon as it is long-running, and
# the enqueuer retries it as soon as it is no longer held back for the
# registry's cool-down; both cycles are an hour apart otherwise.
$p = 'worker/hung';
$ssim->add_repositories({ path => $p, pre_import_outcomes => [qw(hang complete)] });
db_add($p);
settings(pre_import_timeout => "'3 s'");
ok($snode->poll_query_until('postgres', q{SELECT state = 'import_done' FROM registry_migration.repositories
	WHERE path = 'worker/hung'}), 'a hung pre-import, cycles an hour apart: the repository is imported');
is($snode->safe_psql('postgres', q{SELECT string_agg(format('%s:%s', cause, event), ' ' ORDER BY id)
	FROM registry_migration.events WHERE path = 'worker/hung'}),
	'enqueuer:start_pre_import guard:abort enqueuer:start_pre_import guard:finish_pre_import '
	  . 'guard:start_import guard:finish_import',
	'... canceled and aborted by the guard, retried by the enqueuer');
is($snode->safe_psql('postgres', q{SELECT string_agg(format('%s %s', event, at - lag >= CASE event
	       WHEN 'abort' THEN interval '3 s' ELSE interval '5 s' END), ', ' ORDER BY id)
	FROM (SELECT id, at, event, lag(at) OVER (ORDER BY id) FROM registry_migration.events
	       WHERE path = 'worker/hung') e WHERE event IN ('abort', 'start_pre_import') AND lag IS NOT NULL}),
	'abort t, start_pre_import t',
	'... not before it had lasted pre_import_timeout (3 s), nor before its hold had passed (5 s)');

# An aborted repository held back for the cool-down, in a denied root
# namespace, is not the enqueuer's to take: the worker does not wake for it
# when its hold ends.
sql(q{INSERT INTO registry_migration.denied_namespaces VALUES ('denied');
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at, aborted_at,
		retries_count, aborted_in_state, consecutive_429s)
	VALUES ('denied/held', 'import_aborted', now() - interval '10 s', now(), 1, 'pre_importing', 1)});
my $idle_cycles = q{SELECT (cycles->'enqueue'->>'nothing_to_do')::int FROM registry_migration.worker_status};
my $idle_before = sql($idle_cycles);
sql('SELECT pg_reload_conf()');
ok($snode->poll_query_until('postgres', "SELECT ($idle_cycles) > $idle_before"),
	'a denied repository within its hold: woken by a reload, the enqueuer finds nothing to do');
my $idle_after = sql($idle_cycles);
sleep 6;
is(sql($idle_cycles), $idle_after, '... and runs no cycle when the hold ends 5 s later');
is(state_of('denied/held'), 'import_aborted', '... the repository is left as it was');
section_time('stale', $t);

end_test();
