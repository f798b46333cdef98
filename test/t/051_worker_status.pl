# What worker_status tells an operator without the server log: last_error
# shows an error only while it is current (a cycle that fails sets it, the
# next cycle of that kind that runs to its end clears it; the registry being
# down is no error of the worker), and the counters since the worker
# started move as the worker's cycles end and as the registry answers them:
# every answer the simulator logged is counted once in its class, 429s by
# their error code; cycles by how they stopped; SQL calls of the cycles are
# not counted; a restarted worker counts from zero.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use JSON::PP;
use Test::More;

my $sim = RegistrySimulator->new(pre_import_seconds => 600, import_seconds => 600, auto_create => 1,
	cancel_cooldown => 0);

# No registry_url yet: every cycle that needs the registry fails.
my $node = PostgreSQL::Test::Cluster->new('worker_status');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.enqueue_interval = '200ms'",
	"registry_migration.guard_interval = '500ms'", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');

my $json = JSON::PP->new->canonical;

sub sql  { return $node->safe_psql('postgres', $_[0]) }
sub poll { return $node->poll_query_until('postgres', $_[0]) }

# The counters as Perl hashes: { cycles => {guard => {...}, enqueue => {...}}, answers => {...} }.
sub counters
{
	my ($cycles, $answers, $since) = split /\|/,
	  sql(q{SELECT cycles, answers, counters_since FROM registry_migration.worker_status});
	return { cycles => $json->decode($cycles), answers => $json->decode($answers), since => $since };
}

# The worker idles (between cycles) or runs again.
sub worker_enabled
{
	my ($on) = @_;
	$node->append_conf('postgresql.conf', 'registry_migration.worker_enabled = ' . ($on ? 'on' : 'off') . "\n");
	$node->reload;
	return if $on;
	poll(q{SELECT activity LIKE 'idle: %worker_enabled is off' FROM registry_migration.worker_status})
	  or die 'the worker does not idle';
}

# ---- the counters are there, every one, from the start ----------------------
ok(poll(q{SELECT counters_since >= since - interval '1 minute' AND counters_since <= now()
	FROM registry_migration.worker_status}), 'counters_since: when the worker started');
my $c = counters();
is_deeply([ sort keys %{ $c->{cycles}{guard} } ], [qw(another_cycle_running error ran)],
	'guard cycles: ran, another_cycle_running, error');
is_deeply([ sort keys %{ $c->{cycles}{enqueue} } ],
	[ sort qw(nothing_to_do disabled retry_after at_capacity waiting_time too_many_imports
		registry_unavailable another_cycle_running error) ],
	'enqueue cycles: every reason to stop, and error');
my @answer_classes = sort qw(ok accepted already_imported already_running not_found 429_IMPORT_RATE_LIMIT
  429_IMPORT_REPOSITORY_NOT_READY 429_other_code 429_no_code refused failed down);
is_deeply([ sort keys %{ $c->{answers} } ], \@answer_classes, 'answers: every class');
is_deeply([ grep { $c->{answers}{$_} != 0 } @answer_classes ], [], 'no answer yet');
ok(poll(q{SELECT (cycles->'enqueue'->>'disabled')::int > 0 AND (cycles->'guard'->>'ran')::int > 0
	FROM registry_migration.worker_status}), 'cycles are counted: enqueue "disabled", guard "ran"');
is(sql('SELECT last_error IS NULL AND last_error_at IS NULL FROM registry_migration.worker_status'), 't',
	'no error');

# ---- last_error: set by a failing cycle, cleared by the next good one --------
# A new repository for the enqueuer and a stale step for the guard: with no
# registry_url, both cycles fail as a whole.
sql(q{UPDATE registry_migration.settings SET enabled = true, capacity = 5;
	INSERT INTO registry_migration.repositories (path) VALUES ('err/new');
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
	VALUES ('err/stale', 'pre_importing', now() - interval '1 hour');});
ok(poll(q{SELECT last_error = 'registry_migration.registry_url is not set' AND last_error_at IS NOT NULL
	AND (cycles->'guard'->>'error')::int > 0 AND (cycles->'enqueue'->>'error')::int > 0
	FROM registry_migration.worker_status}),
	'failing cycles: last_error and last_error_at are set, both kinds count errors');
