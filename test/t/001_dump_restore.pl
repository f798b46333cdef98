# pg_dump + restore keeps the migration's data: the settings
# (still exactly one row, with the dumped values), the deny list, the
# repositories with their states, and the identity sequence, so the next
# INSERT works. The event log is not dumped.
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

$node->stop;
done_testing();
