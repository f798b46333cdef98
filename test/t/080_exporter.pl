# The postgres_exporter queries of monitoring/: Debian's
# prometheus-postgres-exporter, connected as a role with only the grants the
# README gives in "Watch" (read from there), serves every metric of
# the file with the values the views and the event log hold — repositories
# by state, progress, the worker's status (running, healthy, with an error,
# or not running) and its counters, retries spent in the last hour by
# reason and a pending Retry-After — and without any single one of those
# grants a query fails.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use HTTP::Tiny;
use IPC::Run;
use List::Util;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $root = "$FindBin::RealBin/../..";
my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
-x $exporter_bin or die "$exporter_bin is missing: scripts/setup installs prometheus-postgres-exporter";

# A worker that runs a cycle every half second, with nothing to do: the
# migration is not enabled and no step is stale.
my $node = PostgreSQL::Test::Cluster->new('exporter');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	"registry_migration.database = 'postgres'",
	"registry_migration.guard_interval = '500ms'",
	"registry_migration.enqueue_interval = '500ms'", ''));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]) }

sql(q{CREATE EXTENSION registry_migration;
	UPDATE registry_migration.settings SET max_step_duration = '1 day';});

# ---- repositories in every state, and an event log ---------------------------

sql(q{
INSERT INTO registry_migration.repositories (path) VALUES ('d/1'), ('d/2'), ('d/3');
INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
VALUES ('p/1', 'pre_importing', now());
INSERT INTO registry_migration.repositories (path, state, pre_import_started_at, pre_import_done_at)
VALUES ('p/2', 'pre_import_done', now(), now());
INSERT INTO registry_migration.repositories (path, state, pre_import_started_at, pre_import_done_at, import_started_at)
VALUES ('i/1', 'importing', now(), now(), now()), ('i/2', 'importing', now(), now(), now());
INSERT INTO registry_migration.repositories (path, state, aborted_at, retries_count, aborted_in_state)
VALUES ('a/1', 'import_aborted', now(), 1, 'pre_importing');
INSERT INTO registry_migration.repositories (path, state, import_done_at)
VALUES ('f/1', 'import_done', now() - interval '10 min'), ('f/2', 'import_done', now() - interval '40 min'),
       ('f/3', 'import_done', now() - interval '3 hours'), ('f/4', 'import_done', now() - interval '4 hours');
INSERT INTO registry_migration.repositories (path, state, skipped_at, skipped_reason)
VALUES ('s/1', 'import_skipped', now() - interval '20 min', 'too_many_tags'),
       ('s/2', 'import_skipped', now() - interval '5 hours', 'not_found');
-- Aborts as the cycles and notifications record them, and other events.
INSERT INTO registry_migration.events
       (repository_id, path, old_state, new_state, cause, event, registry_status, http_status, detail, at)
VALUES (1, 'x/1', 'pre_importing', 'import_aborted', 'notification', 'abort', 'pre_import_failed', NULL, NULL,
        now() - interval '10 min'),
       (2, 'x/2', 'importing', 'import_aborted', 'notification', 'abort', 'import_failed', NULL, NULL,
        now() - interval '20 min'),
       (3, 'x/3', 'pre_importing', 'import_aborted', 'guard', 'abort', NULL, 202, 'long-running step canceled',
        now() - interval '5 min'),
       (4, 'x/4', 'pre_importing', 'import_aborted', 'enqueuer', 'abort', NULL, 429,
        '51 consecutive answers "too many imports"', now() - interval '30 min'),
       (5, 'x/5', 'import_aborted', 'import_aborted', 'enqueuer', 'retry_failed', NULL, NULL,
        'injected failure', now() - interval '15 min'),
       (6, 'x/6', 'pre_importing', 'import_aborted', 'notification', 'abort', 'pre_import_failed', NULL, NULL,
        now() - interval '2 hours'),
       (7, 'x/7', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', NULL, 202, NULL,
        now() - interval '3 min'),
       (8, 'x/8', 'pre_importing', 'pre_importing', 'notification', 'notification', 'pre_import_failed', NULL,
        'no change: duplicate, late or already handled', now() - interval '3 min');
UPDATE registry_migration.registry_state SET retry_after_until = now() + interval '1 hour';
});

# ---- the monitoring role, with the README's grants ----------------------------

