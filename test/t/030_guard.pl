# The guard cycle end to end against the registry simulator: the seed
# scenario (a hanging pre-import canceled, retried and finally skipped), then
# the guard's rules: which repositories are stale, what each registry status
# does to a stale step, the long-running thresholds, outages, and concurrent
# status requests. Cycles are called by hand, step ages are set in the rows,
# and the simulator's request log shows which requests were (not) sent.
#
# The simulator has no notification URL: it logs every notification it would
# send, and the test delivers them by calling handle_notification(), as the
# receiving application does.
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

my ($node, $sim) = start_guard_test('guard');

# A pre-import that hangs: canceled by the guard, retried by the enqueuer,
# skipped migration_canceled once retries_count >= max_retries - 1.
my $t = time();
fresh();
my $p = 'seed/pre-hang';
$sim->add_repositories({ path => $p, pre_import_outcomes => ['hang'] });
put_row($p, 'default');
is_deeply(enqueue()->{started}, [$p], 'seed pre-import: the enqueuer starts the pre-import');
for my $round (1 .. 3)
{
	my $g = guard();
	is_deeply($g->{canceled}, [$p], "seed pre-import round $round: the guard cancels the hung pre-import");
	my $r = row($p);
	if ($round < 3)
	{
		is_deeply($g->{aborted}, [$p], "... round $round: and aborts it");
		is("$r->{state} $r->{retries_count} $r->{aborted_in_state}", "import_aborted $round pre_importing",
			"... round $round: import_aborted, retries_count $round, aborted_in_state pre_importing");
		ok(defined $r->{aborted_at}, "... round $round: aborted_at set");
		# The registry reports the cancel the guard made: already handled.
		is_deeply([ deliver(1) ], ['pre_import_canceled -> import_aborted'],
			"... round $round: the registry's pre_import_canceled notification changes nothing");
		is(row($p)->{retries_count}, $round, "... round $round: no retry spent by the notification");
		my $e = enqueue();
		is_deeply($e->{retried}, [$p], "... round $round: the enqueuer finds pre_import_canceled and retries");
		$r = row($p);
		is("$r->{state} $r->{retries_count}", "pre_importing $round", "... round $round: pre_importing again");
		ok(!defined $r->{aborted_at} && !defined $r->{aborted_in_state},
			"... round $round: leaving import_aborted clears aborted_at and aborted_in_state");
	}
	else
	{
		is_deeply([ $g->{skipped}, $g->{aborted} ], [ [$p], [] ],
			'... round 3: at retries_count >= max_retries - 1 it is skipped, not aborted');
		is("$r->{state} $r->{skipped_reason} $r->{retries_count}", 'import_skipped migration_canceled 2',
			'... skipped migration_canceled with retries_count 2 (never more than max_retries)');
		ok(defined $r->{skipped_at}, '... skipped_at set');
	}
}
is_deeply([ deliver(1) ], ['pre_import_canceled -> import_skipped'],
	'seed pre-import: the last cancel notification changes nothing');
is(enqueue()->{stopped}, 'nothing_to_do', 'seed pre-import: the enqueuer has nothing left to do');
is_deeply([ requests_for($p) ], [
	'start:pre seed/pre-hang', 'status seed/pre-hang', 'cancel seed/pre-hang',
	'status seed/pre-hang', 'start:pre seed/pre-hang', 'status seed/pre-hang', 'cancel seed/pre-hang',
	'status seed/pre-hang', 'start:pre seed/pre-hang', 'status seed/pre-hang', 'cancel seed/pre-hang' ],
	'seed pre-import: three starts, a status check before each cancel and each retry, nothing after the skip');
is_deeply([ events($p) ], [
	'enqueuer start_pre_import default>pre_importing 202 -',
	'guard abort pre_importing>import_aborted 202 -',
	'notification notification import_aborted>import_aborted - pre_import_canceled',
	'enqueuer start_pre_import import_aborted>pre_importing 202 -',
	'guard abort pre_importing>import_aborted 202 -',
	'notification notification import_aborted>import_aborted - pre_import_canceled',
	'enqueuer start_pre_import import_aborted>pre_importing 202 -',
	'guard skip pre_importing>import_skipped 202 -',
	'notification notification import_skipped>import_skipped - pre_import_canceled' ],
	'seed pre-import: the event log tells the story');

