# The enqueue cycle (SPEC §6) end to end, against the registry simulator:
# what each answer to a start changes (§3.4), the enqueue rules and their
# order, back-pressure and Retry-After (§6 step 6, §11.7, §12.1, §12.18),
# isolation of one repository's error (§6 step 4, §11.6), an outage in the
# middle of a migration (§11.8), concurrent cycles (§6 step 5), and a full
# run of a few thousand repositories with random failures.
#
# Everything asserted is what a user can see: the cycle summaries, the
# repositories' rows, the event log, the requests the simulator received and
# SQLSTATEs. Cycles are called explicitly; nothing sleeps longer than needed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IPC::Run;
use JSON::PP;
use List::Util qw(min);
use POSIX qw(strftime);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time sleep);

my $t_start = time();

# Steps do not end by themselves unless a test asks for it (per-repository
# durations); a canceled pre-import has no cool-down unless asked for.
my $sim = RegistrySimulator->new(pre_import_seconds => 600, import_seconds => 600,
	cancel_cooldown => 0);

my $node = PostgreSQL::Test::Cluster->new('enqueuer');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.request_timeout = '5s'",
	"max_connections = 40", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');

my $json = JSON::PP->new->utf8->canonical;

# ---- helpers ------------------------------------------------------------------

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub quote { (my $s = $_[0]) =~ s/'/''/g; return "'$s'" }

# One enqueue (or guard) cycle; optional SQL (SETs) run first in the session.
sub enqueue { return $json->decode(sql(($_[0] // '') . 'SELECT registry_migration.run_enqueuer()')) }
sub guard   { return $json->decode(sql(($_[0] // '') . 'SELECT registry_migration.run_guard()')) }

# The requests the registry received, one line each:
# "PUT start a/b import_type=pre", "GET tags a/b n=6", "GET status a/b".
sub sent
{
	return [ map { join(' ', $_->{method}, $_->{kind}, $_->{repository} // '-', $_->{query} // '') =~ s/ $//r }
		  @{ $sim->requests } ];
}

# A cycle with the request log cleared before: (summary, requests).
sub enqueue_logged
{
	my ($pre) = @_;
	$sim->clear_requests;
	my $summary = enqueue($pre);
	return ($summary, sent());
}

sub guard_logged
{
	my ($pre) = @_;
	$sim->clear_requests;
	my $summary = guard($pre);
	return ($summary, sent());
}

# The repository's row as a hash (timestamps as booleans "<name>_set",
# aborted_at as text for comparisons), undef when there is none.
sub repo
{
	my ($path) = @_;
	my $row = sql("SELECT row_to_json(r) FROM (SELECT state, retries_count, skipped_reason,
		aborted_in_state, aborted_at::text AS aborted_at,
		pre_import_started_at IS NOT NULL AS pre_import_started_set,
		pre_import_done_at IS NOT NULL AS pre_import_done_set,
		import_started_at IS NOT NULL AS import_started_set,
		import_done_at IS NOT NULL AS import_done_set,
		aborted_at IS NOT NULL AS aborted_set,
		skipped_at IS NOT NULL AS skipped_set
		FROM registry_migration.repositories WHERE path = " . quote($path) . ') AS r');
	return $row eq '' ? undef : $json->decode($row);
}

sub state_of { my $r = repo($_[0]); return $r ? $r->{state} : undef }

# The repository's events: "old>new:event" joined by spaces, in order.
sub events_of
{
	return sql("SELECT coalesce(string_agg(format('%s>%s:%s', old_state, new_state, event), ' ' ORDER BY id), '')
		FROM registry_migration.events WHERE path = " . quote($_[0]));
}

sub event_count { return sql('SELECT count(*) FROM registry_migration.events') }

# Insert one repository: column => SQL expression.
sub db_add
{
	my ($path, %columns) = @_;
	my @names = ('path', sort keys %columns);
	my @values = (quote($path), map { $columns{$_} } sort keys %columns);
	sql('INSERT INTO registry_migration.repositories (' . join(', ', @names) . ') VALUES ('
		  . join(', ', @values) . ')');
}

# The usual in-process and aborted rows, with consistent timestamps.
sub db_pre_import_done
{
	my ($path, $ago, %more) = @_;
	db_add($path, state => "'pre_import_done'", pre_import_started_at => "now() - interval '1 day'",
		pre_import_done_at => "now() - interval '$ago'", %more);
}

sub db_aborted
{
	my ($path, $ago, %more) = @_;
	db_add($path, state => "'import_aborted'", pre_import_started_at => "now() - interval '1 day'",
		aborted_at => "now() - interval '$ago'", retries_count => 1,
		aborted_in_state => "'pre_importing'", %more);
}

sub settings
{
	my (%set) = @_;
	return unless %set;
	sql('UPDATE registry_migration.settings SET ' . join(', ', map { "$_ = $set{$_}" } sort keys %set));
}

# A clean slate: no repositories, events, deny list or Retry-After, default
# settings but enabled, capacity 10 and no tag limit; the simulator reset.
sub fresh
{
	my (%set) = @_;
	$sim->reset;
	sql(q{DELETE FROM registry_migration.repositories;
		DELETE FROM registry_migration.events;
		DELETE FROM registry_migration.denied_namespaces;
		UPDATE registry_migration.registry_state SET retry_after_until = NULL;
		INSERT INTO registry_migration.settings DEFAULT VALUES;});
	settings(enabled => 'true', capacity => 10, max_tags_count => 0, %set);
}

sub fault
{
	my ($match, $action, $times) = @_;
	return { match => $match, action => $action, (defined $times ? (times => $times) : ()) };
}

sub respond { my ($code, %more) = @_; return { type => 'respond', code => $code, %more } }

sub paths_of { return [ map { ref $_ ? $_->{path} : $_ } @{ $_[0] } ] }

my @summary_keys = qw(ran stopped final_imports retried started finished skipped aborted errors);
my @lists = qw(final_imports retried started finished skipped aborted errors);

sub lists_empty
{
	my ($s) = @_;
	return !grep { @{ $s->{$_} // [] } } @lists;
}

# ================================================================================
# 1. Starts through the enqueuer (SPEC §3.4)
# ================================================================================
note '1. starts (SPEC §3.4)';

fresh();
$sim->add_repositories({ path => 'start/accepted' });
db_add('start/accepted');
my ($s, $log) = enqueue_logged();
ok(!(grep { !exists $s->{$_} } @summary_keys), 'the summary has every key of §2.6')
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
	'200 and 404: listed under finished with their reason (§12.7)');
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
is($r->{state}, 'pre_importing', '425 to a final import → marked pre_importing (§12.17)');
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

# Registry unavailable: nothing changes, no retry, the cycle stops.
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
	is($s->{stopped}, 'registry_unavailable', "$name: stopped registry_unavailable");
	ok(lists_empty($s), "$name: nothing listed") or diag explain $s;
	is_deeply($log, ['PUT start down/a import_type=pre'], "$name: no other request after it");
	$r = repo('down/a');
	is("$r->{state} $r->{retries_count}", 'default 0', "$name: the repository did not change, no retry");
	is(event_count(), '0', "$name: no event");
	cmp_ok(time() - $t0, '<', 4, "$name: the cycle did not wait for the hung answer") if $name eq 'hang';
}

# No registry_url: 22023 naming the setting, nothing changes (§2.7).
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
fresh(max_tags_count => 5);
$sim->add_repositories({ path => 'down/fin', status => 'pre_import_complete' },
	{ path => 'down/ab', status => 'pre_import_failed' }, { path => 'down/new' });
db_pre_import_done('down/fin', '1 hour');
db_aborted('down/ab', '1 hour');
db_add('down/new');
$sim->set_faults(fault({ kind => 'start' }, respond(503), 1));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ], [ 'registry_unavailable', ['PUT start down/fin import_type=final'] ],
	'final import answered 503: the cycle stops at once');
is(state_of('down/fin'), 'pre_import_done', '... the repository keeps its state');
$sim->set_faults(fault({ kind => 'status' }, respond(500), 1));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log ],
	[ 'registry_unavailable', [ 'PUT start down/fin import_type=final', 'GET status down/ab' ] ],
	'status of an aborted repository answered 500: the cycle stops');
$r = repo('down/ab');
is("$r->{state} $r->{retries_count}", 'import_aborted 1', '... no retry spent');
# (libcurl sends a request again once when a reused connection is closed
# without an answer, so the fault stays on.)
for my $answer (respond(429), respond(408), { type => 'truncate' }, { type => 'garbage' })
{
	$sim->set_faults(fault({ kind => 'tags' }, $answer));
	($s, $log) = enqueue_logged();
	my $what = $answer->{code} // $answer->{type};
	is_deeply([ $s->{stopped}, $log->[-1] ], [ 'registry_unavailable', 'GET tags down/new n=6' ],
		"tag list answered $what: registry unavailable, the cycle stops (§12.5)");
}
$sim->set_faults(fault({ kind => 'tags' }, { type => 'drop' }));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $log->[-1] ], [ 'registry_unavailable', 'GET tags down/new n=6' ],
	'tag list without an answer: the cycle stops');
ok(!grep({ /PUT start down\/new/ } @$log), '... and no start is sent');
is(state_of('down/new'), 'default', '... the repository keeps its state');

# ================================================================================
# 2. Enqueue rules (SPEC §6)
# ================================================================================
note '2. enqueue rules (SPEC §6)';

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
is_deeply($log, [], '... and not one request, not even a final import (§11.13)');
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

# The gates: both hold → at_capacity (§12.16); only the waiting time → waiting_time.
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

# The gates are evaluated before the final imports (§12.16): a final import that
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
$sim->add_repositories({ path => 'gate/native', native => 1 }, { path => 'gate/next' });
db_pre_import_done('gate/native', '2 hours');
db_add('gate/next');
($s, $log) = enqueue_logged();
is_deeply($s->{started}, ['gate/next'], 'the waiting time was checked at the start: the 200 just now does not hold up the new one');

# The waiting time ignores NULL timestamps (§11.5).
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
	'import_skipped too_many_retries 3 pre_importing', '... skipped, keeping aborted_in_state (§11.16)');

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

# Deny list: only new work (§12.2).
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

# Every cycle removes up to 1 000 old events at its start, also when disabled (§12.11).
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

# ================================================================================
# 3. Back-pressure (SPEC §6 step 6, §11.7, §12.1, §12.18)
# ================================================================================
note '3. back-pressure';

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
	'... start event then abort (§12.1)');
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

# The admin reset clears the count of 429s with every other counter (§2.5).
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
	'the guard records a finished pre-import but sends no final import meanwhile (§12.3)');
is(state_of('ra/stale'), 'pre_import_done', '... pre_import_done');
($rc, $out, $err) = $node->psql('postgres', q{SELECT registry_migration.retry('ra/ab')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/55000/, 'retry() while a Retry-After is pending: 55000 (§12.9)');
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

# ================================================================================
# 4. Isolation (SPEC §6 step 4, §11.6)
# ================================================================================
note '4. isolation';

fresh(max_tags_count => 5);
sql(q{CREATE FUNCTION public.fail_on_start() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.path IN ('iso/sql', 'iso/ab', 'iso/ab2', 'iso/fin') AND NEW.state IN ('pre_importing', 'importing') THEN
			RAISE EXCEPTION 'injected failure for %', NEW.path;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER fail_on_start BEFORE UPDATE ON registry_migration.repositories
		FOR EACH ROW EXECUTE FUNCTION public.fail_on_start();});
$sim->add_repositories({ path => 'iso/ab', status => 'pre_import_failed' },
	{ path => 'iso/ab2', status => 'pre_import_failed' }, { path => 'iso/fin', status => 'pre_import_complete' },
	map { { path => "iso/$_" } } qw(tags refused sql ok));
db_aborted('iso/ab', '1 hour');
db_aborted('iso/ab2', '50 min', retries_count => 2);
db_pre_import_done('iso/fin', '1 hour');
db_add('iso/tags', created_at => "now() - interval '4 min'");
db_add('iso/refused', created_at => "now() - interval '3 min'");
db_add('iso/sql', created_at => "now() - interval '2 min'");
db_add('iso/ok', created_at => "now() - interval '1 min'");
db_add('iso/bystander', state => "'importing'", import_started_at => "now() - interval '1 min'");
$before = repo('iso/ab');
$sim->set_faults(fault({ kind => 'tags', path => 'iso/tags' }, { type => 'malformed_json' }),
	fault({ kind => 'start', path => 'iso/refused' }, respond(400)));
($s, $log) = enqueue_logged();
is_deeply(paths_of($s->{errors}), [qw(iso/fin iso/ab iso/ab2 iso/tags iso/sql)], 'errors: the repositories whose handling failed');
like($s->{errors}[1]{message}, qr/injected failure for iso\/ab/, '... with the message of a SQL error');
like($s->{errors}[3]{message}, qr/tag list/, '... and of an unusable tag list');
is_deeply($s->{aborted}, [qw(iso/fin iso/ab iso/tags iso/refused iso/sql)], 'each of them, and the refused start, aborted');
is_deeply($s->{skipped}, [ { path => 'iso/ab2', reason => 'too_many_retries' } ], '... or skipped at the retry limit');
$r = repo('iso/fin');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted pre_import_done 1',
	'an error on a final import: aborted from pre_import_done');
$r = repo('iso/ab2');
is(join(' ', $r->{state}, $r->{skipped_reason}, $r->{retries_count}), 'import_skipped too_many_retries 3',
	'an aborted one whose retry fails at the limit: skipped too_many_retries');
is_deeply($s->{started}, ['iso/ok'], 'the cycle went on to the next repository');
is($s->{stopped}, 'nothing_to_do', '... to the end');
$r = repo('iso/tags');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted default 1',
	'unusable tag list: aborted from default');
$r = repo('iso/sql');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted default 1',
	'SQL error: aborted, the failed start rolled back');
is(events_of('iso/sql'), 'default>import_aborted:abort', '... only the abort is recorded');
$r = repo('iso/ab');
is("$r->{state} $r->{retries_count}", 'import_aborted 2', 'an aborted one whose retry fails: retries_count + 1');
ok($r->{aborted_at} gt $before->{aborted_at}, '... and a new aborted_at');
is(join(' ', state_of('iso/ok'), state_of('iso/bystander')), 'pre_importing importing', 'the others are as expected');
is(events_of('iso/bystander'), '', '... and a bystander has no event');
like(slurp_file($node->logfile), qr/WARNING:  registry_migration enqueuer: error on repository "iso\/tags": unusable answer/,
	'the error is in the server log too');
sql(q{DROP TRIGGER fail_on_start ON registry_migration.repositories; DROP FUNCTION public.fail_on_start()});
$sim->clear_faults;
($s, $log) = enqueue_logged();
is_deeply($s->{retried}, [qw(iso/fin iso/ab iso/tags iso/refused iso/sql)],
	'the next cycle takes the aborted ones up again');
is(join(' ', map { state_of("iso/$_") } qw(fin ab sql)), 'importing pre_importing pre_importing',
	'... those the registry is already running are marked as such (no new request for them)');
is(scalar(grep { m{^PUT start iso/(fin|ab|sql) } } @$log), 0, '... no start request for those');

# ================================================================================
# 5. A registry outage in the middle of a migration (SPEC §11.8)
# ================================================================================
note '5. outage';

fresh(capacity => 3, max_step_duration => "'0.2 s'");
my @out = map { "out/r$_" } 1 .. 6;
$sim->add_repositories((map { { path => $_, pre_import_seconds => 0.3, import_seconds => 0.2 } } @out),
	{ path => 'out/ab', status => 'pre_import_failed', pre_import_seconds => 0.2, import_seconds => 0.2 });
db_add($out[$_], created_at => "now() - interval '" . (10 - $_) . " min'") for 0 .. $#out;
db_aborted('out/ab', '1 day');
($s) = enqueue_logged();
is_deeply([ @{ $s->{retried} }, @{ $s->{started} } ], [ 'out/ab', @out[ 0, 1 ] ], 'three in process');
settings(capacity => 4);    # one free slot: the enqueuer has something to ask for
$sim->set_faults(fault({}, respond(503)));
my $outage_start = sql('SELECT max(id) FROM registry_migration.events');
my %seen;
for (1 .. 4)
{
	sleep 0.3;
	my $e = enqueue();
	my $g = guard();
	$seen{"enqueuer $e->{stopped}"}++;
	$seen{"guard left alone " . scalar(@{ $g->{left_alone} }) . " of $g->{stale}"}++ if $g->{stale};
	$seen{'guard aborted'}++ if @{ $g->{aborted} } || @{ $g->{skipped} };
}
is_deeply([ sort keys %seen ], [ 'enqueuer registry_unavailable', 'guard left alone 3 of 3' ],
	'during the outage: the enqueuer stops at once, the guard leaves every stale repository alone');
is(sql("SELECT count(*) FROM registry_migration.events WHERE id > $outage_start"), '0', '... nothing changed');
$sim->clear_faults;
$deadline = time() + 30;
my $cycles = 0;
while (time() < $deadline)
{
	enqueue();
	guard();
	$cycles++;
	last if sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state <> 'import_done'}) eq '0';
	sleep 0.1;
}
is(sql(q{SELECT string_agg(DISTINCT state::text, ',') FROM registry_migration.repositories}), 'import_done',
	"registry back: every repository finished ($cycles cycles)");
