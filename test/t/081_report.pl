# scripts/report on a database with a known event history: the numbers
# behind the chart (--data) are those of the event log at every step —
# counted here forward from each repository's first event, while the report
# walks back from the present counts —, for the whole log and for a later
# window (--since, --step, --last); the chart is a well-formed SVG, or a
# PNG, with the series and the reasons that occurred; it runs with the
# README's grants (section "Watch") and fails clearly without them;
# an empty event log still gives a chart.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use POSIX ();
use Time::Local qw(timegm);
use List::Util;

my $root = "$FindBin::RealBin/../..";
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $node = PostgreSQL::Test::Cluster->new('report');
$node->init;
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }
sql('CREATE EXTENSION registry_migration');

# ---- the history ------------------------------------------------------------------

# Each event: path, old state, new state, cause, event, registry status,
# HTTP status, detail, seconds after the start of the history, and for an
# abort the reason it must be counted under.
my @history = (
	[ 'ok/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 100 ],
	[ 'ok/1', 'pre_importing', 'pre_import_done', 'notification', 'finish_pre_import', 'pre_import_complete', undef, undef, 400 ],
	[ 'ok/1', 'pre_import_done', 'importing', 'enqueuer', 'start_import', undef, 202, undef, 410 ],
	[ 'ok/1', 'importing', 'import_done', 'notification', 'finish_import', 'import_complete', undef, undef, 500 ],
	[ 'dup/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 50 ],
	[ 'dup/1', 'pre_importing', 'import_done', 'guard', 'finish_import', 'import_complete', 200, undef, 350 ],
	[ 'dup/1', 'import_done', 'import_done', 'notification', 'notification', 'import_complete', undef,
		'no change: duplicate, late or already handled', 360 ],
	[ 'flaky/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 200 ],
	[ 'flaky/1', 'pre_importing', 'import_aborted', 'notification', 'abort', 'pre_import_failed', undef, undef, 300,
		'registry_failed' ],
	[ 'flaky/1', 'import_aborted', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 900 ],
	[ 'flaky/1', 'pre_importing', 'pre_import_done', 'notification', 'finish_pre_import', 'pre_import_complete', undef, undef, 1200 ],
	[ 'flaky/1', 'pre_import_done', 'importing', 'enqueuer', 'start_import', undef, 202, undef, 1210 ],
	[ 'flaky/1', 'importing', 'import_done', 'notification', 'finish_import', 'import_complete', undef, undef, 1300 ],
	[ 'stuck/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 150 ],
	[ 'stuck/1', 'pre_importing', 'import_aborted', 'guard', 'abort', undef, 202, 'long-running step canceled', 1000,
		'long_running' ],
	[ 'stuck/1', 'import_aborted', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 1100 ],
	[ 'stuck/1', 'pre_importing', 'import_aborted', 'guard', 'abort', undef, 202, 'long-running step canceled', 1900,
		'long_running' ],
	[ 'stuck/1', 'import_aborted', 'import_skipped', 'guard', 'skip', undef, 202, 'long-running step canceled', 1900.5 ],
	[ 'refused/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 250 ],
	[ 'refused/1', 'pre_importing', 'pre_import_done', 'notification', 'finish_pre_import', 'pre_import_complete', undef, undef, 600 ],
	[ 'refused/1', 'pre_import_done', 'importing', 'enqueuer', 'start_import', undef, 424, 'pre-import required', 610 ],
	[ 'refused/1', 'importing', 'import_aborted', 'enqueuer', 'abort', undef, 424, 'pre-import required', 610.2,
		'start_refused' ],
	[ 'big/1', 'default', 'import_skipped', 'enqueuer', 'skip', undef, 200, 'more than 100 tags', 700 ],
	[ 'busy/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 429,
		'51 consecutive answers "too many imports"', 1500 ],
	[ 'busy/1', 'pre_importing', 'import_aborted', 'enqueuer', 'abort', undef, 429,
		'51 consecutive answers "too many imports"', 1500.1, 'too_many_imports' ],
	[ 'reset/1', 'default', 'import_skipped', 'admin', 'skip', undef, undef, undef, 800 ],
	[ 'reset/1', 'import_skipped', 'default', 'admin', 'reset', undef, undef, undef, 1600 ],
	[ 'err/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 1700 ],
	[ 'err/1', 'pre_importing', 'import_aborted', 'notification', 'abort', 'pre_import_canceled', undef, undef, 1750,
		'registry_canceled' ],
	[ 'err/1', 'import_aborted', 'import_aborted', 'enqueuer', 'retry_failed', undef, undef, 'injected failure', 2000,
		'error' ],
	[ 'running/1', 'default', 'pre_importing', 'enqueuer', 'start_pre_import', undef, 202, undef, 2500 ],
);
my $span = 3000;    # the history began this many seconds ago

# The repositories as the history left them, and two without events: one
# finished before the oldest event kept, one never started.
sql(q{
INSERT INTO registry_migration.repositories (path, state, import_done_at)
VALUES ('ok/1', 'import_done', now()), ('dup/1', 'import_done', now()), ('flaky/1', 'import_done', now()),
       ('old/1', 'import_done', now() - interval '60 days');
INSERT INTO registry_migration.repositories (path, state, skipped_at, skipped_reason, aborted_at, retries_count)
VALUES ('stuck/1', 'import_skipped', now(), 'too_many_retries', now(), 2),
       ('big/1', 'import_skipped', now(), 'too_many_tags', NULL, 0);
INSERT INTO registry_migration.repositories (path, state, aborted_at, retries_count, aborted_in_state)
VALUES ('refused/1', 'import_aborted', now(), 1, 'importing'), ('busy/1', 'import_aborted', now(), 1, 'pre_importing'),
       ('err/1', 'import_aborted', now(), 2, 'pre_importing');
INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
VALUES ('running/1', 'pre_importing', now());
INSERT INTO registry_migration.repositories (path) VALUES ('reset/1'), ('idle/1');
});
sub literal { return defined $_[0] ? "'" . ($_[0] =~ s/'/''/gr) . "'" : 'NULL' }
sql('INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event, registry_status,
	http_status, detail, at) VALUES '
	  . join(",\n", map {
		my ($path, $old, $new, $cause, $event, $status, $http, $detail, $offset) = @$_;
		sprintf(q{((SELECT id FROM registry_migration.repositories WHERE path = %s), %s, %s, %s, %s, %s, %s, %s, %s,
			now() - interval '%d s' + interval '%s s')},
			literal($path), literal($path), literal($old), literal($new), literal($cause), literal($event),
			literal($status), $http // 'NULL', literal($detail), $span, $offset)
	} @history));

# The times the log holds (in the order of @history), and the present states
# of the repositories that have no event.
my @at = split /\n/, sql('SELECT extract(epoch FROM at) FROM registry_migration.events ORDER BY id');
is(scalar(@at), scalar(@history), 'the history is in the event log');
my %quiet = map { split /\|/ } split /\n/, sql(q{SELECT path, state FROM registry_migration.repositories r
	WHERE NOT EXISTS (SELECT FROM registry_migration.events e WHERE e.path = r.path)});
my @reasons = split /\n/, sql('SELECT unnest(enum_range(NULL::registry_migration.abort_reason))');

# ---- the numbers, counted forward from the event log ------------------------------

sub epoch_of
{
	my ($iso) = @_;
	my ($y, $mo, $d, $h, $mi, $s) = $iso =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/ or return undef;
	return timegm($s, $mi, $h, $d, $mo - 1, $y);
}

# The line --data must print for a step ending at $t, for a chart starting
# at $t0: each repository starts in the old state of its first event (or
# its present state), then takes every event before $t (every event, for
# the last line).
sub expected_line
{
	my ($t, $t0, $last) = @_;
	my %state = %quiet;
	my %aborts = map { $_ => 0 } @reasons;
	for my $i (0 .. $#history)
	{
		my ($path, $old, $new) = @{ $history[$i] };
		$state{$path} //= $old;
	}
	for my $i (0 .. $#history)
	{
		next unless $last || $at[$i] < $t;
		my ($path, $old, $new, $reason) = @{ $history[$i] }[ 0, 1, 2, 9 ];
		$state{$path} = $new;
		$aborts{$reason}++ if $reason && $at[$i] >= $t0;
	}
	my %n;
	$n{ $state{$_} }++ for keys %state;
	return join("\t", $n{import_done} // 0, $n{import_skipped} // 0,
		($n{pre_importing} // 0) + ($n{pre_import_done} // 0) + ($n{importing} // 0),
		map { $aborts{$_} } @reasons);
}

sub report
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'bash', "$root/scripts/report", @args, '-h', $node->host, '-p', $node->port ],
		'<', '/dev/null', '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

# Every line of a --data output against the forward count; returns the
# rows (time, epoch) for further checks.
sub check_data
{
	my ($what, $out) = @_;
	my ($header, @lines) = split /\n/, $out;
	is($header, join("\t", 'time', 'done', 'skipped', 'in_process', @reasons), "$what: the header");
	my $t0 = epoch_of((split /\t/, $lines[0] // '')[0] // '');
	my @wrong;
	for my $n (0 .. $#lines)
	{
		my ($time, $rest) = split /\t/, $lines[$n], 2;
		my $t = epoch_of($time);
		my $want = defined $t ? expected_line($t, $t0, $n == $#lines) : 'a time';
		push @wrong, "line $n: $time\t$rest, the event log says $want" unless defined $t && $rest eq $want;
	}
	ok(@lines >= 2 && !@wrong, "$what: all " . scalar(@lines) . ' lines match the event log')
	  or diag(join("\n", @wrong[ 0 .. List::Util::min(4, $#wrong) ]));
	return map { [ (split /\t/)[0], epoch_of((split /\t/)[0]) ] } @lines;
}

# ---- the report's role ----------------------------------------------------------

open(my $readme, '<', "$root/README.md") or die "README.md: $!";
my ($grants) = do { local $/; <$readme> } =~ /^## Watch\n(.*?)^## /ms or die 'no section "Watch"';
close $readme;
my @blocks = grep { /migration_monitoring/ } $grants =~ /```sql\n(.*?)```/gs;
is(scalar(@blocks), 2, "the README: the exporter's grants and the report's");
sql($blocks[0]);
my ($ok, $out, $err) = report('--data', '-d', 'postgres', '-U', 'migration_monitoring');
ok(!$ok && $err =~ /permission denied for table events/,
	'without the report grant it fails: ' . ($err =~ /(ERROR:.*)/ ? $1 : $err));
sql($blocks[1]);
my @as_role = ('-d', 'postgres', '-U', 'migration_monitoring');

# ---- the numbers ------------------------------------------------------------------

my $clock = q{SELECT extract(epoch FROM clock_timestamp())};
my $before = sql($clock);
($ok, $out, $err) = report('--data', @as_role);
my $after = sql($clock);
ok($ok, 'report --data as migration_monitoring') or diag($err);
my @rows = check_data('the whole event log', $out);
my $first_event = sql('SELECT extract(epoch FROM date_trunc(\'second\', min(at))) FROM registry_migration.events');
cmp_ok($rows[0][1], '==', $first_event, 'the chart starts at the oldest event');
my $step = $rows[2][1] - $rows[1][1];
my ($low, $high) = map { POSIX::ceil(($_ - $rows[0][1]) / 100) } $before, $after;
ok($step >= $low && $step <= $high, "the default step is a hundredth of the span, rounded up: $step s");
ok(!(grep { $rows[$_][1] - $rows[ $_ - 1 ][1] != $step } 1 .. $#rows), 'every line is one step after the one before');
like($out, qr/\n[^\n]*\t4\t2\t1\t1\t1\t0\t2\t0\t0\t1\t1\t1\n?$/,
	'the last line holds the present counts (4 done, one of them before the log; 2 skipped; 1 in process) and every abort');

my $since = sql("SELECT to_char(min(at) + interval '1000 s', 'YYYY-MM-DD HH24:MI:SS.US TZH')
	FROM registry_migration.events");
($ok, $out, $err) = report('--data', '--since', $since, '--step', '60', @as_role);
ok($ok, "report --data --since '$since' --step 60") or diag($err);
@rows = check_data('a later window', $out);
is($rows[1][1] - $rows[0][1], 60, '... in steps of 60 s');
like($out, qr/\n[^\n]*\t4\t2\t1\t0\t1\t0\t1\t0\t0\t1\t0\t1\n?$/,
	'... its aborts are those since its start');

($ok, $out, $err) = report('--data', '--last', '10 minutes', @as_role);
@rows = check_data('the last ten minutes', $out);
my $covered = $rows[-1][1] - $rows[0][1];
$step = $rows[1][1] - $rows[0][1];
ok($covered >= 600 && $covered - $step <= 601, "--last '10 minutes' covers 10 minutes, in $step s steps ($covered s)");

($ok, undef, $err) = report('--data', '--step', 'soon', @as_role);
ok(!$ok && $err =~ /--step wants whole seconds/, 'a step that is not a number of seconds is refused');

# ---- the chart --------------------------------------------------------------------

# The root element and all the text of an SVG file, read by an XML parser.
sub svg_text
{
	my ($file) = @_;
	my ($text, $perr) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', '-c',
			'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); '
			  . 'print(r.tag); print(" ".join(" ".join(r.itertext()).split()))', $file ],
		'>', \$text, '2>', \$perr) or return "not XML: $perr";
	return $text;
}

($ok, $out, $err) = report('--output', "$tmp/chart.svg", @as_role);
ok($ok && $out =~ /wrote \Q$tmp\E\/chart.svg/, 'report --output chart.svg') or diag($err);
ok(-s "$tmp/chart.svg" > 1000, 'the SVG is not empty');
my $text = svg_text("$tmp/chart.svg");
like($text, qr/^\{http:\/\/www.w3.org\/2000\/svg\}svg\n/, 'it is well-formed XML with an svg root');
ok(!(grep { index($text, $_) < 0 } 'repositories done and skipped', ' done ', ' skipped ',
	'repositories in process', ' in process ', 'retries spent (aborts) by reason'),
	'it has the three panels and their series');
my @occurred = qw(registry_failed registry_canceled long_running too_many_imports start_refused error);
is_deeply([ grep { $text =~ /\b$_\b/ } @reasons ], [ grep { my $r = $_; grep { $_ eq $r } @occurred } @reasons ],
	'one line per abort reason that occurred, and only those');

($ok, $out, $err) = report('--output', "$tmp/chart.png", @as_role);
ok($ok, 'report --output chart.png') or diag($err);
my $png = slurp_file("$tmp/chart.png");
ok(substr($png, 0, 8) eq "\x89PNG\r\n\x1a\n" && substr($png, 12, 4) eq 'IHDR', 'it is a PNG');
is(join('x', unpack('NN', substr($png, 16, 8))), '1000x900', '... of 1000 by 900 pixels');
is(substr($png, -8, 4), 'IEND', '... complete');

# ---- an empty event log -----------------------------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE empty');
$node->safe_psql('empty', q{CREATE EXTENSION registry_migration;
	INSERT INTO registry_migration.repositories (path) VALUES ('a/b')});
($ok, $out, $err) = report('--data', '-d', 'empty');
my @lines = split /\n/, $out;
ok($ok && @lines == 3 && !(grep { !/^\S+Z(\t0)+$/ } @lines[ 1, 2 ]),
	'an empty event log: the start and one step, all zero') or diag($out . $err);
($ok, $out, $err) = report('--output', "$tmp/empty.svg", '-d', 'empty');
ok($ok && svg_text("$tmp/empty.svg") =~ /no aborts/, 'and a chart that says there were no aborts') or diag($err);

$node->stop;
done_testing();