# A final import that hangs: the same loop, retrying the final import only.
fresh();
$p = 'seed/final-hang';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.05, import_outcomes => ['hang'] });
put_row($p, 'default');
is_deeply(enqueue()->{started}, [$p], 'seed final import: pre-import started');
is_deeply([ deliver(1) ], ['pre_import_complete -> pre_import_done'], '... the pre-import completes');
is_deeply(enqueue()->{final_imports}, [$p], '... the enqueuer requests the final import');
for my $round (1 .. 3)
{
	my $g = guard();
	is_deeply($g->{canceled}, [$p], "seed final import round $round: the guard cancels the hung import");
	my $r = row($p);
	if ($round < 3)
	{
		is("$r->{state} $r->{retries_count} $r->{aborted_in_state}", "import_aborted $round importing",
			"... round $round: aborted in importing, retries_count $round");
		is_deeply([ deliver(1) ], ['import_canceled -> import_aborted'],
			"... round $round: the import_canceled notification changes nothing");
		is_deeply(enqueue()->{retried}, [$p], "... round $round: the enqueuer retries the final import");
		is(row($p)->{state}, 'importing', "... round $round: importing again");
	}
	else
	{
		is("$r->{state} $r->{skipped_reason} $r->{retries_count}", 'import_skipped migration_canceled 2',
			'... round 3: skipped migration_canceled, retries_count 2');
	}
}
is_deeply([ grep { /^start/ } requests_for($p) ],
	[ 'start:pre seed/final-hang', ('start:final seed/final-hang') x 3 ],
	'seed final import: one pre-import, then only final imports (first try and two retries)');

# The registry cancels on its own: notifications abort, the enqueuer retries,
# the limit skips with migration_canceled_by_registry. The steps here last
# a few milliseconds; each is dated a minute back before its cancel is
# reported, so the notification acts at once (a failure reported for a step
# only seconds old is confirmed with the registry first: 034_late_and_lost.pl).
sub step_began_a_minute_ago
{
	my ($path) = @_;
	sql(q{UPDATE registry_migration.repositories
	         SET pre_import_started_at = CASE WHEN state = 'pre_importing' THEN now() - interval '1 minute'
	                                          ELSE pre_import_started_at END,
	             import_started_at = CASE WHEN state = 'importing' THEN now() - interval '1 minute'
	                                      ELSE import_started_at END
	       WHERE path = } . quote($path));
}
fresh();
$p = 'seed/registry-cancels';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.05, pre_import_outcomes => ['canceled'] });
put_row($p, 'default');
is_deeply(enqueue()->{started}, [$p], 'registry cancel (pre-import): started');
for my $round (1 .. 3)
{
	my $want = $round < 3 ? 'import_aborted' : 'import_skipped';
	step_began_a_minute_ago($p);
	is_deeply([ deliver(1) ], ["pre_import_canceled -> $want"],
		"registry cancel round $round: the pre_import_canceled notification gives $want");
	my $r = row($p);
	is($r->{retries_count}, $round, "... round $round: retries_count $round");
	if ($round < 3)
	{
		is_deeply(enqueue()->{retried}, [$p], "... round $round: the enqueuer retries the pre-import");
	}
	else
	{
		is("$r->{skipped_reason} $r->{aborted_in_state}", 'migration_canceled_by_registry pre_importing',
			'... at the limit: skipped migration_canceled_by_registry, aborted_in_state kept');
		ok(defined $r->{aborted_at} && defined $r->{skipped_at}, '... aborted_at kept, skipped_at set');
	}
}
is_deeply([ (events($p))[-2, -1] ], [
	'notification abort pre_importing>import_aborted - pre_import_canceled',
	'notification skip import_aborted>import_skipped - pre_import_canceled' ],
	'registry cancel: the abort and the automatic skip are two events');
is(enqueue()->{stopped}, 'nothing_to_do', 'registry cancel: nothing more to do');