sub readme_sql_blocks
{
	open(my $fh, '<', "$root/README.md") or die "README.md: $!";
	my $text = do { local $/; <$fh> };
	close $fh;
	my ($section) = $text =~ /^## Watch\n(.*?)^## /ms or die 'no section "Watch"';
	return $section =~ /```sql\n(.*?)```/gs;
}
my ($exporter_grants) = grep { /CREATE ROLE migration_monitoring/ } readme_sql_blocks();
like($exporter_grants, qr/CREATE ROLE migration_monitoring LOGIN/, 'the README creates the role');
sql($exporter_grants);

# Each single grant of the block, as (privilege, object) pairs.
my @single_grants;
for my $statement (split /;/, $exporter_grants)
{
	next unless $statement =~ /GRANT\s+(\w+)\s+ON\s+(FUNCTION\s+)?(.*?)\s+TO\s+migration_monitoring/s;
	my ($privilege, $kind, $objects) = ($1, $2 // '', $3);
	push @single_grants, [ $privilege, "$kind$_" ] for split /\s*,\s*/, $objects;
}
is(scalar(@single_grants), 6, 'six single grants: five relations and one function');

# ---- the exporter -----------------------------------------------------------------

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $queries = "$root/monitoring/registry_migration_queries.yaml";
my $exporter_log = $node->basedir . '/exporter.log';
my $exporter;
{
	local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d dbname=postgres user=migration_monitoring sslmode=disable',
		$node->host, $node->port);
	$exporter = IPC::Run::start([ $exporter_bin, "--web.listen-address=127.0.0.1:$port",
			"--extend.query-path=$queries", '--disable-default-metrics', '--disable-settings-metrics',
			'--no-collector.database', '--no-collector.bgwriter' ],
		'<', '/dev/null', '>', $exporter_log, '2>&1');
}
END { $exporter->kill_kill if $exporter }

my $http = HTTP::Tiny->new(timeout => 10);

# One scrape of /metrics: { "name{label=value,...}" => value }, without the
# exporter's "server" label; undef when the exporter does not answer.
sub scrape
{
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	return undef unless $r->{success};
	my %metrics;
	for my $line (split /\n/, $r->{content})
	{
		next if $line =~ /^#/ || $line !~ /^(\w+)(?:\{(.*)\})?\s+(\S+)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		delete $l{server};
		my $key = $name . (%l ? '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}' : '');
		$metrics{$key} = $value;
	}
	return \%metrics;
}

# Scrapes until $check accepts one (the exporter starting, a server
# restarting); returns the last scrape.
sub scrape_until
{
	my ($check) = @_;
	my $m;
	for (1 .. 300)
	{
		$m = scrape();
		return $m if $m && $check->($m);
		sleep 0.1;
	}
	return $m // {};
}

sub families
{
	my ($m) = @_;
	my %f = map { /^(registry_migration_\w+)/ ? ($1 => 1) : () } keys %$m;
	return [ sort keys %f ];
}

