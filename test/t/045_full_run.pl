# A full run of a few thousand repositories with random failures: every
# repository ends imported or skipped, never more than capacity in process,
# and the database agrees with the registry.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use JSON::PP;
use List::Util qw(min);
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_enqueuer_test('full_run');
my $deadline;

my $N = $ENV{FULL_RUN_REPOSITORIES} // 2000;
my $max_tags = 20;
fresh(capacity => 50, max_retries => 3, max_tags_count => $max_tags, max_step_duration => "'0.3 s'",
	pre_import_timeout => "'1 s'", import_timeout => "'1 s'", pre_import_tags_rate => 0,
	guard_batch_size => 500);
srand(20220615);
my (@models, %expected);
# [name, share, simulator model, expected final state, skipped_reason, retries_count]
my @kinds = (
	[ 'pre_failed_once', 0.06, { pre_import_outcomes => [qw(failed complete)] }, 'import_done', undef, 1 ],
	[ 'pre_canceled_once', 0.04, { pre_import_outcomes => [qw(canceled complete)] }, 'import_done', undef, 1 ],
	[ 'pre_hang_once', 0.03, { pre_import_outcomes => [qw(hang complete)] }, 'import_done', undef, 1 ],
	[ 'import_failed_once', 0.05, { import_outcomes => [qw(failed complete)] }, 'import_done', undef, 1 ],
	[ 'import_canceled_once', 0.03, { import_outcomes => [qw(canceled complete)] }, 'import_done', undef, 1 ],
	[ 'import_hang_once', 0.02, { import_outcomes => [qw(hang complete)] }, 'import_done', undef, 1 ],
	[ 'always_failing', 0.02, { pre_import_outcomes => ['failed'] }, 'import_skipped', 'too_many_retries', 3 ],
	[ 'native', 0.01, { native => 1 }, 'import_done', 'native_import', 0 ],
	[ 'missing', 0.01, { exists => 0 }, 'import_done', 'not_found', 0 ],
	[ 'too_many_tags', 0.01, { tags => $max_tags + 1 }, 'import_skipped', 'too_many_tags', 0 ],
	[ 'plain', 1, {}, 'import_done', undef, 0 ],
);
my %kind_count;
for my $i (1 .. $N)
{
	my $x = rand();
	my $kind;
	for my $k (@kinds)
	{
		$kind = $k;
		last if ($x -= $k->[1]) < 0;
	}
	my $path = sprintf('full/g%02d/repo-%05d', $i % 37, $i);
	push @models, { path => $path, tags => int(rand($max_tags + 1)),
		pre_import_seconds => 0.02 + rand(0.03), import_seconds => 0.02 + rand(0.03), %{ $kind->[2] } };
	$expected{$path} = $kind;
	$kind_count{ $kind->[0] }++;
}
note 'full run: ' . join(', ', map { "$_ $kind_count{$_}" } sort keys %kind_count);
$sim->add_repositories(@models);
sql("INSERT INTO registry_migration.repositories (path, created_at)
	SELECT format('full/g%s/repo-%s', to_char(i % 37, 'FM00'), to_char(i, 'FM00000')),
	       '2020-01-01'::timestamptz + i * interval '1 s'
	  FROM generate_series(1, $N) AS i");
# Notifications: most are delivered by calling handle_notification (in order);
# a fifth are lost and the guard has to find out.
my $deliver_fn = q{CREATE FUNCTION pg_temp.deliver(paths text[], statuses text[]) RETURNS int LANGUAGE plpgsql AS $$
	DECLARE refused int := 0;
	BEGIN
		FOR i IN 1 .. coalesce(array_length(paths, 1), 0) LOOP
			BEGIN
				PERFORM registry_migration.handle_notification(paths[i], statuses[i]);
			EXCEPTION WHEN object_not_in_prerequisite_state THEN refused := refused + 1;
			END;
		END LOOP;
		RETURN refused;
	END $$;
};
my ($delivered, $lost, $iterations, @cycle_errors) = (0, 0, 0);
my $full_start = time();
$deadline = time() + 150;
while (time() < $deadline)
{
	my $notes = $sim->notifications;
	$sim->clear_notifications;    # one arriving in between is lost: that happens
	my (@p, @st);
	for my $n (@$notes)
	{
		if (rand() < 0.2) { $lost++; next }
		push @p, $n->{path};
		push @st, $n->{status};
	}
	$delivered += @p;
	my $arr = sub { 'ARRAY[' . join(',', map { quote($_) } @_) . ']::text[]' };
	my @out = split /\n/, sql($deliver_fn . 'SELECT pg_temp.deliver(' . $arr->(@p) . ', ' . $arr->(@st) . ');'
		  . 'SELECT registry_migration.run_enqueuer(); SELECT registry_migration.run_guard();'
		  . q{SELECT count(*) FROM registry_migration.repositories WHERE state NOT IN ('import_done', 'import_skipped')});
	$iterations++;
	for my $summary (map { $json->decode($_) } @out[ 1, 2 ])
	{
		push @cycle_errors, @{ $summary->{errors} };
	}
	last if $out[3] == 0;
	sleep 0.05;
}
my $full_time = time() - $full_start;
note sprintf('full run: %d repositories in %.1f s, %d iterations, %d notifications delivered, %d lost',
	$N, $full_time, $iterations, $delivered, $lost);
is(sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state NOT IN ('import_done', 'import_skipped')}),
	'0', sprintf('full run: every one of %d repositories finished or skipped (%.1f s)', $N, $full_time));
