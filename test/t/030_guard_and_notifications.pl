# The guard (SPEC §5), notifications (SPEC §7), the admin cancel and retry
# (SPEC §2.5, §12.9) and their concurrency, end to end against the registry
# simulator. Each part starts from an empty repositories table and a reset
# simulator; cycles are called by hand, step ages are set in the rows, and
# the simulator's request log shows which requests were (not) sent.
#
# The simulator has no notification URL: it logs every notification it would
# send, and the test delivers them by calling handle_notification(), as the
# receiving application does (SPEC §8.3).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time sleep);

my $t_start = time();
my $sim = RegistrySimulator->new(
	pre_import_seconds => 60, import_seconds => 60, cancel_cooldown => 0);
my $http = HTTP::Tiny->new(timeout => 10);
my $json = JSON::PP->new->utf8->canonical;

my $node = PostgreSQL::Test::Cluster->new('guard');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.request_timeout = '5s'",
	"registry_migration.connect_timeout = '1s'", ''));
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION registry_migration;
	-- Runs a statement, returns its single value or "ERROR <sqlstate>: message DETAIL: detail".
	CREATE FUNCTION public.attempt(q text) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		result text; st text; msg text; det text;
	BEGIN
		EXECUTE q INTO result;
		RETURN result;
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
		RETURN 'ERROR ' || st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '');
	END $$;
});

# ---- helpers -----------------------------------------------------------------

sub sql { return $node->safe_psql('postgres', $_[0]) }
sub sql_json { return $json->decode(sql($_[0])) }
sub guard { return sql_json('SELECT registry_migration.run_guard()') }
sub enqueue { return sql_json('SELECT registry_migration.run_enqueuer()') }

# One statement through attempt(): its value, or "ERROR <sqlstate>: ...".
sub attempt
{
	my ($statement) = @_;
	return sql("SELECT public.attempt(\$q\$$statement\$q\$)");
}

sub row
{
	my ($path) = @_;
	return sql_json("SELECT coalesce((SELECT row_to_json(r) FROM registry_migration.repositories r
		WHERE path = '$path'), 'null')");
}

