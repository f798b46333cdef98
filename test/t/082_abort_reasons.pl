# The reasons of registry_migration.aborts (the retries spent, as the
# exporter and scripts/report count them) for aborts made through the real
# code paths: notifications, an operator's cancel, the guard (a long-running
# step canceled, a failed step found, a step the registry does not know, a
# registry that does not answer), the enqueuer (a refused start, too many
# 429s, an unusable tag list, a retry that failed with an error). One row
# per abort: an automatic skip after it is no second row, and a guard
# cancel that skips at the last retry is no abort.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $sim) = start_guard_test('abort_reasons');

sub aborts
{
	return [ split /\n/, sql(q{SELECT path || ' ' || reason || ' ' || cause
		FROM registry_migration.aborts ORDER BY id}) ];
}

# ---- notifications, an operator, the guard ---------------------------------------

fresh();
# Steps a minute old: a failure reported for a step younger than 10 s is
# first confirmed by the guard (034 covers that), not aborted at once.
my $minute_ago = q{now() - interval '1 minute'};
put_row('n/failed', 'pre_importing', pre_import_started_at => $minute_ago);
put_row('n/canceled', 'importing', pre_import_started_at => $minute_ago,
	pre_import_done_at => $minute_ago, import_started_at => $minute_ago);
put_row('n/last', 'pre_importing', pre_import_started_at => $minute_ago, retries_count => 2);
is(notify('n/failed', 'pre_import_failed'), 'import_aborted', 'a failed pre-import notified: aborted');
is(notify('n/canceled', 'import_canceled'), 'import_aborted', 'an import the registry canceled: aborted');
is(notify('n/last', 'pre_import_failed'), 'import_skipped', 'a failure at the retry limit: aborted, then skipped');

sim_running('o/cancel', 'pre');
put_row('o/cancel', 'pre_importing', pre_import_started_at => 'now()');
is(attempt(q{SELECT registry_migration.cancel('o/cancel')}), 'import_aborted', "an operator's cancel: aborted");

# Stale steps (the guard acts on any age here).
my $hour_ago = q{now() - interval '1 hour'};
sim_running('g/long', 'pre');
sim_running('g/lastcancel', 'pre');
sim_running('g/down', 'pre');
$sim->add_repositories({ path => 'g/failed', status => 'pre_import_failed' });
put_row($_, 'pre_importing', pre_import_started_at => $hour_ago) for qw(g/long g/failed g/gone g/down);
put_row('g/lastcancel', 'pre_importing', pre_import_started_at => $hour_ago, retries_count => 2);
$sim->set_faults(fault({ kind => 'status', path => 'g/down' }, respond(503)));
my $g = guard();
is_deeply([ sort @{ $g->{aborted} } ], [qw(g/down g/failed g/gone g/long)], 'the guard aborts four stale steps')
  or diag(explain($g));
is_deeply($g->{skipped}, ['g/lastcancel'], '... and skips the one it canceled at its last retry');

# The guard's order among its stale repositories is not the point here.
is_deeply([ sort @{ aborts() } ], [ sort
	'n/failed registry_failed notification',
	'n/canceled registry_canceled notification',
	'n/last registry_failed notification',
	'o/cancel operator_cancel admin',
	'g/down registry_unavailable guard',
	'g/failed registry_failed guard',
	'g/gone not_running guard',
	'g/long long_running guard' ], 'the reasons: what the registry reported, who canceled, what the guard found')
  or diag(explain(aborts()));

# ---- the enqueuer -----------------------------------------------------------------

fresh(max_tags_count => 5);
# A retry that cannot be recorded: the row refuses to become pre_importing.
sql(q{ALTER TABLE registry_migration.repositories ADD CONSTRAINT no_retry
	CHECK (path <> 'e/retry' OR state <> 'pre_importing')});
$sim->add_repositories({ path => 'e/retry', status => 'pre_import_failed' }, { path => 'e/tags' },
	{ path => 'e/refused', tags => 1 });
db_aborted('e/retry', '1 hour');
db_add('e/tags', created_at => q{now() - interval '2 min'});
db_add('e/refused', created_at => q{now() - interval '1 min'});
$sim->set_faults(fault({ kind => 'tags', path => 'e/tags' }, { type => 'malformed_json' }),
	fault({ kind => 'start', path => 'e/refused' }, respond(400)));
my $e = enqueue();
is_deeply([ map { $_->{path} } @{ $e->{errors} } ], [qw(e/retry e/tags)], 'two repositories fail with an error')
  or diag(explain($e));
is_deeply(aborts(), [ 'e/retry error enqueuer', 'e/tags error enqueuer', 'e/refused start_refused enqueuer' ],
	'the reasons: a retry that failed and an unusable answer are errors; a 400 to a start is a refused start');
sql('ALTER TABLE registry_migration.repositories DROP CONSTRAINT no_retry');

fresh(start_max_retries => 0);
$sim->add_repositories({ path => 'e/busy' });
db_add('e/busy');
$sim->set_faults(fault({ kind => 'start', path => 'e/busy' }, respond(429)));
is_deeply(enqueue()->{aborted}, ['e/busy'], 'a 429 beyond start_max_retries aborts');
is_deeply(aborts(), ['e/busy too_many_imports enqueuer'], 'the reason: too many imports');

end_test();