is(sql(q{SELECT string_agg(path || '=' || retries_count, ' ' ORDER BY path) FROM registry_migration.repositories}),
	join(' ', 'out/ab=1', map { "$_=0" } @out), 'the outage spent no retry');
is(sql(q{SELECT count(*) FROM registry_migration.events WHERE event IN ('abort', 'retry_failed', 'skip')}), '0',
	'... no abort and no skip at all');

# ================================================================================
# 6. Concurrency (SPEC §6 step 5)
# ================================================================================
note '6. concurrency';

# A psql session in the background running a script; its output goes to a
# file (read it after finish). Stdin is a file, so it runs without pumping.
my $bg_dir = PostgreSQL::Test::Utils::tempdir();
my $bg_count = 0;

sub psql_bg
{
	my ($sql) = @_;
	my $base = "$bg_dir/bg" . ++$bg_count;
	open(my $fh, '>', "$base.sql") or die "$base.sql: $!";
	print $fh $sql;
	close $fh;
	my $h = IPC::Run::start([ 'psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$base.sql", '-d',
			$node->connstr('postgres') . ' application_name=cycle_worker' ],
		'<', '/dev/null', '>', "$base.out", '2>', "$base.err");
	return ($h, "$base.out");
}

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
is_deeply($second, { ran => JSON::PP::false, stopped => 'another_cycle_running', map { $_ => [] } @lists },
	'a second enqueuer while one runs: {"ran": false, "stopped": "another_cycle_running"}, all lists empty');
