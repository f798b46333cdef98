# Upgrading a populated 1.0 database with ALTER EXTENSION ... UPDATE gives
# the same schema, functions and privileges as a fresh install of the
# current version, and keeps every row: repositories with their states and
# counters, settings, deny list, event log, a pending Retry-After, and the
# grants an operator gave to its roles.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'registry_migration'});
isnt($current, '1.0', "the default version ($current) is newer than 1.0");

$node->safe_psql('postgres', q{
	CREATE DATABASE upgraded;
	CREATE DATABASE fresh;
	CREATE ROLE upgrade_operator NOLOGIN;
	CREATE ROLE upgrade_reader NOLOGIN;
	CREATE ROLE "Upgrade Reader" NOLOGIN;
});

# A 1.0 database in the middle of a migration.
$node->safe_psql('upgraded', q{
	CREATE EXTENSION registry_migration VERSION '1.0';
	UPDATE registry_migration.settings
	   SET enabled = true, capacity = 25, max_retries = 7, target_plans = '{gold,silver}',
	       event_retention = '90 days', pre_import_tags_rate = 0.25;
	UPDATE registry_migration.registry_state SET retry_after_until = '2030-01-01 00:00+00';
	INSERT INTO registry_migration.denied_namespaces VALUES ('blocked');
	INSERT INTO registry_migration.repositories (path, plan) VALUES ('group/a', 'gold'), ('group/b', NULL);
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
	    VALUES ('group/running', 'pre_importing', clock_timestamp());
	INSERT INTO registry_migration.repositories (path, state, aborted_at, retries_count,
	                                             aborted_in_state, consecutive_429s)
	    VALUES ('group/aborted', 'import_aborted', clock_timestamp(), 2, 'pre_importing', 4);
	SELECT registry_migration.skip('group/b', 'too_many_tags');
	GRANT SELECT ON registry_migration.repositories TO upgrade_operator;
	GRANT EXECUTE ON FUNCTION registry_migration.run_guard() TO upgrade_operator;
	GRANT SELECT ON registry_migration.worker_status TO upgrade_operator;
	GRANT EXECUTE ON FUNCTION registry_migration.worker_status_internal() TO upgrade_operator;
	GRANT SELECT (pid, activity) ON registry_migration.worker_status TO upgrade_reader;
	GRANT SELECT (last_error) ON registry_migration.worker_status TO "Upgrade Reader" WITH GRANT OPTION;
	GRANT SELECT (since) ON registry_migration.worker_status TO PUBLIC;
});
is($node->safe_psql('upgraded',
		q{SELECT extversion FROM pg_extension WHERE extname = 'registry_migration'}),
	'1.0', 'the database starts at 1.0');

my %queries = (
	repositories => q{SELECT string_agg(r::text, E'\n' ORDER BY id) FROM registry_migration.repositories r},
	settings => q{SELECT count(*) || ' ' || string_agg(s::text, '') FROM registry_migration.settings s},
	deny_list => q{SELECT string_agg(root_namespace, ',') FROM registry_migration.denied_namespaces},
	events => q{SELECT string_agg((e.id, e.repository_id, e.path, e.old_state, e.new_state, e.cause, e.event,
	                               e.registry_status, e.http_status, e.detail, e.at)::text, E'\n' ORDER BY id)
	              FROM registry_migration.events e},
	registry_state => q{SELECT count(*) || ' ' || string_agg(s::text, '') FROM registry_migration.registry_state s},
	sequence => q{SELECT last_value FROM registry_migration.repositories_id_seq},
	grants => q{SELECT has_table_privilege('upgrade_operator', 'registry_migration.repositories', 'SELECT')
	              AND has_function_privilege('upgrade_operator', 'registry_migration.run_guard()', 'EXECUTE')
	              AND has_table_privilege('upgrade_operator', 'registry_migration.worker_status', 'SELECT')
	              AND has_function_privilege('upgrade_operator', 'registry_migration.worker_status_internal()',
	                                         'EXECUTE')},
	column_grants => q{SELECT string_agg(format('%s %s %s%s', c.attname,
	                                            CASE g.grantee WHEN 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END,
	                                            g.privilege_type, CASE WHEN g.is_grantable THEN ' grantable' END),
	                                     ', ' ORDER BY c.attname, g.grantee::regrole::text)
	                     FROM pg_attribute c CROSS JOIN LATERAL aclexplode(c.attacl) g
	                    WHERE c.attrelid = 'registry_migration.worker_status'::regclass});
my %before = map { $_ => $node->safe_psql('upgraded', $queries{$_}) } keys %queries;

$node->safe_psql('upgraded', 'ALTER EXTENSION registry_migration UPDATE');
is($node->safe_psql('upgraded',
		q{SELECT extversion FROM pg_extension WHERE extname = 'registry_migration'}),
	$current, "ALTER EXTENSION ... UPDATE reaches $current");

