# The fuzzer's values: SQL literal helpers, the path grammar, and the pools
# its arguments and hostile rows are drawn from (malformed and odd-but-valid
# paths, statuses, numbers at their limits, hostile values per column type,
# the settings and repositories a round starts from). Plain data: nothing
# here draws a random number.
package SqlFuzz::Values;

use strict;
use warnings;
use Exporter 'import';
use SqlFuzz::Surface;

our @EXPORT = qw(
  lit ago qi path_valid hostile_values
  @SIM_REPOS @KNOWN_PATHS @UNKNOWN_PATHS
  @BAD_PATH_LITERALS @BAD_PATH_EXPRS $HUGE_PATH @ODD_VALID_PATHS
  @NOTIFY_STATUSES @REGISTRY_STATUSES @BAD_STATUSES @CALLS @INTS @BIGINTS @HOSTILE_TS
  %SANE_SETTINGS %RANDOM_SETTINGS @FIXED_ROWS @ROW_COLUMNS
);

# ---- SQL literals and values ----------------------------------------------------

# A SQL literal of any string (E'' with escapes for control characters).
sub lit
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	if ($s =~ /[\x00-\x1f\x7f\\]/)
	{
		(my $e = $s) =~ s/([\x00-\x1f\x7f\\'])/sprintf('\\x%02x', ord $1)/ge;
		return "E'$e'";
	}
	(my $q = $s) =~ s/'/''/g;
	return "'$q'";
}
sub ago { return "now() - interval '$_[0]'" }
sub qi { my ($n) = @_; return $n =~ /^[a-z_][a-z0-9_]*$/ ? $n : do { (my $q = $n) =~ s/"/""/g; "\"$q\"" } }

# The grammar a repository path must follow (the extension answers 22023
# for anything else).
sub path_valid
{
	my ($p) = @_;
	return length($p) <= 255
	  && $p =~ m{^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*\z} ? 1 : 0;
}

# ---- argument pools ------------------------------------------------------------------

# Malformed paths: literal ones, and expressions (huge ones are rare).
our @BAD_PATH_LITERALS = ('', '.', '..', '../x', 'a/..', 'a/../b', 'a/./b', 'a//b', '/a', 'a/', '/',
	'%2e%2e', 'a/%2e%2e/b', 'a%2fb', '%2F', 'A', 'Group/Image', 'fz/Known-0', 'FZ/KNOWN-0', 'a..b',
	'a-', '-a', '_a', 'a_', 'a.-b', 'a___b', 'a b', ' a', 'a ', 'a?b', 'a#b', 'a;b', "a'b", 'a"b',
	'a\\b', 'a:b', 'a@b', 'a*', 'a&b=c', 'http://x/y', "caf\xc3\xa9", "\xef\xbd\x81",
	"a\xe2\x80\x8bb", "\xd0\xb0", "a\x01b", "a\tb", "a\nb", "a\x7fb", "a\n", "\x1b[31m",
	'a' x 256, ('a/' x 127) . 'ab', 'fz/known-0/', '/fz/known-0', 'fz/known-0?x=1');
our @BAD_PATH_EXPRS = ("repeat('/', 3000)", "repeat('a/', 3000) || 'a'", "repeat('a/', 3000)",
	"repeat('..', 200)", "repeat('%2e', 100)");
our $HUGE_PATH = "repeat('a', 1048576)";
die 'a "bad" path is valid' if grep { path_valid($_) } @BAD_PATH_LITERALS;
our @ODD_VALID_PATHS = ('a', '0', 'a-b', 'a--b', 'a__b', 'a.b', 'a_b', '9/9/9', 'a' x 255,
	('a/' x 127) . 'a', 'fz/a.b__c--d/e_f');
die 'an "odd valid" path is invalid' if grep { !path_valid($_) } @ODD_VALID_PATHS;

# Statuses the registry reports (and ones it never does), the calls
# registry_request knows, numbers at the limits of their types.
our @NOTIFY_STATUSES = qw(pre_import_complete pre_import_failed pre_import_canceled
  import_complete import_failed import_canceled);
our @REGISTRY_STATUSES = (@NOTIFY_STATUSES, qw(native pre_import_in_progress import_in_progress));
our @BAD_STATUSES = ('', 'unknown', 'error', 'PRE_IMPORT_COMPLETE', 'pre_import_complete ',
	"pre_import_complete\n", "import_complete\x01", "pre_import_compl\xc3\xa9te", 'complete',
	'import', 'null');
our @CALLS = qw(status tags start_pre_import start_import cancel force_cancel);
our @INTS = qw(-2147483648 -1 0 1 2 3 4 1000 2147483646 2147483647);
our @BIGINTS = (@INTS, '9223372036854775807', '-9223372036854775808');

# Repositories the simulator knows (recreated at the start of every round).
our @SIM_REPOS = (
	(map {
		{ path => "fz/known-$_", tags => $_ % 5,
		  ($_ % 4 == 1 ? (pre_import_outcomes => ['failed']) : ()),
		  ($_ % 4 == 2 ? (import_outcomes => ['canceled']) : ()),
		  ($_ % 4 == 3 ? (pre_import_seconds => 30) : ()) }
	} 0 .. 11),
	{ path => 'fz/many-tags', tags => 150 },
	{ path => 'fz/native', native => 1 },
	{ path => 'fz/preset-pre', status => 'pre_import_failed' },
	{ path => 'fz/preset-imp', status => 'import_canceled' },
	{ path => 'fz/preset-done', status => 'import_complete' },
	{ path => 'fz/preset-prec', status => 'pre_import_complete' },
	{ path => 'fz/a.b__c--d/e_f', tags => 2 },
	{ path => 'denied/known-0', tags => 1 },
	{ path => 'a' x 255, tags => 1 },
);
our @KNOWN_PATHS = map { $_->{path} } @SIM_REPOS;
our @UNKNOWN_PATHS = ((map { "fz/unknown-$_" } 1 .. 6), 'zz/x', '0', ('a/' x 127) . 'a');

# ---- hostile values by type ----------------------------------------------------

my %HOSTILE = (
	'interval' => [ q{'0'}, q{'1 microsecond'}, q{'-1 microsecond'}, q{'-1 day'}, q{'1 month -31 days'},
		q{'-1 month 31 days'}, q{'10000 years'}, q{'100000 years'}, q{'-10000 years'},
		q{'177999999 years'}, q{'178000000 years'}, q{'2147483647 days'}, q{'-2147483648 days'},
		q{'2147483647 months'}, q{'2147483647 hours'}, q{'1000 years 2147483647 days'}, 'NULL', 'DEFAULT' ],
	'numeric' => [ '1e400', '1e-400', q{'NaN'}, q{'Infinity'}, q{'-Infinity'}, '-1e-400', '0', '-0',
		'1e308', '2e308', '1e-308', '1e-330', '1e131071', '123456789012345678901234567890.5', '0.000001',
		'NULL', 'DEFAULT' ],
	'integer' => [ '-2147483648', '-1', '0', '1', '2147483646', '2147483647', '2147483648', 'NULL', 'DEFAULT' ],
	'bigint' => [ '-9223372036854775808', '-1', '0', '2147483648', '9223372036854775807', 'NULL' ],
	'boolean' => [ 'true', 'false', 'NULL', 'DEFAULT' ],
	'timestamp with time zone' => [ q{'infinity'}, q{'-infinity'}, q{'4713-01-01 00:00:00+00 BC'},
		q{'294276-12-31 23:59:59+00'}, q{'epoch'}, 'now()', q{now() + interval '10000 years'},
		q{now() - interval '10000 years'}, 'NULL', 'DEFAULT' ],
	'text[]' => [ 'NULL', q{'{}'}, q{'{NULL}'}, q{ARRAY[NULL, 'free']}, q{'{free}'}, q{ARRAY['']},
		q{ARRAY['FREE']}, q{'{{free,premium},{a,b}}'}, q{'[5:6]={free,premium}'},
		q{ARRAY[repeat('x', 1048576)]}, q{(SELECT array_agg('p' || i) FROM generate_series(1, 10000) AS i)},
		'DEFAULT' ],
	'text' => [ q{'free'}, q{''}, q{'FREE'}, q{E'\x01'}, 'NULL', q{repeat('p', 100000)} ],
);
our @HOSTILE_TS = (q{'infinity'}, q{'-infinity'}, q{now() - interval '10000 years'}, q{'294276-12-31 23:59:59+00'},
	q{'4713-01-01 00:00:00+00 BC'}, q{now() + interval '1 day'});

# An enum column gets each of its labels, NULL and a label that does not exist.
sub hostile_values
{
	my ($type) = @_;
	return ((map { lit($_) } @{ $ENUMS->{$type} }), 'NULL', q{'bogus'}) if $ENUMS->{$type};
	return @{ $HOSTILE{$type} || ['NULL', 'DEFAULT'] };
}

# ---- the baseline of a round -------------------------------------------------------

our %SANE_SETTINGS = (enabled => 'true', capacity => '3', max_retries => '3', start_max_retries => '2',
	max_step_duration => q{'0'}, pre_import_timeout => q{'0'}, import_timeout => q{'0'},
	pre_import_tags_rate => '0.5', max_tags_count => '100', created_before => 'NULL',
	target_plans => 'NULL', enqueue_waiting_time => q{'0'}, guard_batch_size => '100',
	event_retention => q{'30 days'});
our %RANDOM_SETTINGS = (enabled => [ 'true', 'true', 'true', 'false' ], capacity => [ 0 .. 6 ],
	max_retries => [ 0 .. 4 ], start_max_retries => [ 0 .. 3 ],
	max_step_duration => [ q{'0'}, q{'1 second'}, q{'5 minutes'} ],
	pre_import_timeout => [ q{'0'}, q{'1 second'}, q{'30 minutes'} ],
	import_timeout => [ q{'0'}, q{'1 second'}, q{'10 minutes'} ],
	pre_import_tags_rate => [ '0', '0.5', '1000' ], max_tags_count => [ '0', '3', '100' ],
	created_before => [ 'NULL', ago('-1 day'), ago('1 day') ], target_plans => [ 'NULL', q{'{free}'}, q{'{}'} ],
	enqueue_waiting_time => [ q{'0'}, q{'0'}, q{'1 hour'} ], guard_batch_size => [ 1, 5, 100 ],
	event_retention => [ q{'30 days'}, q{'0'}, q{'1 hour'} ]);

# The repositories of the directed rounds: every state, stale steps, paths
# the simulator knows (some with preset statuses) and does not know.
our @FIXED_ROWS = (
	[ 'fz/known-0', 'default' ],
	[ 'fz/known-1', 'pre_importing', pre_import_started_at => ago('2 hours') ],
	[ 'fz/known-2', 'pre_import_done', pre_import_started_at => ago('3 hours'), pre_import_done_at => ago('1 hour') ],
	[ 'fz/known-3', 'importing', pre_import_started_at => ago('4 hours'), pre_import_done_at => ago('3 hours'),
		import_started_at => ago('2 hours') ],
	[ 'fz/known-4', 'import_done', import_done_at => ago('1 hour') ],
	[ 'fz/known-5', 'import_aborted', aborted_at => ago('1 hour'), retries_count => 1,
		aborted_in_state => q{'pre_importing'}, pre_import_started_at => ago('2 hours') ],
	[ 'fz/known-6', 'import_skipped', skipped_at => ago('1 hour'), skipped_reason => q{'too_many_tags'} ],
	[ 'fz/known-7', 'pre_importing', pre_import_started_at => ago('100 days') ],
	[ 'fz/known-8', 'pre_import_done', pre_import_started_at => ago('3 hours'), pre_import_done_at => ago('2 hours') ],
	[ 'fz/unknown-1', 'pre_importing', pre_import_started_at => ago('2 hours') ],
	[ 'fz/unknown-2', 'default' ],
	[ 'fz/unknown-3', 'import_aborted', aborted_at => ago('2 hours'), retries_count => 2,
		aborted_in_state => q{'importing'}, pre_import_done_at => ago('3 hours') ],
	[ 'fz/many-tags', 'default' ],
	[ 'fz/preset-pre', 'pre_importing', pre_import_started_at => ago('2 hours') ],
	[ 'fz/preset-imp', 'importing', import_started_at => ago('2 hours') ],
	[ 'fz/preset-prec', 'pre_importing', pre_import_started_at => ago('1 hour') ],
	[ 'denied/known-0', 'import_aborted', aborted_at => ago('1 hour'), retries_count => 1,
		aborted_in_state => q{'default'} ],
);

our @ROW_COLUMNS = qw(path state plan created_at pre_import_started_at pre_import_done_at
  import_started_at import_done_at aborted_at skipped_at retries_count skipped_reason aborted_in_state);

1;