is($second_guard->{ran}, JSON::PP::false, 'a second guard while one runs: "ran": false');
ok(!(grep { @{ $second_guard->{$_} } } qw(aborted canceled skipped finished left_alone errors)), '... nothing listed');
cmp_ok($took, '<', 1.2, sprintf('... both return at once (%.2f s), without waiting for the running ones', $took));
$first->finish;
$first_guard->finish;
my $first_s = $json->decode(slurp_file($first_out));
ok($first_s->{ran}, 'the first enqueuer ran') && is_deeply($first_s->{started}, ['cc/slow'], '... and started its repository');
is($json->decode(slurp_file($guard_out))->{stale}, 1, 'the guard ran at the same time as the enqueuer (§6 step 5)');

# A repository that changes while the cycle waits for the registry: the
# change decided on is dropped and reported as "state changed" (§12.15).
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

# ================================================================================
# 7. A full run with random failures
# ================================================================================
note '7. full run';

my $N = $ENV{FULL_RUN_REPOSITORIES} // 2000;
my $max_tags = 20;
fresh(capacity => 50, max_retries => 3, max_tags_count => $max_tags, max_step_duration => "'0.3 s'",
	pre_import_timeout => "'1 s'", import_timeout => "'1 s'", pre_import_tags_rate => 0,
	guard_batch_size => 500);
