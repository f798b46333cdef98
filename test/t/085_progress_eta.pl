# The progress view's rate and estimated time to finish: the finishes of
# the last hour divided by the time that work really covers — from when the
# first of them began (the migration's start, for a migration younger than
# an hour), never more than an hour. A 30-second run is measured over 30
# seconds, not over a minute or an hour.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

start_node('progress_eta');

# Rows set up and the view read in one transaction (one now()), then rolled
# back: "rate_per_hour eta_seconds".
sub progress_with
{
	my ($setup) = @_;
	return sql(qq{BEGIN;
		$setup;
		SELECT recent_rate_per_hour || ' ' || coalesce(extract(epoch FROM estimated_time_to_finish)::int::text, 'NULL')
		  FROM registry_migration.progress;
		ROLLBACK;});
}

# $count repositories, the i-th (from 1) began $began_ago(i) seconds ago and
# finished $done_ago(i) seconds ago; $remaining still at default.
sub migration
{
	my (%m) = @_;
	return qq{INSERT INTO registry_migration.repositories
		(path, state, pre_import_started_at, pre_import_done_at, import_started_at, import_done_at)
		SELECT 'eta/done-' || i, 'import_done', now() - ($m{began}) * interval '1 s',
		       now() - ($m{done}) * interval '1 s', now() - ($m{done}) * interval '1 s',
		       now() - ($m{done}) * interval '1 s'
		  FROM generate_series(1, $m{count}) AS i;
		INSERT INTO registry_migration.repositories (path)
		SELECT 'eta/left-' || i FROM generate_series(1, $m{remaining}) AS i};
}

# A migration started 30 s ago, one repository at a time, a second each:
# the i-th began 31 - i s ago and finished 30 - i s ago.
is(progress_with(migration(count => 30, began => '31 - i', done => '30 - i', remaining => 30)), '3600.0 30',
	'30 finished in the 30 s since the migration started, 30 remaining: 3600/h, 30 s to go (not an hour, not a minute)');

# Ten at once (capacity 10): all began a minute ago and finished just now.
is(progress_with(migration(count => 10, began => '60', done => '0.5', remaining => 20)), '600.0 120',
	'10 run side by side for a minute: 600/h (the time since they began, not since the first finish)');

# A migration running for hours: the hour is the window.
is(progress_with(migration(count => 30, began => '3 * 3600', done => 'i * 100', remaining => 15)), '30.0 1800',
	'a migration older than an hour: 30 finished in the hour, 30/h, 15 left: half an hour');

# Skips with no step (a tag limit): they count from their own finish, which
# is never divided by less than a second.
is(progress_with(q{INSERT INTO registry_migration.repositories (path, state, skipped_at, skipped_reason)
		VALUES ('eta/skip', 'import_skipped', now(), 'too_many_tags');
		INSERT INTO registry_migration.repositories (path) VALUES ('eta/left')}), '3600.0 1',
	'one skip this very instant: divided by a second');

is(progress_with(q{SET LOCAL work_mem = '4MB'}), '0.0 0', 'nothing at all: rate 0, nothing left to do');
is(progress_with(q{INSERT INTO registry_migration.repositories (path) VALUES ('eta/left')}), '0.0 NULL',
	'nothing finished in the hour: no estimate');

end_test();