my $m = scrape_until(sub { ($_[0]{pg_up} // 0) == 1 && ($_[0]{registry_migration_worker_running} // 0) == 1 });
is($m->{pg_up}, 1, 'the exporter connects as migration_monitoring');
my ($load_error) = grep { /^pg_exporter_user_queries_load_error\{.*\Q$queries\E/ } keys %$m;
is($load_error && $m->{$load_error}, 0, 'the queries file loads');
is($m->{pg_exporter_last_scrape_error}, 0, 'every query runs with these grants');

my @reasons = split /\n/, sql(q{SELECT unnest(enum_range(NULL::registry_migration.abort_reason))});
my @states = split /\n/, sql(q{SELECT unnest(enum_range(NULL::registry_migration.migration_state))});
is_deeply(families($m), [ sort(
	'registry_migration_repositories',
	(map { "registry_migration_progress_$_" } qw(done skipped remaining in_process recent_rate_per_hour
		estimated_seconds_to_finish)),
	(map { "registry_migration_worker_$_" } qw(running last_guard_timestamp_seconds last_guard_duration_seconds
		last_enqueue_timestamp_seconds last_enqueue_duration_seconds last_error last_error_timestamp_seconds
		counters_since_timestamp_seconds cycles_total)),
	'registry_migration_registry_answers_total',
	'registry_migration_aborts_last_hour', 'registry_migration_retry_after_seconds') ],
	'the metric names');

# ---- repositories by state ------------------------------------------------------

my %expected_states = (default => 3, pre_importing => 1, pre_import_done => 1, importing => 2,
	import_done => 4, import_aborted => 1, import_skipped => 2);
is_deeply({ map { $_ => $m->{"registry_migration_repositories{state=$_}"} } @states }, \%expected_states,
	'repositories by state, one series per state');

# ---- progress --------------------------------------------------------------------

is_deeply([ map { $m->{"registry_migration_progress_$_"} } qw(done skipped remaining in_process) ],
	[ 4, 2, 4, 4 ], 'done, skipped, remaining, in process');

# The rate falls and the estimate grows as time passes: the scraped values
# lie between those of the view just before and just after the scrape.
sub progress_now
{
	return split /\|/, sql(q{SELECT recent_rate_per_hour, extract(epoch FROM estimated_time_to_finish)
		FROM registry_migration.progress});
}
my ($rate_before, $eta_before) = progress_now();
$m = scrape();
my ($rate_after, $eta_after) = progress_now();
my $rate = $m->{registry_migration_progress_recent_rate_per_hour};
my $eta = $m->{registry_migration_progress_estimated_seconds_to_finish};
ok($rate <= $rate_before && $rate >= $rate_after,
	"recent rate $rate per hour, as the view shows ($rate_after to $rate_before)");
ok($eta >= $eta_before && $eta <= $eta_after,
	"estimated $eta s to finish, as the view shows ($eta_before to $eta_after)");
cmp_ok($rate, '>', 0, 'three repositories finished in the last hour');

# ---- retries spent in the last hour, by reason -----------------------------------

my %expected_aborts = map { $_ => 0 } @reasons;
%expected_aborts = (%expected_aborts, registry_failed => 2, long_running => 1, too_many_imports => 1, error => 1);
is_deeply({ map { $_ => $m->{"registry_migration_aborts_last_hour{reason=$_}"} } @reasons }, \%expected_aborts,
	'aborts of the last hour by reason, zeros included; older aborts and other events are not counted');

# ---- Retry-After ------------------------------------------------------------------

sub retry_after_between
{
	my ($what) = @_;
	my $until = sql(q{SELECT coalesce(extract(epoch FROM retry_after_until), 0) FROM registry_migration.registry_state});
	my $before = sql('SELECT extract(epoch FROM clock_timestamp())');
	my $seconds = scrape()->{registry_migration_retry_after_seconds};
	my $after = sql('SELECT extract(epoch FROM clock_timestamp())');
	my ($low, $high) = map { $until > 0 ? List::Util::max(0, $until - $_) : 0 } $after, $before;
	ok($seconds >= $low - 0.001 && $seconds <= $high + 0.001,
		sprintf('%s: %s seconds (between %.3f and %.3f)', $what, $seconds, $low, $high));
}
retry_after_between('a Retry-After an hour ahead');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = now() - interval '1 min'});
retry_after_between('a Retry-After that has passed is 0');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = NULL});
retry_after_between('no Retry-After is 0');

# ---- the worker -------------------------------------------------------------------

# A scrape and what $view read just before it, the same just after: a
# cycle that ran in between makes it try again. Returns (view, scrape).
sub scrape_between
{
	my ($view) = @_;
	my ($before, $after, $scraped);
	for (1 .. 50)
	{
		$before = sql($view);
		$scraped = scrape();
		$after = sql($view);
		last if $before eq $after && $scraped && $scraped->{pg_up};
	}
	return ($before, $scraped);
}