# The registry cancels a hung final import (simulator registry_cancel).
fresh(max_retries => 2);
$p = 'seed/registry-cancels-final';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.05, import_outcomes => ['hang'] });
put_row($p, 'default');
enqueue();
deliver(1);
is_deeply(enqueue()->{final_imports}, [$p], 'registry cancel (final import): final import requested');
$sim->registry_cancel($p);
step_began_a_minute_ago($p);
is_deeply([ deliver(1) ], ['import_canceled -> import_aborted'], '... the registry cancels it: aborted');
is(row($p)->{aborted_in_state}, 'importing', '... aborted_in_state importing');
is_deeply(enqueue()->{retried}, [$p], '... the enqueuer retries the final import');
is(row($p)->{state}, 'importing', '... importing again');
$sim->registry_cancel($p);
step_began_a_minute_ago($p);
is_deeply([ deliver(1) ], ['import_canceled -> import_skipped'], '... canceled again at max_retries 2: skipped');
my $r = row($p);
is("$r->{skipped_reason} $r->{retries_count} $r->{aborted_in_state}",
	'migration_canceled_by_registry 2 importing', '... migration_canceled_by_registry, retries_count 2');
section_time('seed scenario', $t);

# ---- guard rules ---------------------------------------------------------------

# Stale selection: only steps older than max_step_duration, oldest first,
# at most guard_batch_size; capacity 0 does not switch the guard off;
# pre_import_done repositories are never the guard's.
$t = time();
fresh(max_step_duration => q{'10 min'}, pre_import_timeout => q{'1 day'},
	import_timeout => q{'1 day'}, guard_batch_size => 2);
sim_running('g/fresh', 'pre');
sim_running('g/old1h', 'pre');
sim_running('g/old30m', 'pre');
sim_running('g/old2h', 'final');
# The registry says this pre-import failed: the guard would abort it, if it looked.
$sim->add_repositories({ path => 'g/done', status => 'pre_import_failed' });
$sim->clear_requests;
put_row('g/fresh', 'pre_importing', pre_import_started_at => ago('1 min'));
put_row('g/old1h', 'pre_importing', pre_import_started_at => ago('1 hour'));
put_row('g/old30m', 'pre_importing', pre_import_started_at => ago('30 min'));
put_row('g/old2h', 'importing', pre_import_started_at => ago('4 hours'),
	pre_import_done_at => ago('3 hours'), import_started_at => ago('2 hours'));
put_row('g/done', 'pre_import_done', pre_import_started_at => ago('3 days'),
	pre_import_done_at => ago('2 days'));
my $before = sql('SELECT string_agg(r::text, E\'\n\' ORDER BY id) FROM registry_migration.repositories r');
my $g = guard();
is_deeply([ map { exists $g->{$_} ? $_ : "no $_" } qw(ran stale aborted canceled skipped finished left_alone errors) ],
	[qw(ran stale aborted canceled skipped finished left_alone errors)], 'the guard summary has every documented key');
is($g->{stale}, 2, 'stale selection: guard_batch_size 2 honoured');
is_deeply($g->{left_alone}, [ 'g/old2h', 'g/old1h' ],
	'... oldest step first; confirmed running and not long-running: left alone');
is_deeply([ sort keys %{ $g->{left_alone_reasons} } ],
	[qw(cancel_not_accepted confirmation_pending failure_dismissed registry_unavailable running state_changed)],
	'... left_alone_reasons has a count for every reason');
is(left_alone_reasons($g), 'running 2', '... both because the registry runs them (reason running)');
is_deeply([ sort(requests()) ], [ 'status g/old1h', 'status g/old2h' ],
	'... only those two were asked for (not the fresh step, not the younger stale one, not pre_import_done)');
settings(guard_batch_size => 100, capacity => 0, enabled => 'false');
$sim->clear_requests;
$g = guard();
is($g->{stale}, 3, 'capacity 0 and disabled: the guard still runs, three stale steps');
is_deeply($g->{left_alone}, [ 'g/old2h', 'g/old1h', 'g/old30m' ], '... all left alone, oldest first');
is_deeply([ sort(requests()) ], [ 'status g/old1h', 'status g/old2h', 'status g/old30m' ],
	'... g/fresh (not stale) and g/done (pre_import_done) never asked for');
