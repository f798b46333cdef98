# The admin functions that call the registry, cancel() (plain and forced) and
# retry(): what each registry answer does, and that a refusal or an
# unreachable registry changes nothing.
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

my ($node, $sim) = start_guard_test('admin');
my $r;

my $t = time();
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
$sim->set_faults({ match => { kind => 'start', path => 'r/off' }, times => 1, action => { type => 'respond', code => 503 } });
like(attempt(q{SELECT registry_migration.retry('r/off')}), qr/^ERROR 08006: .*DETAIL: +The start request got no usable answer\.$/s,
	'retry, status answered but the start answered 503: 08006 saying the start failed');
is(row('r/off')->{state} . ' ' . row('r/off')->{retries_count}, 'import_aborted 1', '... nothing changed');
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

end_test();
