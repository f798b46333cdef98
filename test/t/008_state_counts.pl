# The per-state counts under concurrent writers: eight sessions insert,
# change states (one row or twenty at a time, at READ COMMITTED and at
# REPEATABLE READ), delete, upsert, roll back to savepoints, truncate, fold
# and read the views at the same time. Every read compares both views with a
# full count in the same snapshot (a difference divides by zero and fails the
# run), and at the end the counts match the table with nothing to recount.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('counts');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION registry_migration;
	INSERT INTO registry_migration.repositories (path)
	SELECT 'c/seed' || i FROM generate_series(1, 2000) AS i;
	-- The views' answers against a full count, in one snapshot.
	CREATE FUNCTION public.counts_agree() RETURNS boolean LANGUAGE sql AS $$
	    SELECT (SELECT array_agg(repositories ORDER BY state) FROM registry_migration.state_counts)
	         = (SELECT array_agg(count ORDER BY state)
	              FROM (SELECT s.state, count(r.id)
	                      FROM unnest(enum_range(NULL::registry_migration.migration_state)) AS s(state)
	                      LEFT JOIN registry_migration.repositories AS r ON r.state = s.state
	                     GROUP BY s.state) AS f)
	       AND (SELECT (done, skipped, remaining, in_process) FROM registry_migration.progress)
	         = (SELECT (count(*) FILTER (WHERE state = 'import_done'),
	                    count(*) FILTER (WHERE state = 'import_skipped'),
	                    count(*) FILTER (WHERE state IN ('default', 'import_aborted')),
	                    count(*) FILTER (WHERE state IN ('pre_importing', 'pre_import_done', 'importing')))
	              FROM registry_migration.repositories)
	$$;
});

# Sets up to $rows rows from a random place to state number :s (1 = default,
# ..., 7 = import_skipped), with every timestamp its invariant wants.
sub change_states
{
	my ($rows) = @_;
	return qq{
UPDATE registry_migration.repositories
   SET state = (enum_range(NULL::registry_migration.migration_state))[:s],
       pre_import_started_at = now(),
       pre_import_done_at = CASE WHEN :s = 2 THEN NULL ELSE now() END,
       import_started_at = now(),
       import_done_at = CASE WHEN :s = 4 THEN NULL ELSE now() - random() * interval '2 hours' END,
       aborted_at = now(), retries_count = 1,
       skipped_at = now() - random() * interval '2 hours', skipped_reason = 'not_found'
 WHERE id >= (SELECT max(id) * random() FROM registry_migration.repositories)
   AND id IN (SELECT id FROM registry_migration.repositories ORDER BY id LIMIT 1000000)
   AND id < (SELECT max(id) * random() FROM registry_migration.repositories) + $rows;
};
}

my %scripts = (
	'counts_insert@15' => q{
\set n random(1, 1000000000)
INSERT INTO registry_migration.repositories (path)
SELECT 'c/i' || :n || '-' || i FROM generate_series(1, 1 + :n % 30) AS i
ON CONFLICT (path) DO NOTHING;
},
	'counts_upsert@5' => q{
\set n random(1, 3000)
INSERT INTO registry_migration.repositories (path, state, skipped_at, skipped_reason)
VALUES ('c/seed' || :n, 'import_skipped', now(), 'not_found')
ON CONFLICT (path) DO UPDATE SET state = 'default';
},
	'counts_one@25' => "\\set s random(1, 7)\n" . change_states(1),
	'counts_many@10' => "\\set s random(1, 7)\n" . change_states(20),
	'counts_repeatable_read@10' => "\\set s random(1, 7)\nBEGIN ISOLATION LEVEL REPEATABLE READ;\n"
	  . change_states(5) . "COMMIT;\n",
	'counts_delete@10' => q{
DELETE FROM registry_migration.repositories
 WHERE id >= (SELECT max(id) * random() FROM registry_migration.repositories)
   AND id < (SELECT max(id) * random() FROM registry_migration.repositories) + 5;
},
	'counts_savepoint@10' => "\\set s random(1, 7)\n\\set keep random(0, 1)\nBEGIN;\n"
	  . change_states(3)
	  . "SAVEPOINT a;\nDELETE FROM registry_migration.repositories WHERE id % 7 = :s;\n"
	  . "ROLLBACK TO SAVEPOINT a;\n"
	  . "INSERT INTO registry_migration.repositories (path) VALUES ('c/sp' || random());\n"
	  . "\\if :keep\nCOMMIT;\n\\else\nROLLBACK;\n\\endif\n",
	'counts_fold@5' => "SELECT registry_migration.fold_state_counts();\n",
	'counts_truncate@1' => q{
\set n random(1, 10)
\if :n = 1
TRUNCATE registry_migration.repositories;
INSERT INTO registry_migration.repositories (path)
SELECT 'c/t' || random() || i FROM generate_series(1, 300) AS i;
\endif
},
	'counts_read@10' => q{
SELECT 1 / public.counts_agree()::integer;
});

$node->pgbench('--no-vacuum --client=8 --jobs=4 --transactions=300 --max-tries=20',
	0, [qr{processed: 2400/2400}], [qr{^$}],
	'concurrent writers, folds and readers: every read agreed with a full count',
	\%scripts);

is($node->safe_psql('postgres', 'SELECT public.counts_agree()'), 't',
	'after the run the views answer what a full count answers');
is($node->safe_psql('postgres', 'SELECT count(*) FROM registry_migration.recount_states()'), '0',
	'nothing to recount');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM registry_migration.state_count_deltas'),
	'<', 300, 'the writers folded the deltas as they went');

$node->stop;
done_testing();