is(sql('SELECT string_agg(r::text, E\'\n\' ORDER BY id) FROM registry_migration.repositories r'), $before,
	'... no row changed');
is(sql('SELECT count(*) FROM registry_migration.events'), '0', '... and no event written');

# Long-running threshold raised by tags: the tag list is asked
# for only once the static timeout is exceeded.
fresh(pre_import_timeout => q{'10 min'}, pre_import_tags_rate => 1);
sim_running('t/young', 'pre', tags => 5000);
sim_running('t/many', 'pre', tags => 3000);
sim_running('t/few', 'pre', tags => 10);
$sim->clear_requests;
put_row('t/young', 'pre_importing', pre_import_started_at => ago('5 min'));
put_row('t/many', 'pre_importing', pre_import_started_at => ago('20 min'));
put_row('t/few', 'pre_importing', pre_import_started_at => ago('20 min 1 s'));
# Its tag list fails: counted as 0 tags, so it is long-running despite 4000 tags.
sim_running('t/broken', 'pre', tags => 4000);
put_row('t/broken', 'pre_importing', pre_import_started_at => ago('20 min 2 s'));
$sim->set_faults({ match => { kind => 'tags', path => 't/broken' }, action => { type => 'respond', code => 503 } });
$sim->clear_requests;
$g = guard();
is_deeply([ sort @{ $g->{left_alone} } ], [ 't/many', 't/young' ],
	'tags: 20 min with 3000 tags at 1 s/tag is under its threshold; 5 min is under the static timeout');
is_deeply([ $g->{canceled}, $g->{aborted} ], [ [ 't/broken', 't/few' ], [ 't/broken', 't/few' ] ],
	'... 20 min with 10 tags, or with a failed tag list (0 tags): long-running, canceled and aborted');
my %seen;
is_deeply([ grep { /^tags/ && !$seen{$_}++ } requests() ], [ 'tags t/broken', 'tags t/few', 'tags t/many' ],
	'... tag lists requested only for the steps past the static timeout');
is_deeply([ grep { /^cancel/ } requests() ], [ 'cancel t/broken', 'cancel t/few' ], '... cancels for those two only');
is(row('t/many')->{state}, 'pre_importing', '... t/many still pre_importing');

# A cancel answered 400 is reconciled from the real status: a step that
# finished meanwhile is recorded as finished, without spending a retry.
# (Thresholds of 16 min: the steps are long-running, none has lasted twice as long.)
fresh(pre_import_timeout => q{'16 min'}, import_timeout => q{'16 min'});
$sim->add_repositories(
	{ path => 'c/pre', status => 'pre_import_complete', import_outcomes => ['hang'] },
	{ path => 'c/imp', status => 'import_complete' });
sim_running('c/stuck', 'pre');
sim_running('c/gone', 'pre');
put_row('c/gone', 'pre_importing', pre_import_started_at => ago('20 min'));
put_row('c/pre', 'pre_importing', pre_import_started_at => ago('1 hour'));
put_row('c/imp', 'importing', pre_import_started_at => ago('3 hours'),
	pre_import_done_at => ago('2 hours'), import_started_at => ago('1 hour'));
put_row('c/stuck', 'pre_importing', pre_import_started_at => ago('30 min'));
sub fake_status
{
	my ($path, $status) = @_;
	return { match => { kind => 'status', path => $path }, times => 1, action => { type => 'respond',
		code => 200, body => $json->encode({ name => 'x', path => $path, status => $status, detail => '' }) } };
}
# The guard's status batch still sees the steps running; they end before the cancel.
$sim->set_faults(fake_status('c/pre', 'pre_import_in_progress'), fake_status('c/imp', 'import_in_progress'),
	{ match => { kind => 'cancel', path => 'c/stuck' }, times => 1, action => { type => 'respond', code => 400 } },
	# c/gone: the cancel and the second status answered 404 (unknown): left alone too.
	{ match => { kind => 'cancel', path => 'c/gone' }, times => 1, action => { type => 'respond', code => 404 } },
	fake_status('c/gone', 'pre_import_in_progress'),
	{ match => { kind => 'status', path => 'c/gone' }, times => 1, action => { type => 'respond', code => 404 } });
