# pg_dump + restore keeps the migration's data: the settings
# (still exactly one row, with the dumped values), the deny list, the
# repositories with their states, and the identity sequence, so the next
# INSERT works. The event log is not dumped. The per-state counts are not
# dumped either: the restore's COPY counts the rows again, once; a data-only
# restore with triggers disabled counts nothing, and recount_states()
# repairs that.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION registry_migration;
	UPDATE registry_migration.settings
	   SET enabled = true, capacity = 25, max_retries = 7, target_plans = '{gold,silver}',
	       created_before = '2022-06-01 00:00+00', pre_import_tags_rate = 0.25;
	INSERT INTO registry_migration.denied_namespaces VALUES ('blocked'), ('evil');
	INSERT INTO registry_migration.repositories (path, plan) VALUES
	    ('group/a', 'gold'), ('group/b', NULL), ('blocked/c', 'free');
	INSERT INTO registry_migration.repositories (path, state, aborted_at, retries_count,
	                                             aborted_in_state)
	    VALUES ('group/aborted', 'import_aborted', clock_timestamp(), 2, 'pre_importing');
	SELECT registry_migration.skip('group/b', 'too_many_tags');
});

my $repositories_query = q{
	SELECT string_agg(format('%s %s %s %s %s %s', id, path, root_namespace, coalesce(plan, '-'),
	                         state, coalesce(skipped_reason::text, '-')), ', ' ORDER BY id)
	  FROM registry_migration.repositories};
my $settings_query = q{
	SELECT count(*), string_agg(s::text, '') FROM registry_migration.settings s};
my $deny_query = q{
	SELECT string_agg(root_namespace, ',' ORDER BY 1) FROM registry_migration.denied_namespaces};

# The views against a full count of the table. The rate and the estimate
# are measured over the time since the work of the last hour began, so they
# move with the clock between two queries: they are compared as there
# (a rate and an estimate) or not.
my $counts_query = q{
	SELECT (SELECT string_agg(state || '=' || repositories, ',' ORDER BY state)
	          FROM registry_migration.state_counts)
	       || ' ' || (SELECT (done, skipped, remaining, in_process, recent_rate_per_hour > 0,
	                          estimated_time_to_finish IS NOT NULL)::text
	                    FROM registry_migration.progress AS p)};
my $full_counts_query = q{
	SELECT (SELECT string_agg(s.state || '=' || (SELECT count(*) FROM registry_migration.repositories AS r
	                                             WHERE r.state = s.state), ',' ORDER BY s.state)
	          FROM unnest(enum_range(NULL::registry_migration.migration_state)) AS s(state))};

my %before = map { $_ => $node->safe_psql('postgres', $_) }
  ($repositories_query, $settings_query, $deny_query);
like($before{$settings_query}, qr/^1\|.*\{gold,silver\}/, 'settings changed before the dump');

# Both dump formats: plain SQL through psql, and custom through pg_restore.
my $plain = $node->basedir . '/plain.sql';
my $custom = $node->basedir . '/custom.dump';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $plain ], 'plain dump');
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('postgres'), '-f', $custom ],
	'custom dump');

$node->safe_psql('postgres', 'CREATE DATABASE from_plain; CREATE DATABASE from_custom;');
$node->command_ok(
	[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-q', '-d', $node->connstr('from_plain'), '-f', $plain ],
	'plain restore');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('from_custom'), $custom ],
	'custom restore');

for my $db ('from_plain', 'from_custom')
{
	for my $query ($repositories_query, $settings_query, $deny_query)
	{
		is($node->safe_psql($db, $query), $before{$query}, "$db: same data after restore");
	}
	my $counts = $node->safe_psql($db, $counts_query);
	is($counts, $node->safe_psql('postgres', $counts_query), "$db: the views answer as before the dump");
	like($counts, qr/^\Q@{[$node->safe_psql($db, $full_counts_query)]}\E /,
		"$db: state_counts is the full count, nothing counted twice");
	is($node->safe_psql($db, 'SELECT count(*) FROM registry_migration.recount_states()'),
		'0', "$db: nothing to recount");
	is($node->safe_psql($db, 'SELECT count(*) FROM registry_migration.events'),
		'0', "$db: the event log is not dumped");

	my $max_id = $node->safe_psql($db, 'SELECT max(id) FROM registry_migration.repositories');
	my $new_id = $node->safe_psql($db,
		q{INSERT INTO registry_migration.repositories (path) VALUES ('group/new') RETURNING id});
	cmp_ok($new_id, '>', $max_id, "$db: the identity sequence continues after the dumped rows");

	# The restored settings row is still the only one and still refuses a second.
	$node->safe_psql($db, 'INSERT INTO registry_migration.settings (capacity) VALUES (3)');
	is($node->safe_psql($db, 'SELECT count(*), max(capacity) FROM registry_migration.settings'),
		'1|3', "$db: an INSERT into settings still replaces the single row");
}

# A data-only restore of the repositories with triggers disabled counts
# nothing; recount_states() reports and repairs it.
my $data = $node->basedir . '/data.sql';
$node->command_ok(
	[ 'pg_dump', '--data-only', '--disable-triggers', '-t', 'registry_migration.repositories',
	  '-d', $node->connstr('postgres'), '-f', $data ],
	'data-only dump of the repositories');
$node->safe_psql('postgres', 'CREATE DATABASE data_only');
$node->safe_psql('data_only', 'CREATE EXTENSION registry_migration');
$node->command_ok(
	[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-q', '-d', $node->connstr('data_only'), '-f', $data ],
	'data-only restore with triggers disabled');
is($node->safe_psql('data_only', $repositories_query), $before{$repositories_query},
	'data_only: same repositories');
isnt($node->safe_psql('data_only', $counts_query), $node->safe_psql('postgres', $counts_query),
	'data_only: the counts miss the rows loaded with triggers disabled');
is($node->safe_psql('data_only', q{
	SELECT string_agg(format('%s %s %s', state, recorded, counted), ', ' ORDER BY state)
	  FROM registry_migration.recount_states()}),
	'default 0 2, import_aborted 0 1, import_skipped 0 1',
	'data_only: recount_states() reports what was missing');
is($node->safe_psql('data_only', $counts_query), $node->safe_psql('postgres', $counts_query),
	'data_only: after the recount the views answer as before the dump');

$node->stop;
done_testing();