# The event log of one repository, one line per event.
sub events
{
	my ($path) = @_;
	my $rows = sql_json("SELECT coalesce(json_agg(e ORDER BY id), '[]')
		FROM registry_migration.events e WHERE path = '$path'");
	return map {
		join(' ', $_->{cause}, $_->{event}, "$_->{old_state}>$_->{new_state}",
			$_->{http_status} // '-', $_->{registry_status} // '-')
	} @$rows;
}

sub event_rows
{
	my ($path) = @_;
	return @{ sql_json("SELECT coalesce(json_agg(e ORDER BY id), '[]')
		FROM registry_migration.events e WHERE path = '$path'") };
}

# The simulator's request log as short lines: "start:pre a/b", "status a/b",
# "cancel a/b", "cancel:force a/b", "tags a/b" (with the answer code when asked).
sub request_line
{
	my ($r, $with_code) = @_;
	my $what = $r->{kind};
	$what .= ":$r->{import_type}" if $r->{kind} eq 'start';
	$what .= ':force' if $r->{kind} eq 'cancel' && ($r->{query} // '') =~ /force=true/;
	return "$what " . ($r->{repository} // '?') . ($with_code ? ' ' . ($r->{code} // 'none') : '');
}
sub requests { return map { request_line($_) } @{ $sim->requests } }
sub requests_with_code { return map { request_line($_, 1) } @{ $sim->requests } }
sub requests_for
{
	my ($path) = @_;
	return grep { / \Q$path\E$/ } requests();
}

# An expression for a time $interval ago.
sub ago { return "now() - interval '$_[0]'" }

# Insert a repository row in a given state; %columns are SQL expressions.
sub put_row
{
	my ($path, $state, %columns) = @_;
	my @names = sort keys %columns;
	sql("INSERT INTO registry_migration.repositories (path, state"
		  . join('', map { ", $_" } @names) . ") VALUES ('$path', '$state'"
		  . join('', map { ", $columns{$_}" } @names) . ")");
}

# A step running on the simulator (it never ends by itself: outcome hang).
sub sim_running
{
	my ($path, $step, %extra) = @_;
	$sim->add_repositories({ path => $path, pre_import_outcomes => ['hang'],
		import_outcomes => ['hang'], ($step eq 'final' ? (status => 'pre_import_complete') : ()),
		%extra });
	my $r = $http->request('PUT', $sim->url . "/gitlab/v1/import/$path/?import_type=$step");
	die "could not start $step on $path: $r->{status} $r->{content}" unless $r->{status} == 202;
}

my %default_settings = (
	enabled => 'true', capacity => 10, max_retries => 3, start_max_retries => 50,
	max_step_duration => q{'0'}, pre_import_timeout => q{'0'}, import_timeout => q{'0'},
	pre_import_tags_rate => 0, max_tags_count => 0, created_before => 'NULL',
	target_plans => 'NULL', enqueue_waiting_time => q{'0'}, guard_batch_size => 100);

sub settings
{
	my (%set) = @_;
	sql('UPDATE registry_migration.settings SET '
		  . join(', ', map { "$_ = $set{$_}" } sort keys %set));
}

# A clean slate: empty tables, no Retry-After, default test settings, a reset
# simulator (cancel cool-down 0, no faults, empty logs).
my $last_notification = 0;
sub fresh
{
	my (%overrides) = @_;
	$sim->reset;
	$sim->clear_requests;
	sql(q{DELETE FROM registry_migration.repositories;
		DELETE FROM registry_migration.events;
		DELETE FROM registry_migration.denied_namespaces;
		UPDATE registry_migration.registry_state SET retry_after_until = NULL;});
	settings(%default_settings, %overrides);
}

sub wait_until
{
	my ($check, $timeout) = @_;
	my $deadline = time() + ($timeout // 20);
	while (time() < $deadline)
	{
		return 1 if $check->();
		sleep 0.02;
	}
	return 0;
}

# The notifications the simulator sent since the last delivery (waiting for
# at least $count of them), delivered through handle_notification() in order.
# Returns "status -> result" strings.
sub deliver
{
	my ($count) = @_;
	my @new;
	wait_until(sub {
		@new = grep { $_->{seq} > $last_notification } @{ $sim->notifications };
		return @new >= ($count // 0);
	}, 10);
	my @results;
	for my $n (sort { $a->{seq} <=> $b->{seq} } @new)
	{
		$last_notification = $n->{seq};
		push @results, "$n->{status} -> "
		  . attempt("SELECT registry_migration.handle_notification('$n->{path}', '$n->{status}')");
	}
	return @results;
}

sub section_time
{
	my ($name, $since) = @_;
	note(sprintf('%s: %.1f s', $name, time() - $since));
}

# ==== 1. The seed scenario (SPEC §5, §3.3, §4) ===================================

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
			"... round $round: leaving import_aborted clears aborted_at and aborted_in_state (§3.3)");
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
# the limit skips with migration_canceled_by_registry.
fresh();
$p = 'seed/registry-cancels';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.05, pre_import_outcomes => ['canceled'] });
put_row($p, 'default');
is_deeply(enqueue()->{started}, [$p], 'registry cancel (pre-import): started');
for my $round (1 .. 3)
{
	my $want = $round < 3 ? 'import_aborted' : 'import_skipped';
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
			'... at the limit: skipped migration_canceled_by_registry, aborted_in_state kept (§11.16)');
		ok(defined $r->{aborted_at} && defined $r->{skipped_at}, '... aborted_at kept, skipped_at set');
	}
}
is_deeply([ (events($p))[-2, -1] ], [
	'notification abort pre_importing>import_aborted - pre_import_canceled',
	'notification skip import_aborted>import_skipped - pre_import_canceled' ],
	'registry cancel: the abort and the automatic skip are two events (§12.11)');
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
is_deeply([ deliver(1) ], ['import_canceled -> import_aborted'], '... the registry cancels it: aborted');
is(row($p)->{aborted_in_state}, 'importing', '... aborted_in_state importing');
is_deeply(enqueue()->{retried}, [$p], '... the enqueuer retries the final import');
is(row($p)->{state}, 'importing', '... importing again');
$sim->registry_cancel($p);
is_deeply([ deliver(1) ], ['import_canceled -> import_skipped'], '... canceled again at max_retries 2: skipped');
my $r = row($p);
is("$r->{skipped_reason} $r->{retries_count} $r->{aborted_in_state}",
	'migration_canceled_by_registry 2 importing', '... migration_canceled_by_registry, retries_count 2');
section_time('seed scenario', $t);

# ==== 2. Guard rules (SPEC §5, §11, §12.3) =========================================

# Stale selection: only steps older than max_step_duration, oldest first,
# at most guard_batch_size; capacity 0 does not switch the guard off (§11.1);
# pre_import_done repositories are never the guard's (§5 step 2, §11.18).
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
	[qw(ran stale aborted canceled skipped finished left_alone errors)], 'the guard summary has the keys of §2.6');
is($g->{stale}, 2, 'stale selection: guard_batch_size 2 honoured');
is_deeply($g->{left_alone}, [ 'g/old2h', 'g/old1h' ],
	'... oldest step first; confirmed running and not long-running: left alone');
is_deeply([ sort(requests()) ], [ 'status g/old1h', 'status g/old2h' ],
	'... only those two were asked for (not the fresh step, not the younger stale one, not pre_import_done)');
settings(guard_batch_size => 100, capacity => 0, enabled => 'false');
$sim->clear_requests;
$g = guard();
is($g->{stale}, 3, 'capacity 0 and disabled: the guard still runs (§11.1), three stale steps');
is_deeply($g->{left_alone}, [ 'g/old2h', 'g/old1h', 'g/old30m' ], '... all left alone, oldest first');
is_deeply([ sort(requests()) ], [ 'status g/old1h', 'status g/old2h', 'status g/old30m' ],
	'... g/fresh (not stale) and g/done (pre_import_done) never asked for');
is(sql('SELECT string_agg(r::text, E\'\n\' ORDER BY id) FROM registry_migration.repositories r'), $before,
	'... no row changed');
is(sql('SELECT count(*) FROM registry_migration.events'), '0', '... and no event written');

# Long-running threshold raised by tags (§5 step 4): the tag list is asked
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

# A cancel answered 400 is reconciled from the real status (§11.2): a step that
# finished meanwhile is recorded as finished, without spending a retry.
fresh();
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
is_deeply([ requests_for('c/gone') ], [ 'status c/gone', 'cancel c/gone', 'status c/gone' ],
	'... c/gone: one cancel (404), the status asked once more (404)');
is("@{[ row('c/gone')->{state} ]} @{[ row('c/gone')->{retries_count} ]}", 'pre_importing 0', '... c/gone unchanged');
is("@{[ row('c/stuck')->{state} ]} @{[ row('c/stuck')->{retries_count} ]}", 'pre_importing 0', '... c/stuck unchanged');
is_deeply([ requests_for('c/stuck') ], [ 'status c/stuck', 'cancel c/stuck', 'status c/stuck' ],
	'... one cancel, then the status asked once more');
is_deeply([ grep { /^start/ } requests() ], ['start:final c/pre'], '... the only start is c/pre\'s final import');

# Registry unavailable (503 to the status): left alone, unless the step is
# older than twice its threshold; the cycle does not stop early (§12.3); the
# tag list is asked for only past twice pre_import_timeout (§12.4).
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

# Lost completion notifications (§11.15), and the master switch (§11.13):
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
# no final import (§12.3); the enqueuer asks for it first once it has passed.
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
# max_concurrent_requests at a time (§5 step 3).
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

# ==== 3. Notifications (SPEC §7, §11.3, §11.4, §11.14) ============================

$t = time();
fresh();
my @states = qw(default pre_importing pre_import_done importing import_done import_aborted import_skipped);
my @statuses = qw(pre_import_complete pre_import_failed pre_import_canceled import_complete import_failed import_canceled);
my %state_columns = (
	default => {},
	pre_importing => { pre_import_started_at => ago('1 hour') },
	pre_import_done => { pre_import_started_at => ago('2 hours'), pre_import_done_at => ago('1 hour') },
	importing => { pre_import_started_at => ago('3 hours'), pre_import_done_at => ago('2 hours'),
		import_started_at => ago('1 hour') },
	import_done => { pre_import_started_at => ago('3 hours'), pre_import_done_at => ago('2 hours'),
		import_started_at => ago('1 hour'), import_done_at => ago('30 min') },
	import_aborted => { pre_import_started_at => ago('2 hours'), aborted_at => ago('1 hour'),
		retries_count => 1, aborted_in_state => q{'pre_importing'} },
	import_skipped => { skipped_at => ago('1 hour'), skipped_reason => q{'too_many_retries'} },
);
for my $state (@states)
{
	put_row("nt/$state-$_", $state, %{ $state_columns{$state} }) for @statuses;
}
my %in_process = map { $_ => 1 } qw(pre_importing pre_import_done importing);

# The outcome table of §7: the state after, or 'refused'.
sub notification_outcome
{
	my ($status, $state) = @_;
	return 'refused' if $state eq 'default';
	if ($status eq 'pre_import_complete')
	{
		return 'refused' if $state eq 'import_skipped';
		return 'pre_import_done' if $state eq 'pre_importing' || $state eq 'import_aborted';
		return $state;
	}
	if ($status eq 'import_complete')
	{
		return 'refused' if $state eq 'import_skipped';
		return 'import_done';
	}
	return $in_process{$state} ? 'import_aborted' : $state;
}

$sim->clear_requests;
my @calls = map { my $s = $_; map { [ $s, $_ ] } @statuses } @states;
my %results = map { split /\|/, $_, 2 } split /\n/, sql(
	'SELECT v.p, public.attempt(format($$SELECT registry_migration.handle_notification(%L, %L)$$, v.p, v.s))
	   FROM (VALUES ' . join(', ', map { "('nt/$_->[0]-$_->[1]', '$_->[1]')" } @calls) . ') AS v(p, s)');
my $all_rows = sql_json(q{SELECT json_object_agg(path, r) FROM registry_migration.repositories r});
my %event_lines;
for my $e (@{ sql_json(q{SELECT coalesce(json_agg(e ORDER BY id), '[]') FROM registry_migration.events e}) })
{
	push @{ $event_lines{ $e->{path} } },
	  "$e->{cause} $e->{old_state}>$e->{new_state} $e->{registry_status}";
}
for my $call (@calls)
{
	my ($state, $status) = @$call;
	my $path = "nt/$state-$status";
	my $outcome = notification_outcome($status, $state);
	my $got_row = $all_rows->{$path};
	my $result = $results{$path};
	my %base = %{ $state_columns{$state} };
	my $retries = $base{retries_count} // 0;
	my $describe = sub {
		my ($res, $row, $ev) = @_;
		return join(' | ', "result=$res", "state=$row->{state}", "retries=$row->{retries_count}",
			'events=' . join(';', @{ $ev // [] }));
	};
	my $got = $describe->($result =~ /^ERROR (\w+): .* in state (\w+)/ ? "$1 names $2" : $result,
		$got_row, $event_lines{$path});
	my $want;
	if ($outcome eq 'refused')
	{
		$want = $describe->("55000 names $state", { state => $state, retries_count => $retries }, []);
	}
	else
	{
		my $new_retries = $outcome eq 'import_aborted' && $state ne 'import_aborted' ? $retries + 1 : $retries;
		$want = $describe->($outcome, { state => $outcome, retries_count => $new_retries },
			["notification $state>$outcome $status"]);
	}
	is($got, $want, "notification $status in state $state: " .
		($outcome eq 'refused' ? 'refused 55000' : $outcome eq $state ? 'no change, logged' : "-> $outcome"));
}
# Effects of the changes (§3.3).
$r = $all_rows->{'nt/pre_importing-pre_import_failed'};
is("$r->{aborted_in_state} " . (defined $r->{aborted_at} ? 'aborted_at' : 'no aborted_at'),
	'pre_importing aborted_at', 'abort by notification records aborted_in_state and aborted_at');
$r = $all_rows->{'nt/importing-import_canceled'};
is($r->{aborted_in_state}, 'importing', '*_canceled accepted (§11.3): abort from importing');
$r = $all_rows->{'nt/import_aborted-pre_import_complete'};
ok(defined $r->{pre_import_done_at} && !defined $r->{aborted_at} && !defined $r->{aborted_in_state},
	'pre_import_complete for import_aborted: pre_import_done, aborted_at and aborted_in_state cleared');
$r = $all_rows->{'nt/pre_import_done-import_complete'};
ok(defined $r->{import_done_at}, 'import_complete for pre_import_done: import_done_at set');
is_deeply([ requests() ], [], 'handle_notification sent no registry request (42 notifications)');

# Errors, in order: NULL 22004, invalid path or status 22023, unknown path P0002, refused 55000.
my %error_cases = (
	q{handle_notification(NULL, 'bogus')} => '22004',
	q{handle_notification('no/such', NULL)} => '22004',
	q{handle_notification('no/such', 'bogus')} => '22023',
	q{handle_notification('no/such', 'PRE_IMPORT_COMPLETE')} => '22023',
	q{handle_notification('nt/default-import_complete', 'import_completed')} => '22023',
	q{handle_notification('no/such', 'pre_import_complete')} => 'P0002',
	q{handle_notification('NT/default-import_complete', 'import_complete')} => '22023',
	q{handle_notification('nt/default-import_complete', 'import_complete')} => '55000',
);
for my $call (sort keys %error_cases)
{
	like(attempt("SELECT registry_migration.$call"), qr/^ERROR $error_cases{$call}:/, "$call: $error_cases{$call}");
}
like(attempt(q{SELECT registry_migration.handle_notification('nt/import_skipped-import_complete', 'import_complete')}),
	qr/^ERROR 55000: .*import_skipped/, 'the refusal names the state (import_skipped)');

# Duplicates and late arrivals are idempotent (§11.4); pre_import_complete
# asks the registry nothing (§11.14), the next enqueuer cycle asks for the
# final import first.
fresh(capacity => 2);
$p = 'dup/repo';
$sim->add_repositories({ path => $p, pre_import_seconds => 0.05, import_outcomes => ['hang'] },
	{ path => 'dup/other', pre_import_outcomes => ['hang'] });
put_row($p, 'default', created_at => ago('1 day'));
is_deeply(enqueue()->{started}, [$p], 'duplicates: pre-import started');
ok($sim->wait_for_status($p, 'pre_import_complete', 10), '... it completes on the registry');
put_row('dup/other', 'default');
$sim->clear_requests;
sub notify { return attempt("SELECT registry_migration.handle_notification('$_[0]', '$_[1]')") }
is(notify($p, 'pre_import_complete'), 'pre_import_done', 'pre_import_complete: pre_import_done');
my $done_at = row($p)->{pre_import_done_at};
is(notify($p, 'pre_import_complete'), 'pre_import_done', '... again: returns pre_import_done, no error');
is(row($p)->{pre_import_done_at}, $done_at, '... the duplicate changed nothing');
is_deeply([ requests() ], [], '... no registry request from either notification (no final import)');
my $e = enqueue();
is_deeply([ $e->{final_imports}, $e->{started} ], [ [$p], ['dup/other'] ],
	'the next enqueuer cycle requests the final import, and starts new work');
is_deeply([ requests_with_code() ], [ 'start:final dup/repo 202', 'start:pre dup/other 202' ],
	'... the final import first');
is(notify($p, 'pre_import_complete'), 'importing', 'a late pre_import_complete while importing: no change');
$sim->clear_requests;
is_deeply([ enqueue()->{final_imports}, [ grep { /dup\/repo/ } requests() ] ], [ [], [] ],
	'... and no second final import is requested');
$sim->finish_step($p, 'complete');
is(notify($p, 'import_complete'), 'import_done', 'import_complete: import_done');
is(notify($p, 'import_complete'), 'import_done', '... duplicate: import_done, no error');
is(notify($p, 'pre_import_failed'), 'import_done', '... a late pre_import_failed: no change');
is(notify($p, 'pre_import_complete'), 'import_done', '... a late pre_import_complete: no change');
is_deeply([ (events($p))[1 .. 8] ], [
	'notification finish_pre_import pre_importing>pre_import_done - pre_import_complete',
	'notification notification pre_import_done>pre_import_done - pre_import_complete',
	'enqueuer start_import pre_import_done>importing 202 -',
	'notification notification importing>importing - pre_import_complete',
	'notification finish_import importing>import_done - import_complete',
	'notification notification import_done>import_done - import_complete',
	'notification notification import_done>import_done - pre_import_failed',
	'notification notification import_done>import_done - pre_import_complete' ],
	'... every notification logged once, no-change ones with new_state = old_state');

# At the retry limit: *_failed skips too_many_retries, *_canceled migration_canceled_by_registry.
put_row('lim/failed', 'importing', import_started_at => ago('1 hour'), retries_count => 2);
put_row('lim/canceled', 'pre_importing', pre_import_started_at => ago('1 hour'), retries_count => 2);
is(notify('lim/failed', 'import_failed'), 'import_skipped', 'import_failed at the limit: import_skipped');
is(notify('lim/canceled', 'pre_import_canceled'), 'import_skipped', 'pre_import_canceled at the limit: import_skipped');
is(row('lim/failed')->{skipped_reason} . ' ' . row('lim/canceled')->{skipped_reason},
	'too_many_retries migration_canceled_by_registry', '... reasons too_many_retries and migration_canceled_by_registry');
section_time('notifications', $t);

# ==== 4. Admin cancel and retry (SPEC §2.5, §12.9) ===============================

$t = time();
fresh();
sim_running('a/plain', 'pre');
sim_running('a/forced', 'final');
$sim->add_repositories({ path => 'a/idle', status => 'pre_import_complete' }, { path => 'a/unknown' },
	{ path => 'a/down' });
$sim->clear_requests;
put_row('a/plain', 'pre_importing', pre_import_started_at => ago('1 min'));
put_row('a/forced', 'importing', import_started_at => ago('1 min'));
put_row('a/idle', 'pre_importing', pre_import_started_at => ago('1 min'));
put_row('a/unknown', 'pre_importing', pre_import_started_at => ago('1 min'));
put_row('a/down', 'importing', import_started_at => ago('1 min'));
put_row('a/done', 'import_done', import_done_at => ago('1 min'));
put_row('a/skipped', 'import_skipped', skipped_at => ago('1 min'), skipped_reason => q{'too_many_tags'});

is(attempt(q{SELECT registry_migration.cancel('a/plain')}), 'import_aborted', 'cancel: import_aborted');
$r = row('a/plain');
is("$r->{retries_count} $r->{aborted_in_state}", '1 pre_importing', '... retries_count 1, aborted_in_state pre_importing');
is_deeply([ events('a/plain') ], ['admin abort pre_importing>import_aborted 202 -'], '... logged with cause admin');
is($sim->repository('a/plain')->{status}, 'pre_import_canceled', '... the registry canceled it');
is(attempt(q{SELECT registry_migration.cancel('a/forced', true)}), 'import_skipped', 'forced cancel: import_skipped');
is(row('a/forced')->{skipped_reason}, 'migration_forced_canceled', '... reason migration_forced_canceled');
like(attempt(q{SELECT registry_migration.cancel('a/plain')}), qr/^ERROR 55000: .*import_aborted/,
	'plain cancel of an aborted repository: 55000 naming the state');
is(attempt(q{SELECT registry_migration.cancel('a/plain', true)}), 'import_skipped',
	'forced cancel from import_aborted: import_skipped');
is(row('a/plain')->{skipped_reason}, 'migration_forced_canceled', '... migration_forced_canceled');
is_deeply([ requests() ], [ 'cancel a/plain', 'cancel:force a/forced', 'cancel:force a/plain' ],
	'... requests: plain DELETE, then DELETE ?force=true; none for the refused cancel');

$sim->clear_requests;
for my $case ([ 'a/done', 'false', 'import_done' ], [ 'a/done', 'true', 'import_done' ],
	[ 'a/skipped', 'true', 'import_skipped' ], [ 'a/skipped', 'false', 'import_skipped' ])
{
	my ($path, $force, $state) = @$case;
	like(attempt("SELECT registry_migration.cancel('$path', $force)"), qr/^ERROR 55000: .*\b$state\b/,
		"cancel($path, force $force) from a final state: 55000 naming $state");
}
is_deeply([ requests() ], [], '... refused before any request');

my $rows_before = sql(q{SELECT string_agg(r::text, E'\n' ORDER BY id) FROM registry_migration.repositories r});
my $events_before = sql('SELECT count(*) FROM registry_migration.events');
like(attempt(q{SELECT registry_migration.cancel('a/idle')}),
	qr/^ERROR 55000: .*DETAIL: .*(400|IMPORT_CANNOT_BE_CANCELED)/, 'cancel answered 400: 55000 with the registry answer in the detail');
like(attempt(q{SELECT registry_migration.cancel('a/unknown')}), qr/^ERROR 55000: .*DETAIL: .*(404|not found)/i,
	'cancel answered 404: 55000 with the answer in the detail');
$sim->set_faults({ match => { kind => 'cancel' }, action => { type => 'respond', code => 503 } });
like(attempt(q{SELECT registry_migration.cancel('a/down')}), qr/^ERROR 08006: .*DETAIL: .*503/,
	'registry unavailable: 08006 naming what failed');
like(attempt(q{SELECT registry_migration.cancel('a/down', true)}), qr/^ERROR 08006:/, '... also forced');
$sim->clear_faults;
is(sql(q{SELECT string_agg(r::text, E'\n' ORDER BY id) FROM registry_migration.repositories r}), $rows_before,
	'... nothing changed in the repositories');
is(sql('SELECT count(*) FROM registry_migration.events'), $events_before, '... and nothing logged');
for my $case ([ q{cancel(NULL)}, '22004' ], [ q{cancel('a/idle', NULL)}, '22004' ], [ q{retry(NULL)}, '22004' ],
	[ q{cancel('no/such')}, 'P0002' ], [ q{cancel('no/such', true)}, 'P0002' ], [ q{retry('no/such')}, 'P0002' ])
{
	like(attempt("SELECT registry_migration.$case->[0]"), qr/^ERROR $case->[1]:/, "$case->[0]: $case->[1]");
}

# retry(): like the enqueuer's step 3a, ignoring capacity and waiting time.
fresh(capacity => 0, enqueue_waiting_time => q{'1 day'});
$sim->add_repositories({ path => 'r/pre', status => 'pre_import_failed', pre_import_outcomes => ['hang'] },
	{ path => 'r/final', status => 'import_failed', import_outcomes => ['hang'] },
	{ path => 'r/off', status => 'pre_import_failed' },
	{ path => 'deny/img', status => 'pre_import_failed' });
put_row('r/pre', 'import_aborted', pre_import_started_at => ago('2 hours'), aborted_at => ago('1 min'),
	retries_count => 1, aborted_in_state => q{'pre_importing'});
put_row('r/final', 'import_aborted', pre_import_started_at => ago('3 hours'), pre_import_done_at => ago('2 hours'),
	import_started_at => ago('1 hour'), aborted_at => ago('1 min'), retries_count => 2,
	aborted_in_state => q{'importing'});
put_row('r/off', 'import_aborted', aborted_at => ago('1 min'), retries_count => 1);
put_row('deny/img', 'import_aborted', aborted_at => ago('1 min'), retries_count => 1);
put_row('r/running', 'pre_importing', pre_import_started_at => ago('1 min'));
put_row('r/skipped', 'import_skipped', skipped_at => ago('1 min'), skipped_reason => q{'too_many_tags'});
sql(q{INSERT INTO registry_migration.denied_namespaces VALUES ('deny')});
is(attempt(q{SELECT registry_migration.retry('r/pre')}), 'pre_importing',
	'retry of an aborted pre-import: pre_importing (capacity 0 and waiting time ignored)');
$r = row('r/pre');
is("$r->{retries_count} " . (defined $r->{aborted_at} ? 'set' : 'NULL'), '1 NULL', '... retries_count kept, aborted_at cleared');
is(attempt(q{SELECT registry_migration.retry('r/final')}), 'importing', 'retry of an aborted final import: importing');
is_deeply([ requests() ], [ 'status r/pre', 'start:pre r/pre', 'status r/final', 'start:final r/final' ],
	'... each asked for its status, then the step was started');
is_deeply([ events('r/final') ], ['admin start_import import_aborted>importing 202 -'], '... logged with cause admin');
$sim->set_faults({ match => { kind => 'status', path => 'r/off' }, times => 1, action => { type => 'respond', code => 503 } },
	{ match => { kind => 'start', path => 'deny/img' }, action => { type => 'respond', code => 503 } });
like(attempt(q{SELECT registry_migration.retry('r/off')}), qr/^ERROR 08006:/, 'retry, status answered 503: 08006');
is_deeply([ events('r/off'), row('r/off')->{state}, row('r/off')->{retries_count} ], [ 'import_aborted', 1 ],
	'... nothing changed');
$sim->clear_faults;
$sim->clear_requests;
like(attempt(q{SELECT registry_migration.retry('deny/img')}), qr/^ERROR 55000:/, 'retry of a denied root namespace: 55000');
like(attempt(q{SELECT registry_migration.retry('r/running')}), qr/^ERROR 55000: .*pre_importing/,
	'retry of a pre_importing repository: 55000 naming the state');
like(attempt(q{SELECT registry_migration.retry('r/skipped')}), qr/^ERROR 55000: .*import_skipped/,
	'retry of a skipped repository: 55000 naming the state');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = now() + interval '1 hour'});
like(attempt(q{SELECT registry_migration.retry('r/off')}), qr/^ERROR 55000:/, 'retry with a pending Retry-After: 55000');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = NULL});
settings(enabled => 'false');
like(attempt(q{SELECT registry_migration.retry('r/off')}), qr/^ERROR 55000:/, 'retry while disabled: 55000');
is_deeply([ requests() ], [], '... no request for any refused retry');
is("@{[ row('r/off')->{state} ]} @{[ row('r/off')->{retries_count} ]} @{[ row('deny/img')->{state} ]}",
	'import_aborted 1 import_aborted', '... nothing changed');
section_time('admin', $t);

# ==== 5. Concurrency (SPEC §3.4, §6 step 5, §12.15) ==============================

$t = time();
sub start_psql
{
	my ($sql, $out, $err) = @_;
	return IPC::Run::start([ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		'-c', $sql ], '>', $out, '2>', $err);
}
sub logged { my ($line) = @_; return grep { $_ eq $line } requests() }

# A notification while the guard waits on a slow status answer (before it
# locks the row): the notification is not held up; the guard drops its
# change ("state changed"). A second guard meanwhile returns at once.
fresh();
sim_running('k/race', 'pre');
$sim->clear_requests;
put_row('k/race', 'pre_importing', pre_import_started_at => ago('1 hour'));
$sim->set_faults({ match => { kind => 'status', path => 'k/race' }, times => 1,
	action => { type => 'delay', ms => 1500 } });
my ($gout, $gerr) = ('', '');
my $h = start_psql('SELECT registry_migration.run_guard()', \$gout, \$gerr);
ok(wait_until(sub { logged('status k/race') }), 'race 1: the guard is waiting for the status answer');
my $t0 = time();
my $second = guard();
my $second_took = time() - $t0;
ok(defined $second->{ran} && !$second->{ran}, 'a second guard meanwhile: {"ran": false}');
is_deeply([ $second->{stale}, grep { ref $second->{$_} eq 'ARRAY' && @{ $second->{$_} } } sort keys %$second ],
	[0], '... stale 0, every list empty');
cmp_ok($second_took, '<', 1, sprintf('... at once (%.2f s)', $second_took));
$t0 = time();
$sim->finish_step('k/race', 'complete');
is(notify('k/race', 'pre_import_complete'), 'pre_import_done', '... the notification is handled meanwhile');
cmp_ok(time() - $t0, '<', 1, '... without waiting for the guard');
$h->finish;
$g = $json->decode($gout);
is_deeply([ $g->{errors}, $g->{aborted}, $g->{canceled} ], [ [ { path => 'k/race', message => 'state changed' } ], [], [] ],
	'... the guard drops its change: "state changed" (§12.15)');
is_deeply([ events('k/race') ], ['notification finish_pre_import pre_importing>pre_import_done - pre_import_complete'],
	'... one change, logged once, by the notification');
is(row('k/race')->{state}, 'pre_import_done', '... end state pre_import_done');

# A notification while the guard holds the row (its cancel is slow): the
# notification waits for the guard's commit, then finds the abort done.
fresh();
sim_running('k/lock', 'pre');
$sim->clear_requests;
put_row('k/lock', 'pre_importing', pre_import_started_at => ago('1 hour'));
$sim->set_faults({ match => { kind => 'cancel', path => 'k/lock' }, times => 1,
	action => { type => 'delay', ms => 1500 } });
($gout, $gerr) = ('', '');
$h = start_psql('SELECT registry_migration.run_guard()', \$gout, \$gerr);
ok(wait_until(sub { logged('cancel k/lock') }), 'race 2: the guard is waiting for the cancel answer');
my ($nout, $nerr) = ('', '');
my $n = start_psql(q{SELECT registry_migration.handle_notification('k/lock', 'pre_import_failed')}, \$nout, \$nerr);
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
	WHERE query LIKE '%handle_notification(''k/lock''%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()}),
	'... the notification waits on the row lock');
$h->finish;
$n->finish;
$g = $json->decode($gout);
is_deeply([ $g->{canceled}, $g->{aborted} ], [ ['k/lock'], ['k/lock'] ], '... the guard canceled and aborted it');
is($nout =~ s/\s+$//r, 'import_aborted', '... the notification then found it aborted: no change, returns import_aborted');
$r = row('k/lock');
is("$r->{state} $r->{retries_count}", 'import_aborted 1', '... end state import_aborted, one retry spent (not two)');
is_deeply([ events('k/lock') ], [ 'guard abort pre_importing>import_aborted 202 -',
	'notification notification import_aborted>import_aborted - pre_import_failed' ],
	'... each change logged once, in order');
section_time('concurrency', $t);

$sim->stop;
$node->stop;
note(sprintf('030_guard_and_notifications: %.1f s', time() - $t_start));
done_testing();