# The worker's metrics against worker_status.
sub worker_matches
{
	my ($what) = @_;
	my ($before, $scraped) = scrape_between(q{SELECT array_to_string(ARRAY[count(pid),
		extract(epoch FROM max(last_guard_at)), max(last_guard_ms) / 1000,
		extract(epoch FROM max(last_enqueue_at)), max(last_enqueue_ms) / 1000,
		count(last_error), extract(epoch FROM max(last_error_at)), extract(epoch FROM max(counters_since))],
		' ', '')
		FROM registry_migration.worker_status});
	my @v = split / /, $before, -1;
	my @names = qw(running last_guard_timestamp_seconds last_guard_duration_seconds
		last_enqueue_timestamp_seconds last_enqueue_duration_seconds last_error last_error_timestamp_seconds
		counters_since_timestamp_seconds);
	my @got = map { $scraped->{"registry_migration_worker_$_"} } @names;
	my $same = 1;
	for my $i (0 .. $#names)
	{
		my ($want, $have) = ($v[$i] // '', $got[$i] // 'missing');
		$want = 'NaN' if $want eq '' || ($names[$i] eq 'last_error' && $v[0] == 0);
		my $equal = $want eq 'NaN' ? $have eq 'NaN' : ($have ne 'NaN' && abs($have - $want) < 0.001);
		diag("$names[$i]: scraped $have, worker_status $want") unless $equal;
		$same &&= $equal;
	}
	ok($same, "$what: " . join(', ', map { "$names[$_] $got[$_]" } 0 .. $#names));
	return $scraped;
}

$node->poll_query_until('postgres', q{SELECT last_guard_at IS NOT NULL AND last_enqueue_at IS NOT NULL
	FROM registry_migration.worker_status}) or die 'the worker ran no cycle';
$m = worker_matches('a running worker');
is($m->{registry_migration_worker_running}, 1, 'running: 1');
is($m->{registry_migration_worker_last_error}, 0, 'no error: 0');

# The worker's counters: one series per kind and way a cycle ended, and per
# class of answer, with worker_status's values; none when no worker runs.
sub counters_match
{
	my ($what) = @_;
	my ($before, $scraped) = scrape_between(q{SELECT coalesce(string_agg(name || '=' || value, ' '
		ORDER BY name), '') FROM (
		SELECT 'registry_migration_worker_cycles_total{kind=' || k.key || ',stopped=' || o.key || '}' AS name,
		       o.value
		  FROM registry_migration.worker_status AS w, jsonb_each(w.cycles) AS k, jsonb_each_text(k.value) AS o
		UNION ALL
		SELECT 'registry_migration_registry_answers_total{class=' || a.key || '}', a.value
		  FROM registry_migration.worker_status AS w, jsonb_each_text(w.answers) AS a) AS c});
	my %want = map { split /=(?=\d+$)/ } split / /, $before;
	my %got = map { $_ => $scraped->{$_} }
	  grep { /^registry_migration_(worker_cycles|registry_answers)_total/ } keys %$scraped;
	is_deeply(\%got, \%want, "$what: the counters' series and values are worker_status's")
	  or diag(explain({ scraped => \%got, worker_status => \%want }));
	return \%got;
}
# Idle, the worker keeps its counters still (a scrape takes longer than the
# time between two cycles).
$node->append_conf('postgresql.conf', "registry_migration.worker_enabled = off\n");
$node->reload;
$node->poll_query_until('postgres', q{SELECT activity LIKE 'idle: %' FROM registry_migration.worker_status})
  or die 'the worker does not idle';
my $counters = counters_match('a running worker');
is(scalar(grep { /cycles_total/ } keys %$counters), 12, 'twelve cycle series: 3 for the guard, 9 for the enqueuer');
is(scalar(grep { /answers_total/ } keys %$counters), 12, 'twelve answer classes');
cmp_ok($counters->{'registry_migration_worker_cycles_total{kind=guard,stopped=ran}'}, '>', 0,
	'the guard cycles that ran are counted');
cmp_ok($counters->{'registry_migration_worker_cycles_total{kind=enqueue,stopped=disabled}'}, '>', 0,
	'the enqueue cycles of a migration not enabled are counted');

# A worker that cannot connect as its role reports an error.
$node->append_conf('postgresql.conf',
	"registry_migration.worker_enabled = on\nregistry_migration.worker_role = 'pg_monitor'\n");
$node->restart;
$node->poll_query_until('postgres', q{SELECT last_error IS NOT NULL FROM registry_migration.worker_status})
  or die 'no worker error';
scrape_until(sub { ($_[0]{registry_migration_worker_last_error} // '') eq '1' });
$m = worker_matches('a worker with an error');
is($m->{registry_migration_worker_last_error}, 1, 'an error: 1');

# No worker at all: running 0, the rest NaN.
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''\n");
$node->restart;
$m = scrape_until(sub { ($_[0]{registry_migration_worker_running} // '') eq '0' });
$m = worker_matches('no worker');
is($m->{registry_migration_worker_running}, 0, 'running: 0');
is_deeply(counters_match('no worker'), {}, 'no worker: no counter series');

# ---- each grant is needed ---------------------------------------------------------

$m = scrape();
is($m->{pg_exporter_last_scrape_error}, 0, 'with every grant no query fails');
my $all = families($m);
for my $grant (@single_grants)
{
	my ($privilege, $object) = @$grant;
	sql("REVOKE $privilege ON $object FROM migration_monitoring");
	my $without = scrape();
	my %left = map { $_ => 1 } @{ families($without) };
	my @lost = grep { !$left{$_} } @$all;
	ok($without->{pg_exporter_last_scrape_error} == 1 && @lost > 0,
		"without $privilege on $object a query fails (lost: @lost)");
	sql("GRANT $privilege ON $object TO migration_monitoring");
}
is_deeply(families(scrape()), $all, 'with the grants back every metric is there again');

$exporter->kill_kill;
$exporter = undef;
$node->stop;
done_testing();