is_deeply(\@cycle_errors, [], 'no cycle reported an error');
is(sql('SELECT count(*) FROM registry_migration.repositories r, registry_migration.settings s
	WHERE r.retries_count > s.max_retries'), '0', 'retries_count never above max_retries');
is(sql(q{SELECT count(*) FROM registry_migration.repositories
	WHERE state = 'import_skipped' AND (skipped_reason IS NULL OR skipped_at IS NULL)}), '0',
	'every skipped repository has a reason and a time');
my %got = map { my @f = split /\|/; $f[0] => [ @f[ 1 .. 3 ] ] }
  split /\n/, sql(q{SELECT path, state, coalesce(skipped_reason::text, ''), retries_count FROM registry_migration.repositories});
my @wrong;
for my $path (sort keys %expected)
{
	my $k = $expected{$path};
	my $want = join(' ', $k->[3], $k->[4] // '', $k->[5]);
	my $have = join(' ', @{ $got{$path} });
	push @wrong, "$path ($k->[0]): expected $want, got $have" if $want ne $have;
}
is(scalar(@wrong), 0, 'each repository ended as its script says: state, reason, and exactly one retry per scripted failure')
  or diag join("\n", @wrong[ 0 .. min(19, $#wrong) ]);
# The event log replays to the final states.
is(sql(q{WITH e AS (
		SELECT repository_id, old_state, new_state, event,
		       lag(new_state) OVER (PARTITION BY repository_id ORDER BY id) AS previous
		  FROM registry_migration.events)
	SELECT count(*) FROM e WHERE old_state <> coalesce(previous, 'default')}), '0',
	'event log: every event starts where the previous one ended (the first from default)');
is(sql(q{SELECT count(*) FROM registry_migration.repositories r
	WHERE r.state <> coalesce((SELECT new_state FROM registry_migration.events e
	                             WHERE e.repository_id = r.id ORDER BY id DESC LIMIT 1), 'default')}), '0',
	'event log: the last event of each repository is its current state');
is(sql(q{SELECT count(*) FROM registry_migration.repositories r
	WHERE r.retries_count <> (SELECT count(*) FROM registry_migration.events e
	                           WHERE e.repository_id = r.id AND e.event IN ('abort', 'retry_failed'))}), '0',
	'event log: one abort event per retry counted');
my $sim_state = $sim->_control('GET', 'state?repositories=0');
cmp_ok($sim_state->{peak_running_steps}, '<=', 50, "the registry never ran more than capacity 50 steps (peak $sim_state->{peak_running_steps})");
is($sim_state->{running_steps}, 0, 'and nothing is left running on the registry');
my $sim_done = $sim->_control('GET', 'repositories');
my @mismatch = grep {
	my $status = $sim_done->{$_}{status} // 'none';
	$got{$_}[0] eq 'import_done' && $got{$_}[1] eq '' && $status ne 'import_complete'
} keys %got;
is(scalar(@mismatch), 0, 'every repository recorded as imported is import_complete on the registry')
  or diag join(', ', @mismatch[ 0 .. min(9, $#mismatch) ]);

end_test();
