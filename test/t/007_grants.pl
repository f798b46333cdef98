# The README's grants (section "Privileges") are enough and are the least
# that work. They are read from the README itself: with them an operator
# role runs every task of a migration (loading repositories, the settings
# and the deny list, both cycles, the look-ups, every intervention, purging
# the event log, the views); without any single one of them some task fails
# with "permission denied"; they read a running worker's status, counters
# included. The notification role's single grant lets it handle a
# notification and nothing else.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;

# One import at a time, with a Retry-After on "too many imports", so that
# a cycle also records a registry-wide back-off.
my $sim = RegistrySimulator->new(pre_import_seconds => 600, import_seconds => 600,
	max_imports => 1, retry_after => 30, cancel_cooldown => 0);

my $node = PostgreSQL::Test::Cluster->new('grants');
$node->init;
$node->append_conf('postgresql.conf',
	"registry_migration.registry_url = '" . $sim->url . "'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION registry_migration;
	CREATE ROLE migration_operator NOLOGIN;
	CREATE ROLE registry_notifications NOLOGIN;
});

# ---- the grants, from the README ------------------------------------------------

sub readme_sql_blocks
{
	open(my $fh, '<', "$FindBin::RealBin/../../README.md") or die "README.md: $!";
	my $text = do { local $/; <$fh> };
	close $fh;
	my ($section) = $text =~ /^## Privileges\n(.*?)^## /ms or die 'no Privileges section';
	return $section =~ /```sql\n(.*?)```/gs;
}