$sim->clear_requests;
$g = guard();
is_deeply([ $g->{canceled}, $g->{aborted}, [ sort @{ $g->{finished} } ] ], [ [], [], [ 'c/imp', 'c/pre' ] ],
	'cancel answered 400: nothing canceled or aborted; both finished steps recorded as finished');
is_deeply($g->{final_imports}, ['c/pre'], '... the finished pre-import moves on to its final import');
$r = row('c/pre');
is("$r->{state} $r->{retries_count}", 'importing 0', '... c/pre importing, no retry spent');
ok(defined $r->{pre_import_done_at} && defined $r->{import_started_at}, '... with pre_import_done_at and import_started_at');
$r = row('c/imp');
is("$r->{state} $r->{retries_count}", 'import_done 0', '... c/imp import_done, no retry spent');
is_deeply([ events('c/imp') ], ['guard finish_import importing>import_done 200 import_complete'],
	'... logged with the status that decided it');
like((event_rows('c/imp'))[0]{detail}, qr/cancel not accepted.*400/, '... and the refused cancel in the detail');
is_deeply($g->{left_alone}, [ 'c/stuck', 'c/gone' ],
	'... still running after a refused cancel, or unknown after a cancel answered 404: left alone');
is(left_alone_reasons($g), 'cancel_not_accepted 2', '... counted as cancel_not_accepted');
is_deeply([ requests_for('c/gone') ], [ 'status c/gone', 'cancel c/gone', 'status c/gone' ],
	'... c/gone: one cancel (404), the status asked once more (404)');
is("@{[ row('c/gone')->{state} ]} @{[ row('c/gone')->{retries_count} ]}", 'pre_importing 0', '... c/gone unchanged');
is("@{[ row('c/stuck')->{state} ]} @{[ row('c/stuck')->{retries_count} ]}", 'pre_importing 0', '... c/stuck unchanged');
is_deeply([ requests_for('c/stuck') ], [ 'status c/stuck', 'cancel c/stuck', 'status c/stuck' ],
	'... one cancel, then the status asked once more');
is_deeply([ grep { /^start/ } requests() ], ['start:final c/pre'], '... the only start is c/pre\'s final import');

# A refused cancel followed by nothing the guard can act on — the step still
# running, a status that decides nothing, no usable answer — leaves the
# step alone for the next cycle, but once it has lasted more than twice its
# long-running threshold (tags included) it is aborted, like a step the
# registry cannot answer for; at the retry limit that abort skips it.
fresh(pre_import_timeout => q{'20 min'}, import_timeout => q{'20 min'}, pre_import_tags_rate => 1);
sim_running($_, 'pre') for qw(x/running-old x/unknown-old x/unavailable-old x/limit-old x/running-young);
sim_running('x/tags', 'pre', tags => 1800);    # 1 800 tags at 1 s/tag: a threshold of 30 min
# Importing, but the registry only knows the finished pre-import (decision none).
$sim->add_repositories({ path => 'x/none-old', status => 'pre_import_complete' });
put_row('x/running-old', 'pre_importing', pre_import_started_at => ago('50 min'));
put_row('x/tags', 'pre_importing', pre_import_started_at => ago('49 min'));
put_row('x/unknown-old', 'pre_importing', pre_import_started_at => ago('45 min'));
put_row('x/unavailable-old', 'pre_importing', pre_import_started_at => ago('44 min'));
put_row('x/none-old', 'importing', pre_import_done_at => ago('2 hours'), import_started_at => ago('43 min'));
put_row('x/limit-old', 'pre_importing', pre_import_started_at => ago('42 min'), retries_count => 2);
put_row('x/running-young', 'pre_importing', pre_import_started_at => ago('30 min'));
$sim->set_faults(
	(map { fault({ kind => 'cancel', path => $_ }, respond(400), 1) } qw(x/running-old x/tags x/limit-old x/running-young)),
	fault({ kind => 'cancel', path => 'x/unknown-old' }, respond(404), 1),
	fault({ kind => 'cancel', path => 'x/unavailable-old' }, respond(500), 1),
	fake_status('x/unknown-old', 'pre_import_in_progress'),
	fault({ kind => 'status', path => 'x/unknown-old' }, respond(404), 1),
	fake_status('x/unavailable-old', 'pre_import_in_progress'),
	fault({ kind => 'status', path => 'x/unavailable-old' }, respond(503), 1),
	fake_status('x/none-old', 'import_in_progress'));
