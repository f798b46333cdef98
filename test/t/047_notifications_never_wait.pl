# A notification never waits on a registry request. The cycles read a
# repository without locking it, ask the registry, and lock the row only
# to apply the answer; if a notification changed the repository meanwhile,
# the notification's change stands and the late answer is dropped ("state
# changed" under the summary's errors). The procedures enqueue() and
# guard(), like the worker, commit after each repository, so a repository
# changed earlier in the cycle is not locked either. Every notification
# below runs with lock_timeout = 1s while the cycle's request is held for
# 4 s by the simulator: a wait would end in ERROR 55P03.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use HTTP::Tiny;
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;

my ($node, $sim) = start_enqueuer_test('never_wait');
create_attempt_function();
my $held_ms = 4000;

# handle_notification in a session that gives up on any lock after 1 s.
sub notify_now
{
	my ($path, $status) = @_;
	return sql("SET lock_timeout = '1s'; SELECT public.attempt("
		  . quote("SELECT registry_migration.handle_notification('$path', '$status')") . ')');
}

# Wait until the simulator holds the request the fault rule matches.
sub request_held
{
	return wait_until(sub { ($sim->faults->[0]{hits} // 0) >= 1 });
}

sub hold { return fault($_[0], { type => 'delay', ms => $held_ms }) }

sub cycle_running
{
	return sql(q{SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'cycle_worker' AND state = 'active'});
}

# Run the cycle in the background; returns a function that waits for its
# end and gives its summary.
sub cycle_in_background
{
	my ($statement) = @_;
	my ($h, $out) = psql_bg("$statement;\n");
	return sub { $h->finish; return $json->decode(slurp_file($out)) };
}

sub errors_of { return [ map { "$_->{path}: $_->{message}" } @{ $_[0]{errors} } ] }

# ---- the enqueuer: a retry whose start is in flight ------------------------------

for my $cycle ('CALL registry_migration.enqueue()', 'SELECT registry_migration.run_enqueuer()')
{
	fresh();
	$sim->add_repositories({ path => 'g/again', status => 'pre_import_failed' });
	db_aborted('g/again', '1 hour');
	$sim->set_faults(hold({ kind => 'start', path => 'g/again' }));
	my $done = cycle_in_background($cycle);
	ok(request_held(), "$cycle: the retry's start request is held by the registry");
	is(notify_now('g/again', 'pre_import_complete'), 'pre_import_done',
		"$cycle: a notification about the repository being started is applied at once");
	is(cycle_running(), '1', "$cycle: ... while the start request is still waiting for its answer");
	my $s = $done->();
	is_deeply([ $s->{retried}, errors_of($s) ], [ [], ['g/again: state changed'] ],
		"$cycle: the start's late answer is dropped, listed as state changed");
	is(state_of('g/again'), 'pre_import_done', "$cycle: the notification's change stands");
}

# ---- the enqueuer: a repository started earlier in the same cycle ----------------

fresh();
$sim->add_repositories({ path => 'g/first' }, { path => 'g/second' });
db_add('g/first', created_at => "now() - interval '2 min'");
db_add('g/second', created_at => "now() - interval '1 min'");
$sim->set_faults(hold({ kind => 'start', path => 'g/second' }));
my $done = cycle_in_background('CALL registry_migration.enqueue()');
ok(request_held(), 'enqueue(): the second start request is held');
is(state_of('g/first'), 'pre_importing', 'enqueue(): the first start is committed before the second is sent');
is(notify_now('g/first', 'pre_import_complete'), 'pre_import_done',
	'enqueue(): a notification about the repository started first is applied at once');
my $s = $done->();
is_deeply([ $s->{ran}, $s->{started}, errors_of($s) ], [ JSON::PP::true, [ 'g/first', 'g/second' ], [] ],
	'enqueue() returns the cycle summary as its INOUT argument');

# ---- the guard: a cancel in flight -----------------------------------------------

for my $cycle ('CALL registry_migration.guard()', 'SELECT registry_migration.run_guard()')
{
	fresh(max_step_duration => q{'0'}, pre_import_timeout => q{'0'}, pre_import_tags_rate => 0);
	$sim->add_repositories({ path => 'g/slow' });
	# The registry runs its pre-import (for 600 s); the database has it as long-running.
	my $start = HTTP::Tiny->new->put($sim->url . '/gitlab/v1/import/g/slow/?import_type=pre');
	is($start->{status}, 202, "$cycle: the registry runs the pre-import");
	db_add('g/slow', state => "'pre_importing'", pre_import_started_at => "now() - interval '1 day'");
	$sim->set_faults(hold({ kind => 'cancel', path => 'g/slow' }));
	$done = cycle_in_background($cycle);
	ok(request_held(), "$cycle: the cancel of the long-running pre-import is held");
	is(notify_now('g/slow', 'pre_import_complete'), 'pre_import_done',
		"$cycle: a notification about the repository being canceled is applied at once");
	$s = $done->();
	is_deeply([ $s->{canceled}, $s->{aborted}, errors_of($s) ], [ ['g/slow'], [], ['g/slow: state changed'] ],
		"$cycle: the accepted cancel no longer aborts the repository the notification finished");
	is(state_of('g/slow'), 'pre_import_done', "$cycle: the notification's change stands");
}

# ---- cancel() and retry(): a notification while their request is held -------------
# The notification goes through at once; the admin call then finds the
# repository changed and fails with 40001, changing nothing (run it again).

sub admin_in_background
{
	my ($statement) = @_;
	my ($h, $out) = psql_bg("SELECT public.attempt(" . quote($statement) . ");\n");
	return sub { $h->finish; return slurp_file($out) =~ s/\s+$//r };
}

fresh();
$sim->add_repositories({ path => 'g/admin_cancel' });
is(HTTP::Tiny->new->put($sim->url . '/gitlab/v1/import/g/admin_cancel/?import_type=pre')->{status}, 202,
	'cancel(): the registry runs the pre-import');
db_add('g/admin_cancel', state => "'pre_importing'", pre_import_started_at => "now() - interval '1 minute'");
$sim->set_faults(hold({ kind => 'cancel', path => 'g/admin_cancel' }));
my $admin = admin_in_background(q{SELECT registry_migration.cancel('g/admin_cancel')});
ok(request_held(), 'cancel(): its request is held by the registry');
is(notify_now('g/admin_cancel', 'pre_import_complete'), 'pre_import_done',
	'cancel(): a notification about the repository is applied at once');
like($admin->(), qr/^ERROR 40001: /, 'cancel(): then fails with 40001: the repository changed meanwhile');
is(state_of('g/admin_cancel'), 'pre_import_done', "cancel(): the notification's change stands");

fresh();
$sim->add_repositories({ path => 'g/admin_retry', status => 'pre_import_failed' });
db_aborted('g/admin_retry', '1 hour');
$sim->set_faults(hold({ kind => 'start', path => 'g/admin_retry' }));
$admin = admin_in_background(q{SELECT registry_migration.retry('g/admin_retry')});
ok(request_held(), "retry(): its start request is held by the registry");
is(notify_now('g/admin_retry', 'pre_import_complete'), 'pre_import_done',
	'retry(): a notification about the repository is applied at once');
like($admin->(), qr/^ERROR 40001: /, 'retry(): then fails with 40001');
is(state_of('g/admin_retry'), 'pre_import_done', "retry(): the notification's change stands");

# ---- the procedures commit, so they refuse to run inside a transaction -----------

like(sql(q{SELECT public.attempt('CALL registry_migration.enqueue()')}),
	qr/^ERROR 2D000: registry_migration\.enqueue\(\) must be run by CALL outside a transaction block/,
	'enqueue() called from a function: 2D000');
my ($rc, $out, $err) = $node->psql('postgres', 'BEGIN; CALL registry_migration.guard(); COMMIT;');
like($err, qr/guard\(\) must be run by CALL outside a transaction block.*HINT: +Inside a transaction, SELECT registry_migration\.run_guard\(\)/s,
	'guard() inside BEGIN: refused, with a hint to run_guard()');

# ---- the worker --------------------------------------------------------------------

$sim->stop;
$node->stop;
$sim = RegistrySimulator->new(pre_import_seconds => 600, import_seconds => 600, cancel_cooldown => 0);
$node = start_node('never_wait_worker', sim => $sim, conf => [
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.enqueue_interval = '200ms'",
	"registry_migration.request_timeout = '10s'" ]);
create_attempt_function();
$sim->add_repositories({ path => 'w/again', status => 'pre_import_failed' });
$sim->set_faults(hold({ kind => 'start', path => 'w/again' }));
db_aborted('w/again', '1 hour');
settings(enabled => 'true', capacity => 10, max_tags_count => 0);
ok(request_held(), 'worker: the retry start request is held');
is(notify_now('w/again', 'pre_import_complete'), 'pre_import_done',
	'worker: a notification about the repository being started is applied at once');
ok(wait_until(sub { slurp_file($node->logfile) =~ /repository "w\/again" changed while the registry was being asked; left for the next cycle/ }),
	"worker: the start's late answer is dropped and said so in the log");

end_test();