my $first_error_at = sql('SELECT last_error_at FROM registry_migration.worker_status');
ok(poll(qq{SELECT last_error_at > '$first_error_at' FROM registry_migration.worker_status}),
	'while the cycles go on failing, last_error_at is the latest failure');
is(sql(q{SELECT string_agg(state::text, ',' ORDER BY path) FROM registry_migration.repositories}),
	'default,pre_importing', 'the failed cycles changed nothing');

sql("ALTER SYSTEM SET registry_migration.registry_url = '" . $sim->url . "'");
$node->reload;
ok(poll(q{SELECT last_error IS NULL AND last_error_at IS NULL FROM registry_migration.worker_status}),
	'once both kinds of cycle run to their end, last_error is cleared');
ok(poll(q{SELECT state = 'pre_importing' FROM registry_migration.repositories WHERE path = 'err/new'}),
	'... and the work goes on');

# ---- answers by class: exactly what the registry answered --------------------
# The worker idles, the simulator's log is emptied, then one repository per
# kind of answer is migrated for a while; idle again, the counters' growth
# is compared with the simulator's log, answer by answer.
worker_enabled(0);
sql(q{DELETE FROM registry_migration.repositories;
	UPDATE registry_migration.settings SET capacity = 20, max_step_duration = '1 day'});
my %fault_class = (
	'c/ratelimit' => '429_IMPORT_RATE_LIMIT',
	'c/notready' => '429_IMPORT_REPOSITORY_NOT_READY',
	'c/othercode' => '429_other_code',
	'c/nocode' => '429_no_code',
	'c/failed' => 'failed',
	'c/refused' => 'refused',
	'c/missing' => 'not_found');
sub errors_body { return $json->encode({ errors => [ { code => $_[0], message => 'm' } ] }) }
$sim->set_faults(
	{ match => { kind => 'start', path => 'c/ratelimit' }, times => 1,
		action => { type => 'respond', code => 429, body => errors_body('IMPORT_RATE_LIMIT') } },
	{ match => { kind => 'start', path => 'c/notready' }, times => 1,
		action => { type => 'respond', code => 429, body => errors_body('IMPORT_REPOSITORY_NOT_READY') } },
	{ match => { kind => 'start', path => 'c/othercode' }, times => 1,
		action => { type => 'respond', code => 429, body => errors_body('SOMETHING_ELSE') } },
	{ match => { kind => 'start', path => 'c/nocode' }, times => 1,
		action => { type => 'respond', code => 429, body => '{"errors":[{"message":"busy"}]}' } },
	{ match => { kind => 'tags', path => 'c/failed' }, times => 1,
		action => { type => 'respond', code => 503 } },
	{ match => { kind => 'start', path => 'c/refused' }, times => 1,
		action => { type => 'respond', code => 400 } },
	{ match => { kind => 'tags', path => 'c/missing' }, times => 1,
		action => { type => 'respond', code => 404 } });
$sim->clear_requests;
my $before = counters();
sql(q{INSERT INTO registry_migration.repositories (path)
	VALUES ('c/ratelimit'), ('c/notready'), ('c/othercode'), ('c/nocode'), ('c/failed'), ('c/refused'),
	       ('c/missing'), ('c/fine')});
worker_enabled(1);
my $deadline = time() + 60;
sleep 1 while time() < $deadline && grep { $_->{hits} < $_->{times} } @{ $sim->faults };
is_deeply([ map { $_->{hits} } @{ $sim->faults } ], [ (1) x 7 ], 'every injected answer was given');
# A few more cycles after the last one.
sleep 1;
worker_enabled(0);
my $after = counters();