$sim->clear_requests;
$g = guard();
is_deeply($g->{aborted}, [qw(x/running-old x/unknown-old x/unavailable-old x/none-old)],
	'refused cancel, then still running, unknown, unavailable or none, past twice the threshold: aborted');
is_deeply($g->{skipped}, ['x/limit-old'], '... at retries_count 2 of 3: aborted, then skipped');
is_deeply($g->{left_alone}, [qw(x/tags x/running-young)],
	'... under twice the threshold (30 min of 20; 49 min of 30 with the tags): left alone');
is(left_alone_reasons($g), 'cancel_not_accepted 2', '... counted as cancel_not_accepted');
is_deeply($g->{canceled}, [], '... no cancel was accepted');
is_deeply([ map { [ grep { !/^tags/ } requests_for($_) ] } qw(x/running-old x/unavailable-old x/running-young) ],
	[ map { [ "status $_", "cancel $_", "status $_" ] } qw(x/running-old x/unavailable-old x/running-young) ],
	'... each (besides its tag list): the status, one cancel, the status once more');
is_deeply([ grep { /^start/ } requests() ], [], '... and no start');
is(join(' | ', map { my $r = row($_); "$r->{state} $r->{retries_count} $r->{aborted_in_state}" }
		qw(x/running-old x/unknown-old x/unavailable-old x/none-old)),
	'import_aborted 1 pre_importing | import_aborted 1 pre_importing | import_aborted 1 pre_importing | import_aborted 1 importing',
	'... aborted with one retry spent, from the step they were in');
is_deeply([ events('x/running-old'), events('x/unavailable-old') ],
	[ 'guard abort pre_importing>import_aborted 200 pre_import_in_progress', 'guard abort pre_importing>import_aborted 503 -' ],
	'... logged with the last status answer');
like((event_rows('x/running-old'))[0]{detail}, qr/cancel not accepted.*400.*twice its long-running threshold/,
	'... the detail says why');
$r = row('x/limit-old');
is("$r->{state} $r->{skipped_reason} $r->{retries_count}", 'import_skipped too_many_retries 3',
	'... x/limit-old skipped too_many_retries');
is(join(' ', map { row($_)->{state} } qw(x/tags x/running-young)), 'pre_importing pre_importing',
	'... the others unchanged');

# Registry unavailable (503 to the status): left alone, unless the step is
# older than twice its threshold; the cycle does not stop early; the
# tag list is asked for only past twice pre_import_timeout.
fresh(pre_import_timeout => q{'10 min'}, import_timeout => q{'10 min'}, pre_import_tags_rate => 0.001);
$sim->add_repositories(map { { path => $_ } } 'u/recent', 'u/ancient', 'u/imp');
$sim->add_repositories({ path => 'u/fine', status => 'import_complete' });
$sim->set_faults(map { { match => { kind => 'status', path => $_ }, action => { type => 'respond', code => 503 } } }
	  'u/recent', 'u/ancient', 'u/imp');
put_row('u/ancient', 'pre_importing', pre_import_started_at => ago('25 min'));
put_row('u/imp', 'importing', import_started_at => ago('24 min'));
put_row('u/recent', 'pre_importing', pre_import_started_at => ago('15 min'));
put_row('u/fine', 'importing', import_started_at => ago('1 min'));
$g = guard();
is_deeply($g->{left_alone}, ['u/recent'], 'unavailable: 15 min (past the threshold, under twice it): left alone');
is(left_alone_reasons($g), 'registry_unavailable 1', '... counted as registry_unavailable');
is_deeply($g->{aborted}, [ 'u/ancient', 'u/imp' ], '... over twice the threshold: aborted');
is_deeply($g->{finished}, ['u/fine'], '... the cycle went on with the next repository');
is_deeply($g->{canceled}, [], '... no cancel sent for an unconfirmed step');
is_deeply([ grep { /^(cancel|start)/ } requests() ], [], '... no cancel or start request at all');
is_deeply([ grep { /^tags/ } requests() ], ['tags u/ancient'],
	'... tag list only for the pre-import older than twice pre_import_timeout');