# Split at commas outside parentheses.
sub split_list
{
	my ($list) = @_;
	my (@items, $depth, $item);
	($depth, $item) = (0, '');
	for my $c (split //, $list)
	{
		$depth++ if $c eq '(';
		$depth-- if $c eq ')';
		if ($c eq ',' && $depth == 0) { push @items, $item; $item = ''; next }
		$item .= $c;
	}
	push @items, $item;
	s/^\s+|\s+$//g for @items;
	s/\s+/ /g for @items;
	return @items;
}

# Every (privilege, object) pair a GRANT statement of the blocks gives to role.
sub single_grants
{
	my ($role, @blocks) = @_;
	my @pairs;
	for my $statement (map { split /;/ } @blocks)
	{
		next unless $statement =~ /GRANT\s+(.*?)\s+ON\s+(?:(FUNCTION|PROCEDURE)\s+)?(.*)\s+TO\s+(\w+)\s*$/s;
		next unless $4 eq $role;
		my ($privileges, $routine, $objects) = ($1, $2, $3);
		for my $privilege (split_list($privileges))
		{
			push @pairs, [ $privilege, ($routine ? "$routine " : '') . $_ ] for split_list($objects);
		}
	}
	return @pairs;
}

my @blocks = readme_sql_blocks();
my @operator_grants = single_grants('migration_operator', @blocks);
my @notification_grants = single_grants('registry_notifications', @blocks);
cmp_ok(scalar @operator_grants, '>=', 20, scalar(@operator_grants) . ' operator grants in the README');
is(scalar @notification_grants, 1, 'one grant for the notification role in the README');
$node->safe_psql('postgres', join(";\n", map { s/;\s*$//r } @blocks));

# ---- the operator's tasks -----------------------------------------------------------

my $operator_tasks = q{
\set ON_ERROR_STOP 1
SET ROLE migration_operator;
-- load and tidy the repositories
INSERT INTO registry_migration.repositories (path, created_at)
VALUES ('grant/a', now() - interval '3 minutes'), ('grant/b', now() - interval '2 minutes'),
       ('grant/gone', now());
DELETE FROM registry_migration.repositories WHERE path = 'grant/gone';
-- the deny list and the settings
INSERT INTO registry_migration.denied_namespaces VALUES ('denied');
DELETE FROM registry_migration.denied_namespaces WHERE root_namespace = 'denied';
UPDATE registry_migration.settings SET enabled = true, capacity = 2;
-- both cycles: grant/a starts, grant/b is answered "too many imports"
SELECT registry_migration.run_enqueuer();
SELECT registry_migration.run_guard();
-- the same cycles as procedures (they commit)
CALL registry_migration.enqueue();
CALL registry_migration.guard();
-- the look-ups
SELECT registry_migration.registry_import_status('grant/a');
SELECT registry_migration.registry_tags_count('grant/a');
SELECT * FROM registry_migration.registry_import_statuses(ARRAY['grant/a', 'grant/b']);
SELECT * FROM registry_migration.registry_request('status', 'grant/a');
-- interventions
SELECT registry_migration.cancel('grant/a');
UPDATE registry_migration.registry_state SET retry_after_until = NULL;
SELECT registry_migration.retry('grant/a');
SELECT registry_migration.skip('grant/b', 'not_found');
SELECT registry_migration.reset('grant/b');
SELECT registry_migration.purge_events(10);
-- watching
SELECT * FROM registry_migration.state_counts;
SELECT * FROM registry_migration.progress;
SELECT * FROM registry_migration.worker_status;
SELECT count(*) FROM registry_migration.events;
SELECT retry_after_until FROM registry_migration.registry_state;
SELECT state, retries_count FROM registry_migration.repositories ORDER BY path;
};

# A clean migration and registry before each run of the tasks.
sub reset_migration
{
	$node->safe_psql('postgres', q{
		DELETE FROM registry_migration.repositories;
		DELETE FROM registry_migration.denied_namespaces;
		DELETE FROM registry_migration.events;
		INSERT INTO registry_migration.settings DEFAULT VALUES;
		UPDATE registry_migration.registry_state SET retry_after_until = NULL;
		-- an old event for purge_events to remove
		INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event, at)
		VALUES (0, 'grant/old', 'default', 'import_skipped', 'admin', 'skip', now() - interval '40 days');
	});
	$sim->reset;
	$sim->add_repositories({ path => 'grant/a', tags => 2 }, { path => 'grant/b', tags => 1 });
}

sub run_tasks
{
	reset_migration();
	my ($rc, $out, $err) = $node->psql('postgres', $operator_tasks);
	return ($rc, $out, $err);
}

my ($rc, $out, $err) = run_tasks();
is($rc, 0, 'with the README grants the operator runs every task') or diag($err);
like($out, qr/^(import_aborted|pre_importing)\|1\ndefault\|0$/m,
	'... and the tasks did their work (grant/a canceled and retried, grant/b skipped and reset)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM registry_migration.events WHERE path = 'grant/old'}),
	'0', '... purge_events removed the old event');

like($out, qr/"stopped": "too_many_imports".*"retry_after_until": "2/,
	"... the operator's cycle recorded the registry's Retry-After");
is($node->safe_psql('postgres', q{SELECT string_agg(event, ',' ORDER BY id)
                                  FROM registry_migration.events WHERE path = 'grant/b'}),
	'skip,reset', "... grant/b's history has the operator's skip and reset");

for my $grant (@operator_grants)
{
	my ($privilege, $object) = @$grant;
	$node->safe_psql('postgres', "REVOKE $privilege ON $object FROM migration_operator");
	my ($rc, $out, $err) = run_tasks();
	ok($rc != 0 && $err =~ /permission denied/, "without $privilege on $object a task fails")
	  or diag("exit $rc: $err");
	$node->safe_psql('postgres', "GRANT $privilege ON $object TO migration_operator");
}

# ---- the notification role ---------------------------------------------------------

reset_migration();
$node->safe_psql('postgres', q{
	INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
	VALUES ('grant/notified', 'pre_importing', now())});
($rc, $out, $err) = $node->psql('postgres', q{
	SET ROLE registry_notifications;
	SELECT registry_migration.handle_notification('grant/notified', 'pre_import_complete')});
is($out, 'pre_import_done', 'the notification role handles a notification') or diag($err);
for my $statement (q{SELECT count(*) FROM registry_migration.repositories},
	q{UPDATE registry_migration.repositories SET state = 'import_done', import_done_at = now()},
	q{INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event)
	  VALUES (0, 'x', 'default', 'default', 'admin', 'forged')},
	q{SELECT registry_migration.skip('grant/notified', 'not_found')})
{
	($rc, $out, $err) = $node->psql('postgres', "SET ROLE registry_notifications; $statement");
	like($err, qr/permission denied/, "the notification role cannot: " . ($statement =~ s/\s+/ /gr));
}

# ---- the operator watches a running worker ---------------------------------------
# With a worker running (idle), worker_status has a row: the operator's
# grants read every column of it, the counters included.
$node->append_conf('postgresql.conf', join("\n", "shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'", "registry_migration.worker_enabled = off", ''));
$node->restart;
$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM registry_migration.worker_status})
  or die 'no worker';
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE migration_operator;
	SELECT to_jsonb(w) ?& ARRAY['pid', 'last_error', 'retry_after_until', 'last_error_at', 'cycles', 'answers',
	                            'counters_since']
	       AND jsonb_typeof(cycles) = 'object' AND jsonb_typeof(answers) = 'object'
	       AND counters_since IS NOT NULL
	  FROM registry_migration.worker_status AS w});
is($out, 't', "the operator reads worker_status's row with its counters") or diag($err);

$node->stop;
$sim->stop;
done_testing();