# The class the worker must have counted each logged answer in.
sub expected_class
{
	my ($entry) = @_;
	my ($kind, $code, $path) = @$entry{qw(kind code repository)};
	return $fault_class{$path} if ($entry->{fault} // '') eq 'respond';
	return 'accepted' if $code == 202 && $kind =~ /^(start|cancel)$/;
	return $kind eq 'start' ? 'already_imported' : 'ok' if $code == 200 && $kind ne 'cancel';
	return 'not_found' if $code == 404;
	return 'already_running' if $kind eq 'start' && ($code == 409 || $code == 425);
	return 'failed' if $code >= 500;
	return "unexpected $kind $code";
}
my %logged = map { $_ => 0 } @answer_classes;
$logged{ expected_class($_) }++ for @{ $sim->requests };
my %counted = map { $_ => $after->{answers}{$_} - $before->{answers}{$_} } @answer_classes;
is_deeply(\%counted, \%logged, 'the answers counted are those the registry gave, class by class')
  or diag(explain({ counted => \%counted, logged => \%logged }));
is($counted{$_}, 1, "one answer counted as $_")
  for qw(429_IMPORT_RATE_LIMIT 429_IMPORT_REPOSITORY_NOT_READY 429_other_code 429_no_code refused);
cmp_ok($counted{accepted}, '>=', 7, 'the starts accepted are counted');
cmp_ok($after->{cycles}{enqueue}{too_many_imports} - $before->{cycles}{enqueue}{too_many_imports}, '>=', 3,
	'enqueue cycles stopped by "too many imports" are counted (three such 429s)');
is(sql('SELECT last_error IS NULL FROM registry_migration.worker_status'), 't',
	'answers that fail one repository are no error of the worker');

# ---- the registry down: counted, but no error of the worker -------------------
$before = counters();
sql(q{INSERT INTO registry_migration.repositories (path) VALUES ('down/a')});
$sim->down(3);
worker_enabled(1);
ok(poll(qq{SELECT (answers->>'down')::int > $before->{answers}{down}
	AND (cycles->'enqueue'->>'registry_unavailable')::int > $before->{cycles}{enqueue}{registry_unavailable}
	FROM registry_migration.worker_status}),
	'the registry down: answers "down" and enqueue cycles stopped by "registry_unavailable" are counted');
is(sql('SELECT last_error IS NULL FROM registry_migration.worker_status'), 't',
	'the registry down is no error of the worker');
ok(poll(q{SELECT state = 'pre_importing' FROM registry_migration.repositories WHERE path = 'down/a'}),
	'the repository starts once the registry is back');

# ---- another cycle of the same kind running ------------------------------------
# Held by a session, the cycles' locks make the worker's cycles find another
# cycle running: counted as such for both kinds, and no error.
$before = counters();
sql(q{SELECT pg_advisory_lock(1380798791, 1), pg_advisory_lock(1380798791, 2), pg_sleep(1.5)});
$after = counters();
cmp_ok($after->{cycles}{$_}{another_cycle_running}, '>', $before->{cycles}{$_}{another_cycle_running},
	"$_ cycles that found another cycle running are counted") for qw(guard enqueue);
is(sql('SELECT last_error IS NULL FROM registry_migration.worker_status'), 't', '... and are no error');

# ---- SQL calls of the cycles are not counted ------------------------------------
worker_enabled(0);
$before = counters();
sql(q{INSERT INTO registry_migration.repositories (path) VALUES ('sql/a')});
my $requests = @{ $sim->requests };
like(sql('SELECT registry_migration.run_enqueuer()'), qr/"sql\/a"/, 'an enqueue cycle called from SQL');
cmp_ok(scalar @{ $sim->requests }, '>', $requests, '... asked the registry');
$after = counters();
is_deeply($after, $before, '... and moved none of the worker\'s counters');

# ---- a restarted worker counts from zero ---------------------------------------
my $pid = sql('SELECT pid FROM registry_migration.worker_status');
sql("SELECT pg_terminate_backend($pid)");
ok(poll(qq{SELECT pid <> $pid AND activity LIKE 'idle: %' AND counters_since > '$before->{since}'
	FROM registry_migration.worker_status}), 'a worker restarts; its counters start again');
$c = counters();
is_deeply([ grep { $c->{answers}{$_} != 0 } @answer_classes ], [], 'no answer counted');
is_deeply([ map { my $k = $_; grep { $c->{cycles}{$k}{$_} != 0 } sort keys %{ $c->{cycles}{$k} } } qw(guard enqueue) ],
	[], 'no cycle counted (the worker idles)');

my ($rc, $out, $err) = $node->psql('postgres', 'SELECT * FROM registry_migration.worker_status');
is($err, '', 'worker_status reads without an error');

$node->stop;
$sim->stop;
done_testing();