$r = row('u/ancient');
is("$r->{state} $r->{retries_count} $r->{aborted_in_state}", 'import_aborted 1 pre_importing', '... u/ancient aborted');
is_deeply([ events('u/ancient') ], ['guard abort pre_importing>import_aborted 503 -'], '... logged with the 503');
is(row('u/recent')->{state}, 'pre_importing', '... u/recent unchanged');

# Lost completion notifications, and the master switch:
# the guard records what the registry reports; it asks for the final import
# only while enabled; it still cancels stuck work while disabled.
fresh(enabled => 'false');
$sim->add_repositories({ path => 'l/off', status => 'pre_import_complete' },
	{ path => 'l/imp', status => 'import_complete' },
	{ path => 'l/on', status => 'pre_import_complete', import_outcomes => ['hang'] });
sim_running('l/stuck', 'pre');
$sim->clear_requests;
put_row('l/off', 'pre_importing', pre_import_started_at => ago('2 hours'));
put_row('l/imp', 'importing', import_started_at => ago('1 hour'));
put_row('l/stuck', 'pre_importing', pre_import_started_at => ago('30 min'));
$g = guard();
is_deeply($g->{finished}, [ 'l/off', 'l/imp' ], 'lost notifications: both finished steps recorded (disabled)');
is_deeply([ $g->{canceled}, $g->{aborted} ], [ ['l/stuck'], ['l/stuck'] ],
	'... the guard still cancels a stuck step while disabled');
is("@{[ row('l/off')->{state} ]} @{[ row('l/imp')->{state} ]}", 'pre_import_done import_done',
	'... pre_import_done and import_done');
is(sql(q{SELECT sum(retries_count) FROM registry_migration.repositories WHERE path IN ('l/off', 'l/imp')}), '0',
	'... no retry spent');