srand(20220615);
my (@models, %expected);
# [name, share, simulator model, expected final state, skipped_reason, retries_count]
my @kinds = (
	[ 'pre_failed_once', 0.06, { pre_import_outcomes => [qw(failed complete)] }, 'import_done', undef, 1 ],
	[ 'pre_canceled_once', 0.04, { pre_import_outcomes => [qw(canceled complete)] }, 'import_done', undef, 1 ],
	[ 'pre_hang_once', 0.03, { pre_import_outcomes => [qw(hang complete)] }, 'import_done', undef, 1 ],
	[ 'import_failed_once', 0.05, { import_outcomes => [qw(failed complete)] }, 'import_done', undef, 1 ],
	[ 'import_canceled_once', 0.03, { import_outcomes => [qw(canceled complete)] }, 'import_done', undef, 1 ],
	[ 'import_hang_once', 0.02, { import_outcomes => [qw(hang complete)] }, 'import_done', undef, 1 ],
	[ 'always_failing', 0.02, { pre_import_outcomes => ['failed'] }, 'import_skipped', 'too_many_retries', 3 ],
	[ 'native', 0.01, { native => 1 }, 'import_done', 'native_import', 0 ],
	[ 'missing', 0.01, { exists => 0 }, 'import_done', 'not_found', 0 ],
	[ 'too_many_tags', 0.01, { tags => $max_tags + 1 }, 'import_skipped', 'too_many_tags', 0 ],
	[ 'plain', 1, {}, 'import_done', undef, 0 ],
);
my %kind_count;
for my $i (1 .. $N)
{
	my $x = rand();
	my $kind;
	for my $k (@kinds)
	{
		$kind = $k;
		last if ($x -= $k->[1]) < 0;
	}
	my $path = sprintf('full/g%02d/repo-%05d', $i % 37, $i);
	push @models, { path => $path, tags => int(rand($max_tags + 1)),
		pre_import_seconds => 0.02 + rand(0.03), import_seconds => 0.02 + rand(0.03), %{ $kind->[2] } };
	$expected{$path} = $kind;
	$kind_count{ $kind->[0] }++;
}
note 'full run: ' . join(', ', map { "$_ $kind_count{$_}" } sort keys %kind_count);
$sim->add_repositories(@models);
sql("INSERT INTO registry_migration.repositories (path, created_at)
	SELECT format('full/g%s/repo-%s', to_char(i % 37, 'FM00'), to_char(i, 'FM00000')),
	       '2020-01-01'::timestamptz + i * interval '1 s'
	  FROM generate_series(1, $N) AS i");
# Notifications: most are delivered by calling handle_notification (in order);
# a fifth are lost and the guard has to find out.
my $deliver_fn = q{CREATE FUNCTION pg_temp.deliver(paths text[], statuses text[]) RETURNS int LANGUAGE plpgsql AS $$
	DECLARE refused int := 0;
	BEGIN
		FOR i IN 1 .. coalesce(array_length(paths, 1), 0) LOOP
			BEGIN
				PERFORM registry_migration.handle_notification(paths[i], statuses[i]);
			EXCEPTION WHEN object_not_in_prerequisite_state THEN refused := refused + 1;
			END;
		END LOOP;
		RETURN refused;
	END $$;
};
my ($delivered, $lost, $iterations, @cycle_errors) = (0, 0, 0);
my $full_start = time();
$deadline = time() + 150;
while (time() < $deadline)
{
	my $notes = $sim->notifications;
	$sim->clear_notifications;    # one arriving in between is lost: that happens
	my (@p, @st);
	for my $n (@$notes)
	{
		if (rand() < 0.2) { $lost++; next }
		push @p, $n->{path};
		push @st, $n->{status};
	}
	$delivered += @p;
	my $arr = sub { 'ARRAY[' . join(',', map { quote($_) } @_) . ']::text[]' };
	my @out = split /\n/, sql($deliver_fn . 'SELECT pg_temp.deliver(' . $arr->(@p) . ', ' . $arr->(@st) . ');'
		  . 'SELECT registry_migration.run_enqueuer(); SELECT registry_migration.run_guard();'
		  . q{SELECT count(*) FROM registry_migration.repositories WHERE state NOT IN ('import_done', 'import_skipped')});
	$iterations++;
	for my $summary (map { $json->decode($_) } @out[ 1, 2 ])
	{
		push @cycle_errors, @{ $summary->{errors} };
	}
	last if $out[3] == 0;
	sleep 0.05;
}
my $full_time = time() - $full_start;
note sprintf('full run: %d repositories in %.1f s, %d iterations, %d notifications delivered, %d lost',
	$N, $full_time, $iterations, $delivered, $lost);
is(sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state NOT IN ('import_done', 'import_skipped')}),
	'0', sprintf('full run: every one of %d repositories finished or skipped (%.1f s)', $N, $full_time));
