# handle_notification() end to end: every status against every state (what
# changes, what is a duplicate or late no-change, what is refused with which
# SQLSTATE), the event log, and a finished pre-import whose final import the
# enqueuer then requests.
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

my ($node, $sim) = start_guard_test('notifications');
my ($r, $p);

my $t = time();
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

# What a notification does to a repository: the state after, or 'refused'.
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
# Effects of the changes.
$r = $all_rows->{'nt/pre_importing-pre_import_failed'};
is("$r->{aborted_in_state} " . (defined $r->{aborted_at} ? 'aborted_at' : 'no aborted_at'),
	'pre_importing aborted_at', 'abort by notification records aborted_in_state and aborted_at');
$r = $all_rows->{'nt/importing-import_canceled'};
is($r->{aborted_in_state}, 'importing', '*_canceled accepted: abort from importing');
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

# Duplicates and late arrivals are idempotent; pre_import_complete
# asks the registry nothing, the next enqueuer cycle asks for the
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

end_test();