is_deeply([ grep { /^start/ } requests() ], [], '... disabled: no start request sent (no final import)');
is_deeply($g->{final_imports} // [], [], '... and none listed');
settings(enabled => 'true');
put_row('l/on', 'pre_importing', pre_import_started_at => ago('1 hour'));
$sim->clear_requests;
$g = guard();
is_deeply([ $g->{stale}, $g->{finished}, $g->{final_imports} ], [ 1, ['l/on'], ['l/on'] ],
	'enabled: the finished pre-import is recorded and its final import requested by the guard');
is_deeply([ requests() ], [ 'status l/on', 'start:final l/on' ],
	'... l/off (pre_import_done) is left to the enqueuer: not asked, no final import from the guard');
is(row('l/on')->{state}, 'importing', '... l/on importing');
is_deeply(enqueue()->{final_imports}, ['l/off'], '... the next enqueuer cycle requests l/off\'s final import');

# Steps the registry does not know (404) or reports unreadably are not running: aborted.
fresh();
$sim->add_repositories({ path => 'n/missing' }, { path => 'n/garbled', status => 'import_complete' },
	{ path => 'n/failed', status => 'pre_import_failed' }, { path => 'n/native', native => 1 });
sim_running('n/marked', 'final');
$sim->set_faults({ match => { kind => 'status', path => 'n/garbled' }, action => { type => 'malformed_json' } });
put_row('n/marked', 'pre_importing', pre_import_started_at => ago('50 min'));
put_row('n/native', 'importing', import_started_at => ago('40 min'));
# Importing, but the registry only knows the finished pre-import: retry_decision none: not running, aborted.
$sim->add_repositories({ path => 'n/nofinal', status => 'pre_import_complete' });
put_row('n/nofinal', 'importing', pre_import_done_at => ago('2 hours'), import_started_at => ago('30 min'));
put_row('n/missing', 'pre_importing', pre_import_started_at => ago('3 hours'));
put_row('n/garbled', 'importing', import_started_at => ago('2 hours'));
put_row('n/failed', 'pre_importing', pre_import_started_at => ago('1 hour'), retries_count => 2);
$sim->clear_requests;
$g = guard();
is_deeply($g->{aborted}, [ 'n/missing', 'n/garbled', 'n/nofinal' ],
	'404, unparseable status, and importing with only pre_import_complete (decision none): aborted');
is(row('n/nofinal')->{aborted_in_state}, 'importing', '... n/nofinal aborted in importing');
is_deeply($g->{skipped}, ['n/failed'], 'pre_import_failed at retries_count 2 of 3: aborted, then skipped');
$r = row('n/missing');
is("$r->{state} $r->{retries_count} $r->{aborted_in_state}", 'import_aborted 1 pre_importing', '... n/missing');
is_deeply([ events('n/missing') ], ['guard abort pre_importing>import_aborted 404 -'], '... logged with the 404');
$r = row('n/garbled');
is("$r->{state} $r->{aborted_in_state}", 'import_aborted importing',
	'... n/garbled aborted (not finished: the answer could not be read)');
$r = row('n/failed');
is("$r->{state} $r->{skipped_reason} $r->{retries_count} $r->{aborted_in_state}",
	'import_skipped too_many_retries 3 pre_importing', '... n/failed skipped too_many_retries, diagnosis kept');
is_deeply($g->{marked}, ['n/marked'], 'pre_importing but the registry runs its final import: marked');
$r = row('n/marked');
is("$r->{state} $r->{retries_count} " . (defined $r->{import_started_at} ? 'set' : 'NULL'), 'importing 0 set',
	'... importing, import_started_at set, no retry spent');
is_deeply($g->{finished}, ['n/native'], 'native on the registry: finished');
$r = row('n/native');
is("$r->{state} $r->{skipped_reason}", 'import_done native_import', '... import_done as native_import');
is_deeply([ grep { /^(cancel|start)/ } requests() ], [], '... no cancel or start sent');

# A pending Retry-After: the guard records the finished pre-import but sends
# no final import; the enqueuer asks for it first once it has passed.
fresh();
$sim->add_repositories({ path => 'ra/pre', status => 'pre_import_complete', import_outcomes => ['hang'] });
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = now() + interval '1 hour'});
put_row('ra/pre', 'pre_importing', pre_import_started_at => ago('1 hour'));
$g = guard();
is_deeply([ $g->{finished}, $g->{final_imports} // [] ], [ ['ra/pre'], [] ],
	'Retry-After pending: the guard records the finished pre-import, no final import');
is(row('ra/pre')->{state}, 'pre_import_done', '... pre_import_done');
is_deeply([ requests() ], ['status ra/pre'], '... no start request sent');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = NULL});
is_deeply(enqueue()->{final_imports}, ['ra/pre'], '... once it has passed, the enqueuer requests it');
# The status requests of one cycle go out concurrently, at most
# max_concurrent_requests at a time.
fresh(enabled => 'false');
my @batch = map { "b/repo-$_" } 1 .. 6;
$sim->add_repositories(map { { path => $_, status => 'pre_import_complete' } } @batch);
put_row($_, 'pre_importing', pre_import_started_at => ago('1 hour')) for @batch;
$sim->set_faults({ match => { kind => 'status' }, action => { type => 'delay', ms => 300 } });
my $t_batch = time();
$g = sql_json('SET registry_migration.max_concurrent_requests = 3; SELECT registry_migration.run_guard()');
$t_batch = time() - $t_batch;
is_deeply([ sort @{ $g->{finished} } ], [ sort @batch ], 'status batch: six stale repositories handled');
my @edges = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
  map { ([ $_->{time}, 1 ], [ $_->{time} + $_->{duration_ms} / 1000, -1 ]) }
  grep { $_->{kind} eq 'status' } @{ $sim->requests };
my ($in_flight, $peak) = (0, 0);
for (@edges) { $in_flight += $_->[1]; $peak = $in_flight if $in_flight > $peak }
ok($peak >= 2 && $peak <= 3, "status batch: requests overlap, at most max_concurrent_requests (3) in flight (peak $peak)");
cmp_ok($t_batch, '<', 1.5, sprintf('... six 300 ms answers in %.2f s', $t_batch));
section_time('guard rules', $t);

end_test();