is_deeply(\@cycle_errors, [], 'no cycle reported an error');
is(sql('SELECT count(*) FROM registry_migration.repositories r, registry_migration.settings s
	WHERE r.retries_count > s.max_retries'), '0', 'retries_count never above max_retries');
is(sql(q{SELECT count(*) FROM registry_migration.repositories
	WHERE state = 'import_skipped' AND (skipped_reason IS NULL OR skipped_at IS NULL)}), '0',
	'every skipped repository has a reason and a time');
my %got = map { my @f = split /\|/; $f[0] => [ @f[ 1 .. 3 ] ] }
  split /\n/, sql(q{SELECT path, state, coalesce(skipped_reason::text, ''), retries_count FROM registry_migration.repositories});
my @wrong;
for my $path (sort keys %expected)
{
	my $k = $expected{$path};
	my $want = join(' ', $k->[3], $k->[4] // '', $k->[5]);
	my $have = join(' ', @{ $got{$path} });
	push @wrong, "$path ($k->[0]): expected $want, got $have" if $want ne $have;
}
is(scalar(@wrong), 0, 'each repository ended as its script says: state, reason, and exactly one retry per scripted failure')
  or diag join("\n", @wrong[ 0 .. min(19, $#wrong) ]);
# The event log replays to the final states.
is(sql(q{WITH e AS (
		SELECT repository_id, old_state, new_state, event,
		       lag(new_state) OVER (PARTITION BY repository_id ORDER BY id) AS previous
		  FROM registry_migration.events)
	SELECT count(*) FROM e WHERE old_state <> coalesce(previous, 'default')}), '0',
	'event log: every event starts where the previous one ended (the first from default)');
is(sql(q{SELECT count(*) FROM registry_migration.repositories r
	WHERE r.state <> coalesce((SELECT new_state FROM registry_migration.events e
	                             WHERE e.repository_id = r.id ORDER BY id DESC LIMIT 1), 'default')}), '0',
	'event log: the last event of each repository is its current state');
is(sql(q{SELECT count(*) FROM registry_migration.repositories r
	WHERE r.retries_count <> (SELECT count(*) FROM registry_migration.events e
	                           WHERE e.repository_id = r.id AND e.event IN ('abort', 'retry_failed'))}), '0',
	'event log: one abort event per retry counted');
my $sim_state = $sim->_control('GET', 'state?repositories=0');
cmp_ok($sim_state->{peak_running_steps}, '<=', 50, "the registry never ran more than capacity 50 steps (peak $sim_state->{peak_running_steps})");
is($sim_state->{running_steps}, 0, 'and nothing is left running on the registry');
my $sim_done = $sim->_control('GET', 'repositories');
my @mismatch = grep {
	my $status = $sim_done->{$_}{status} // 'none';
	$got{$_}[0] eq 'import_done' && $got{$_}[1] eq '' && $status ne 'import_complete'
} keys %got;
is(scalar(@mismatch), 0, 'every repository recorded as imported is import_complete on the registry')
  or diag join(', ', @mismatch[ 0 .. min(9, $#mismatch) ]);

$node->stop;
note sprintf('040_enqueuer: %.1f s', time() - $t_start);
done_testing();