for my $what (sort keys %queries)
{
	is($node->safe_psql('upgraded', $queries{$what}), $before{$what}, "$what kept by the upgrade");
}

# The extension's own objects, as pg_dump sees them in binary-upgrade mode
# (the only mode that lists an extension's members one by one), without the
# object ids and transaction ids that differ between two databases.
$node->safe_psql('fresh', 'CREATE EXTENSION registry_migration');
sub extension_schema
{
	my ($db) = @_;
	$node->run_log([ 'pg_dump', '--schema-only', '--binary-upgrade', '--no-owner',
			'-d', $node->connstr($db), '-f', $node->basedir . "/$db.sql" ]);
	open(my $fh, '<', $node->basedir . "/$db.sql") or die "no dump of $db: $!";
	# Sequence positions are data, compared above.
	my @lines = grep {
		!/binary_upgrade_set_next|relfrozenxid|WHERE oid = |^\\(un)?restrict |^--|^$|pg_catalog\.setval\(/
	} <$fh>;
	close $fh;
	# The extension's config objects are named by their ids.
	s/binary_upgrade_create_empty_extension\(.*/binary_upgrade_create_empty_extension(...)/ for @lines;
	# The operator's grants exist only in the upgraded database.
	return join('', grep { !/upgrade_(operator|reader)|Upgrade Reader|SELECT\(since\)/ } @lines);
}
my $upgraded_schema = extension_schema('upgraded');
my $fresh_schema = extension_schema('fresh');
like($fresh_schema, qr/CREATE TABLE registry_migration\.repositories/, 'the dump lists the extension members');
ok($upgraded_schema eq $fresh_schema, 'the upgraded schema and privileges equal a fresh install')
  or diag(show_difference($fresh_schema, $upgraded_schema));

sub show_difference
{
	my ($want, $got) = @_;
	my $dir = $node->basedir;
	for (['fresh', $want], ['upgraded', $got])
	{
		open(my $fh, '>', "$dir/$_->[0].filtered") or die;
		print $fh $_->[1];
		close $fh;
	}
	return scalar `diff -u $dir/fresh.filtered $dir/upgraded.filtered`;
}

# worker_status was made again (its function has more columns): the
# operator's grants on it are the operator's, not the extension's initial
# privileges, so an ordinary dump keeps them; and the operator reads it.
my $dump = $node->basedir . '/upgraded-plain.sql';
$node->run_log([ 'pg_dump', '--schema-only', '-d', $node->connstr('upgraded'), '-f', $dump ]);
my $plain = slurp_file($dump);
like($plain, qr/^GRANT SELECT ON TABLE registry_migration\.worker_status TO upgrade_operator;$/m,
	'a dump of the upgraded database keeps the grant on worker_status');
like($plain, qr/^GRANT ALL ON FUNCTION registry_migration\.worker_status_internal\(OUT pid integer.*\) TO upgrade_operator;$/m,
	'... and on worker_status_internal');
like($plain, qr/^GRANT SELECT\(activity\) ON TABLE registry_migration\.worker_status TO upgrade_reader;$/m,
	'... and a grant on one of its columns');
like($plain, qr/^GRANT SELECT\(last_error\) ON TABLE registry_migration\.worker_status TO "Upgrade Reader" WITH GRANT OPTION;$/m,
	'... with its grant option, to a role whose name needs quoting');
like($plain, qr/^GRANT SELECT\(since\) ON TABLE registry_migration\.worker_status TO PUBLIC;$/m, '... and to PUBLIC');
is($node->safe_psql('upgraded', q{SET ROLE upgrade_operator;
	SELECT count(*) FROM registry_migration.worker_status WHERE cycles IS NULL OR answers IS NULL}),
	'0', 'the operator reads worker_status, with its new columns, after the upgrade');

# What 1.1 changed works in the upgraded database.
is($node->safe_psql('upgraded', q{
	SELECT prosecdef FROM pg_proc WHERE oid = 'registry_migration.handle_notification(text, text)'::regprocedure}),
	't', 'handle_notification runs with the owner\'s rights after the upgrade');
my ($rc, $out, $err) = $node->psql('upgraded', 'DELETE FROM registry_migration.registry_state');
like($err, qr/cannot be removed/, 'the registry_state row can no longer be removed');
is($node->safe_psql('upgraded', q{SELECT registry_migration.handle_notification('group/running', 'pre_import_complete')}),
	'pre_import_done', 'a notification is handled after the upgrade');
# The library wrote 1.0's event log before the upgrade (the skip above) and
# writes the skip reason into the column 1.1 adds once the schema is updated.
is($node->safe_psql('upgraded', q{SELECT registry_migration.skip('group/a', 'not_in_plan');
	SELECT string_agg(coalesce(skipped_reason::text, '-'), ',' ORDER BY id)
	  FROM registry_migration.events WHERE event = 'skip'}),
	"import_skipped\n-,not_in_plan", 'skip events: none before the upgrade had a reason, the one after has');

$node->stop;
done_testing();
