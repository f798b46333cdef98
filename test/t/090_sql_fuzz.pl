# SQL fuzz test with a fixed seed.
#
# Thousands of calls of EVERY function of schema registry_migration (read
# from pg_proc at run time, so a new function is covered automatically; the
# trigger functions are called directly too), of every view, SETs of every
# registry_migration.* parameter, and hostile INSERT/UPDATE/DELETE/TRUNCATE
# on settings, registry_state, repositories, events and denied_namespaces.
# Arguments: NULLs, empty and 1 MB strings, malformed paths ("..", "a//b",
# "%2e%2e", 3000 slashes, unicode, control characters, upper case), every
# enum label, boundary numbers. The registry is the project's simulator (some
# repositories known to it) in most rounds, a closed port or no URL at all in
# the others.
#
# Organisation
#   * The run is a list of ROUNDS. Each round starts from a baseline (session
#     settings, sane settings row, a set of repositories in every state, a
#     reset simulator) and then runs its operations. Failures are attributed
#     to the hostile values the round stored before them.
#   * Directed rounds come first and guarantee coverage: every settings
#     column with every hostile value of its type followed by a battery of
#     calls; registry_state values; retries_count / counters at their
#     maximum followed by aborts; rows in every state with every skip
#     reason; every path function with every malformed path and with NULLs;
#     the trigger functions called directly; the whole retry_decision table;
#     removal of the singleton rows (last). Random rounds (fixed seed, own
#     generator) mix calls with hostile DML, SETs and views, against the
#     simulator (60 %), a closed port (30 %) or no registry_url (10 %),
#     until the target number of calls.
#   * Everything runs in ONE psql session (restarted only if the server
#     drops it). After each statement psql echoes a marker with :SQLSTATE,
#     :ROW_COUNT and :LAST_ERROR_MESSAGE, so every result and error is
#     attributed to its statement.
#
# Assertions (each failure is listed, grouped by cause, in the diag output):
#   internal         no call or statement ends in class XX or 58
#   session          the session is never lost; no crash, no restart
#   timeout          no call runs into statement_timeout (15 s)
#   path_grammar     a non-NULL path outside the path grammar gives 22023
#                    in every function that takes a path
#   null_arg         a NULL argument of a non-STRICT path function gives
#                    22004; a STRICT one returns NULL
#   trigger_direct   a trigger function called directly gives 0A000
#   privilege        a role without grants gets 42501
#   stored_value     a value the tables accepted never makes a later call
#                    fail with class 22 (other than 22004/22023 explained by
#                    the arguments) or 23, nor shows up as such an error in
#                    a cycle summary
#   singleton        DELETE/TRUNCATE of settings and registry_state are
#                    refused with 55000
#   result           results are valid (retry_decision follows its decision
#                    table; states are labels; cycles return their summary)
#   sql_error        no class-42 error from a well-formed call
#   setup            the test's own baseline statements succeed
# and at the end: the postmaster was never restarted, no backend was
# terminated by a signal, settings and registry_state hold exactly one row,
# every CHECK constraint of the schema holds for every row.
#
# Reproduce: RM_FUZZ_SEED=<seed> (printed at the start); RM_FUZZ_CALLS sets
# the target number of function calls (default 7000).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time);

my $t_start = time();
my $SEED = $ENV{RM_FUZZ_SEED} // 20240917;
my $TARGET_CALLS = $ENV{RM_FUZZ_CALLS} // 7000;
die "RM_FUZZ_SEED must be a positive integer\n" unless $SEED =~ /^\d+$/ && $SEED > 0;
srand($SEED);    # nothing below uses rand(); the generator is our own
diag("SQL fuzz: seed $SEED, target $TARGET_CALLS function calls (RM_FUZZ_SEED=$SEED reproduces)");

my $json = JSON::PP->new->utf8(0)->canonical->allow_nonref;

# ---- a deterministic generator (Park-Miller, exact in 64-bit integers) ------

my $rng = ($SEED % 2147483646) + 1;
sub rnd { $rng = ($rng * 48271) % 2147483647; return $rng % $_[0] }   # 0 .. n-1
sub pick { return $_[ rnd(scalar @_) ] }
sub chance { return rnd(1_000_000) < $_[0] * 1_000_000 }

# ---- the registry simulator and a closed port ---------------------------------

my $sim = RegistrySimulator->new(pre_import_seconds => 0.05, import_seconds => 0.05,
	max_imports => 6, cancel_cooldown => 0.5);
my $closed_port = do {
	my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp') or die "socket: $!";
	my $p = $s->sockport;
	close $s;
	$p;
};
my %URL = (sim => $sim->url, closed => "http://127.0.0.1:$closed_port", empty => '');

# Repositories the simulator knows (recreated at the start of every round).
my @SIM_REPOS = (
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
my @KNOWN_PATHS = map { $_->{path} } @SIM_REPOS;
my @UNKNOWN_PATHS = ((map { "fz/unknown-$_" } 1 .. 6), 'zz/x', '0', ('a/' x 127) . 'a');

# ---- the cluster ----------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	# The worker serves a database without the extension: it idles, so it
	# changes nothing behind the fuzzer's back but worker_status still works.
	"registry_migration.database = 'postgres'",
	"registry_migration.connect_timeout = '300ms'",
	"registry_migration.request_timeout = '3s'",
	"registry_migration.log_level = 'debug1'",
	# A crash must not end the run: the server comes back, the session is
	# restarted, and the crash is reported (session rule, server log).
	"restart_after_crash = on",
	"log_min_error_statement = panic", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE fuzz');
$node->safe_psql('fuzz', 'CREATE EXTENSION registry_migration; CREATE ROLE fuzz_nobody NOLOGIN;');
my $postmaster_start = $node->safe_psql('fuzz', 'SELECT pg_postmaster_start_time()');

# ---- the SQL surface, read at run time -----------------------------------------

sub sql_json { return $json->decode($node->safe_psql('fuzz', $_[0])) }

my $FUNCTIONS = sql_json(q{
	SELECT coalesce(json_agg(json_build_object(
		'name', p.proname, 'kind', p.prokind, 'strict', p.proisstrict, 'retset', p.proretset,
		'rettype', p.prorettype::regtype::text, 'ndefaults', p.pronargdefaults,
		'argtypes', (SELECT coalesce(json_agg(t::regtype::text ORDER BY i), '[]')
		               FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)),
		'argnames', coalesce(to_json(p.proargnames), '[]'),
		'argmodes', to_json(p.proargmodes::text[])) ORDER BY p.proname, p.oid), '[]')
	  FROM pg_proc p WHERE p.pronamespace = 'registry_migration'::regnamespace});
my $ENUMS = sql_json(q{
	SELECT coalesce(json_object_agg(t, labels), '{}') FROM (
		SELECT e.enumtypid::regtype::text AS t, json_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
		  FROM pg_enum e JOIN pg_type ty ON ty.oid = e.enumtypid
		 WHERE ty.typnamespace = 'registry_migration'::regnamespace GROUP BY 1) s});
my $COLUMNS = sql_json(q{
	SELECT coalesce(json_object_agg(rel, cols), '{}') FROM (
		SELECT c.relname AS rel, json_agg(json_build_object('name', a.attname,
			'type', format_type(a.atttypid, a.atttypmod),
			'generated', a.attgenerated <> '', 'identity', a.attidentity <> '') ORDER BY a.attnum) AS cols
		  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		 WHERE c.relnamespace = 'registry_migration'::regnamespace AND c.relkind IN ('r', 'p')
		 GROUP BY c.relname) s});
my $VIEWS = sql_json(q{
	SELECT coalesce(json_agg(relname::text ORDER BY relname), '[]') FROM pg_class
	 WHERE relnamespace = 'registry_migration'::regnamespace AND relkind IN ('v', 'm')});
my $GUCS = sql_json(q{
	SELECT coalesce(json_agg(json_build_object('name', name, 'vartype', vartype, 'context', context,
		'enumvals', enumvals) ORDER BY name), '[]')
	  FROM pg_settings WHERE name LIKE 'registry_migration.%'});

my $STATE_TYPE = 'registry_migration.migration_state';
my $REASON_TYPE = 'registry_migration.skip_reason';
my @STATES = @{ $ENUMS->{$STATE_TYPE} || [] };
my @REASONS = @{ $ENUMS->{$REASON_TYPE} || [] };
my %FN = map { $_->{name} => $_ } @$FUNCTIONS;

# Input arguments (names and types) of each function.
for my $f (@$FUNCTIONS)
{
	my @names = @{ $f->{argnames} };
	my @modes = $f->{argmodes} ? @{ $f->{argmodes} } : map { 'i' } @names;
	my @in_names = map { $names[$_] // '' } grep { !defined $modes[$_] || $modes[$_] =~ /^[ibv]$/ }
	  0 .. $#modes;
	@in_names = ('') x @{ $f->{argtypes} } if !@in_names && @{ $f->{argtypes} };
	$f->{args} = [ map { { type => $f->{argtypes}[$_], name => $in_names[$_] // '' } }
		  0 .. $#{ $f->{argtypes} } ];
	$f->{trigger} = $f->{rettype} eq 'trigger';
	$f->{takes_path} = grep { $_->{name} =~ /(^|_)paths?$/ } @{ $f->{args} };
}

my @EXPECTED_FUNCTIONS = qw(retry_decision run_guard run_enqueuer handle_notification cancel
  retry skip reset purge_events registry_import_status registry_tags_count
  registry_import_statuses registry_request worker_status_internal);
ok(exists $FN{$_}, "function registry_migration.$_ exists") for @EXPECTED_FUNCTIONS;
ok((grep { $_->{trigger} } @$FUNCTIONS) >= 1, 'trigger functions are enumerated');
ok(@STATES == 7 && @REASONS == 9, 'both enums are enumerated');
note('functions: ' . join(', ', map { $_->{name} } @$FUNCTIONS));

# Functions that never talk to the registry (a 22023 from them must come
# from an argument) and the look-ups, which may answer class 22 for an
# unusable registry answer.
# A trigger function called directly must give a clear SQLSTATE (0A000),
# not XX000 (PL/pgSQL's own answer to such a call).
my $TRIGGER_DIRECT_SQLSTATE = '0A000';

my %NO_NETWORK = map { $_ => 1 } qw(handle_notification skip reset purge_events retry_decision
  worker_status_internal);
my %LOOKUP = map { $_ => 1 } qw(registry_import_status registry_tags_count registry_import_statuses
  registry_request);

# ---- SQL literals and values ----------------------------------------------------

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

sub path_valid
{
	my ($p) = @_;
	return length($p) <= 255
	  && $p =~ m{^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*\z} ? 1 : 0;
}

# Malformed paths: literal ones, and expressions (huge ones are rare).
my @BAD_PATH_LITERALS = ('', '.', '..', '../x', 'a/..', 'a/../b', 'a/./b', 'a//b', '/a', 'a/', '/',
	'%2e%2e', 'a/%2e%2e/b', 'a%2fb', '%2F', 'A', 'Group/Image', 'fz/Known-0', 'FZ/KNOWN-0', 'a..b',
	'a-', '-a', '_a', 'a_', 'a.-b', 'a___b', 'a b', ' a', 'a ', 'a?b', 'a#b', 'a;b', "a'b", 'a"b',
	'a\\b', 'a:b', 'a@b', 'a*', 'a&b=c', 'http://x/y', "caf\xc3\xa9", "\xef\xbd\x81",
	"a\xe2\x80\x8bb", "\xd0\xb0", "a\x01b", "a\tb", "a\nb", "a\x7fb", "a\n", "\x1b[31m",
	'a' x 256, ('a/' x 127) . 'ab', 'fz/known-0/', '/fz/known-0', 'fz/known-0?x=1');
my @BAD_PATH_EXPRS = ("repeat('/', 3000)", "repeat('a/', 3000) || 'a'", "repeat('a/', 3000)",
	"repeat('..', 200)", "repeat('%2e', 100)");
my $HUGE_PATH = "repeat('a', 1048576)";
die 'a "bad" path is valid' if grep { path_valid($_) } @BAD_PATH_LITERALS;
my @ODD_VALID_PATHS = ('a', '0', 'a-b', 'a--b', 'a__b', 'a.b', 'a_b', '9/9/9', 'a' x 255,
	('a/' x 127) . 'a', 'fz/a.b__c--d/e_f');
die 'an "odd valid" path is invalid' if grep { !path_valid($_) } @ODD_VALID_PATHS;

my @NOTIFY_STATUSES = qw(pre_import_complete pre_import_failed pre_import_canceled
  import_complete import_failed import_canceled);
my @REGISTRY_STATUSES = (@NOTIFY_STATUSES, qw(native pre_import_in_progress import_in_progress));
my @BAD_STATUSES = ('', 'unknown', 'error', 'PRE_IMPORT_COMPLETE', 'pre_import_complete ',
	"pre_import_complete\n", "import_complete\x01", "pre_import_compl\xc3\xa9te", 'complete',
	'import', 'null');
my @CALLS = qw(status tags start_pre_import start_import cancel force_cancel);
my @INTS = qw(-2147483648 -1 0 1 2 3 4 1000 2147483646 2147483647);
my @BIGINTS = (@INTS, '9223372036854775807', '-9223372036854775808');

# A value is { sql, null, val (the text when known), and flags }.
sub v_null { return { sql => "NULL::$_[0]", null => 1 } }
sub v_text { return { sql => lit($_[0]), val => $_[0] } }

# The paths of the repositories the current round inserted.
my @round_paths;

sub gen_path
{
	my $r = rnd(1000);
	return { %{ v_null('text') }, is_path => 1 } if $r < 40;
	if ($r < 520 && @round_paths) { my $p = pick(@round_paths); return { %{ v_text($p) }, is_path => 1 } }
	return { %{ v_text(pick(@UNKNOWN_PATHS, @KNOWN_PATHS)) }, is_path => 1 } if $r < 600;
	return { %{ v_text(pick(@ODD_VALID_PATHS)) }, is_path => 1 } if $r < 640;
	return { sql => $HUGE_PATH, is_path => 1, path_invalid => 1 } if $r < 643;
	return { sql => pick(@BAD_PATH_EXPRS), is_path => 1, path_invalid => 1 } if $r < 700;
	return { %{ v_text(pick(@BAD_PATH_LITERALS)) }, is_path => 1, path_invalid => 1 };
}

sub gen_paths_array
{
	my $r = rnd(100);
	return { %{ v_null('text[]') }, is_path => 1 } if $r < 5;
	return { sql => q{'{}'::text[]}, is_path => 1 } if $r < 10;
	return { sql => 'ARRAY[NULL]::text[]', is_path => 1, null_elem => 1 } if $r < 14;
	return { sql => "(SELECT array_agg('fz/p-' || i) FROM generate_series(1, 200) AS i)", is_path => 1 }
	  if $r < 18;
	return { sql => q{'[5:6]={fz/known-0,fz/known-1}'::text[]}, is_path => 1 } if $r < 21;
	return { sql => q{'{{fz/known-0,fz/known-1},{zz/x,fz/native}}'::text[]}, is_path => 1 } if $r < 24;
	my @elements = map { gen_path() } 1 .. 1 + rnd(5);
	return {
		sql => 'ARRAY[' . join(', ', map { $_->{sql} } @elements) . ']::text[]',
		is_path => 1,
		null_elem => (grep { $_->{null} } @elements) ? 1 : 0,
		path_invalid => (grep { $_->{path_invalid} } @elements) ? 1 : 0,
	};
}

sub gen_status
{
	my $r = rnd(100);
	return v_null('text') if $r < 6;
	return { sql => "repeat('x', 1048576)", invalid => 1 } if $r < 7;
	return v_text(pick(@NOTIFY_STATUSES)) if $r < 60;
	return { %{ v_text(pick(qw(native pre_import_in_progress import_in_progress))) }, invalid => 1 } if $r < 75;    # not a notification status
	return { %{ v_text(pick(@BAD_STATUSES)) }, invalid => 1 };
}

sub gen_call
{
	my $r = rnd(100);
	return v_null('text') if $r < 5;
	return v_text(pick(@CALLS)) if $r < 85;
	return { %{ v_text(pick('', 'STATUS', 'delete', 'status ', 'tag', "status\n")) }, invalid => 1 };
}

sub gen_int
{
	my ($type) = @_;
	return v_null($type) if chance(0.06);
	my $n = pick($type eq 'bigint' ? @BIGINTS : @INTS);
	return { sql => "($n)::$type", val => $n, not_positive => $n < 1 ? 1 : 0 };
}

sub gen_enum
{
	my ($type) = @_;
	return v_null($type) if chance(0.06);
	my $label = pick(@{ $ENUMS->{$type} });
	return { sql => lit($label) . "::$type", val => $label };
}

sub gen_arg
{
	my ($arg) = @_;
	my ($type, $name) = ($arg->{type}, $arg->{name});
	return gen_paths_array() if $type eq 'text[]' && $name =~ /paths?$/;
	return gen_path() if $type eq 'text' && $name =~ /(^|_)path$/;
	return gen_status() if $type eq 'text' && $name =~ /status$/;
	return gen_call() if $type eq 'text' && $name eq 'call';
	return pick(gen_path(), gen_status(), v_text(''), v_text('x')) if $type eq 'text';
	return gen_int($type) if $type =~ /^(integer|smallint|bigint)$/;
	return chance(0.06) ? v_null('boolean') : { sql => pick('true', 'false'), val => 1 }
	  if $type eq 'boolean';
	return gen_enum($type) if $ENUMS->{$type};
	return pick({ sql => "'{}'::$type" }, v_null($type)) if $type =~ /\[\]$/;
	return v_null($type);
}

# A "good" argument of a directed call.
sub good_arg
{
	my ($arg) = @_;
	my ($type, $name) = ($arg->{type}, $arg->{name});
	return { sql => q{ARRAY['fz/known-0']::text[]}, is_path => 1 } if $type eq 'text[]' && $name =~ /paths?$/;
	return { %{ v_text('fz/known-0') }, is_path => 1 } if $type eq 'text' && $name =~ /(^|_)path$/;
	return v_text('pre_import_complete') if $type eq 'text' && $name =~ /status$/;
	return v_text('status') if $type eq 'text' && $name eq 'call';
	return v_text('x') if $type eq 'text';
	return { sql => "1::$type", val => 1 } if $type =~ /^(integer|smallint|bigint)$/;
	return { sql => 'false', val => 0 } if $type eq 'boolean';
	return { sql => lit($ENUMS->{$type}[0]) . "::$type", val => $ENUMS->{$type}[0] } if $ENUMS->{$type};
	return v_null($type);
}

# ---- operations and rounds --------------------------------------------------------

my @rounds;
my $current;
my $next_op_id = 0;
my $total_calls = 0;

sub add_op
{
	my (%op) = @_;
	$op{id} = ++$next_op_id;
	$op{round} = $current->{no};
	push @{ $current->{ops} }, \%op;
	$total_calls++ if $op{kind} eq 'call';
	return \%op;
}

sub setup_op { add_op(kind => 'setup', sql => $_[0], desc => $_[0]) }

# retry_decision's table, written again: the first matching rule wins.
my %KNOWN_STATUS = map { $_ => 1 } @REGISTRY_STATUSES;
sub decision
{
	my ($state, $status, $retries, $max) = @_;
	return '22004' if !defined $state || !defined $retries || !defined $max;
	return '22023' if $retries < 0 || $max < 0;
	return 'none' if $state eq 'import_done' || $state eq 'import_skipped';
	return 'unknown' if !defined $status || !$KNOWN_STATUS{$status};
	return 'finish_import_native' if $status eq 'native';
	return $state eq 'pre_importing' ? 'none' : 'mark_pre_importing' if $status eq 'pre_import_in_progress';
	return $state eq 'importing' ? 'none' : 'mark_importing' if $status eq 'import_in_progress';
	return 'finish_import' if $status eq 'import_complete';
	if ($status eq 'pre_import_complete')
	{
		return $state =~ /^(pre_importing|pre_import_done|import_aborted)$/ ? 'start_import' : 'none';
	}
	if ($state eq 'import_aborted')
	{
		return 'skip' unless $retries < $max;
		return $status =~ /^pre_import/ ? 'retry_pre_import' : 'retry_import';
	}
	return 'abort' if $state =~ /^(pre_importing|pre_import_done|importing)$/;
	return 'none';
}

# What a call must end in, from the contract alone: (rule, need).
sub call_expectation
{
	my ($f, $args, $nobody) = @_;
	my $any_null = grep { $_->{null} } @$args;
	# The planner folds a STRICT call with a NULL constant to NULL before
	# any privilege check: PostgreSQL's behaviour, not the extension's.
	return ('privilege', $f->{strict} && $any_null ? '42501|NULL' : '42501')
	  if $nobody && $f->{name} ne 'retry_decision';
	return ('trigger_direct', $TRIGGER_DIRECT_SQLSTATE) if $f->{trigger};
	return ('null_arg', 'NULL') if $f->{strict} && $any_null;
	if ($f->{takes_path})
	{
		return ('null_arg', '22004') if $any_null;
		my @paths = grep { $_->{is_path} } @$args;
		my $null_elem = grep { $_->{null_elem} } @paths;
		my $invalid = grep { $_->{path_invalid} } @paths;
		return ('path_grammar', '22023') if $invalid && !$null_elem;
		return ('null_arg', '22004') if $null_elem && !$invalid;
		return ('path_grammar', '22004|22023') if $null_elem && $invalid;
	}
	if ($f->{name} eq 'retry_decision' && @$args == 4)
	{
		my @v = map { $_->{null} ? undef : $_->{val} } @$args;
		my $status = $args->[1]{null} ? undef : ($args->[1]{val} // "\x00huge");
		return ('result', decision($v[0], $status, $v[2], $v[3]));
	}
	return ();
}

sub call_op
{
	my ($f, $args, %o) = @_;
	my $name = 'registry_migration.' . qi($f->{name});
	my $list = join(', ', map { $_->{sql} } @$args);
	my $sql;
	if ($f->{trigger}) { $sql = "SELECT 'R:' || ($name($list) IS NULL)::text" }
	elsif ($f->{kind} eq 'p') { $sql = "CALL $name($list)" }
	elsif ($f->{retset})
	{
		$sql = "SELECT 'R:' || count(*) || ' rows ' || coalesce(replace(left(string_agg(r::text, ' | '),"
		  . " 400), E'\\n', '\\n'), '') FROM $name($list) AS r";
	}
	else
	{
		$sql = "SELECT 'R:' || coalesce(replace(left(r::text, 100000), E'\\n', '\\n'), '<NULL>')"
		  . " FROM (SELECT $name($list) AS r) AS s";
	}
	my ($rule, $need) = call_expectation($f, $args, $o{nobody});
	my $desc = ($o{nobody} ? '[as fuzz_nobody] ' : '') . "$f->{name}($list)";
	return add_op(kind => 'call', fn => $f->{name}, sql => $sql, desc => $desc,
		pre => $o{nobody} ? ['SET ROLE fuzz_nobody'] : undef,
		post => $o{nobody} ? ['RESET ROLE'] : undef,
		nobody => $o{nobody}, need_rule => $rule, need => $need,
		any_null => (grep { $_->{null} || $_->{null_elem} } @$args) ? 1 : 0,
		arg_invalid => (grep { $_->{path_invalid} || $_->{invalid} || $_->{not_positive} } @$args) ? 1 : 0);
}

# A directed call: named function (skipped when it does not exist) and args.
sub call
{
	my ($fname, @args) = @_;
	my $f = $FN{$fname} or return;
	return call_op($f, \@args);
}
sub P { return { %{ v_text($_[0]) }, is_path => 1, path_invalid => !path_valid($_[0]) } }
sub S { return v_text($_[0]) }
sub I { return { sql => "($_[0])::integer", val => $_[0], not_positive => $_[0] < 1 } }
sub B { return { sql => $_[0], val => $_[0] eq 'true' } }
sub R { return { sql => lit($_[0]) . "::$REASON_TYPE", val => $_[0] } }

sub random_call
{
	my $f = pick(@$FUNCTIONS);
	my @args = map { gen_arg($_) } @{ $f->{args} };
	# Sometimes leave out trailing arguments that have defaults.
	if ($f->{ndefaults} && chance(0.3)) { splice(@args, @args - 1 - rnd($f->{ndefaults})) }
	return call_op($f, \@args, nobody => chance(0.05));
}

sub view_op
{
	my ($view, $nobody) = @_;
	return add_op(kind => 'view', fn => "view $view", nobody => $nobody,
		sql => "SELECT 'R:' || count(*) || ' ' || coalesce(replace(left(string_agg(v::text, ' | '), 400),"
		  . " E'\\n', '\\n'), '') FROM registry_migration." . qi($view) . " AS v",
		desc => "SELECT * FROM registry_migration.$view", pre => $nobody ? ['SET ROLE fuzz_nobody'] : undef,
		post => $nobody ? ['RESET ROLE'] : undef);
}

# DML on a table of the extension; tags name the hostile values it stores.
sub dml_op
{
	my ($table, $sql, %o) = @_;
	return add_op(kind => 'dml', fn => "DML $table", sql => $sql, desc => $sql, tags => $o{tags} || [],
		singleton => $o{singleton}, removal => $o{removal});
}

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
for my $type (keys %$ENUMS)
{
	$HOSTILE{$type} = [ (map { lit($_) } @{ $ENUMS->{$type} }), 'NULL', q{'bogus'} ];
}
sub hostile_values { my ($type) = @_; return @{ $HOSTILE{$type} || ['NULL', 'DEFAULT'] } }

# ---- the baseline of a round -------------------------------------------------------

my %SANE_SETTINGS = (enabled => 'true', capacity => '3', max_retries => '3', start_max_retries => '2',
	max_step_duration => q{'0'}, pre_import_timeout => q{'0'}, import_timeout => q{'0'},
	pre_import_tags_rate => '0.5', max_tags_count => '100', created_before => 'NULL',
	target_plans => 'NULL', enqueue_waiting_time => q{'0'}, guard_batch_size => '100',
	event_retention => q{'30 days'});
my %RANDOM_SETTINGS = (enabled => [ 'true', 'true', 'true', 'false' ], capacity => [ 0 .. 6 ],
	max_retries => [ 0 .. 4 ], start_max_retries => [ 0 .. 3 ],
	max_step_duration => [ q{'0'}, q{'1 second'}, q{'5 minutes'} ],
	pre_import_timeout => [ q{'0'}, q{'1 second'}, q{'30 minutes'} ],
	import_timeout => [ q{'0'}, q{'1 second'}, q{'10 minutes'} ],
	pre_import_tags_rate => [ '0', '0.5', '1000' ], max_tags_count => [ '0', '3', '100' ],
	created_before => [ 'NULL', ago('-1 day'), ago('1 day') ], target_plans => [ 'NULL', q{'{free}'}, q{'{}'} ],
	enqueue_waiting_time => [ q{'0'}, q{'0'}, q{'1 hour'} ], guard_batch_size => [ 1, 5, 100 ],
	event_retention => [ q{'30 days'}, q{'0'}, q{'1 hour'} ]);
my @SETTINGS_COLUMNS = @{ $COLUMNS->{settings} || [] };
my %SETTINGS_TYPE = map { $_->{name} => $_->{type} } @SETTINGS_COLUMNS;

# The repositories of the directed rounds: every state, stale steps, paths
# the simulator knows (some with preset statuses) and does not know.
my @FIXED_ROWS = (
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

my @ROW_COLUMNS = qw(path state plan created_at pre_import_started_at pre_import_done_at
  import_started_at import_done_at aborted_at skipped_at retries_count skipped_reason aborted_in_state);

sub row_values
{
	my ($path, $state, %c) = @_;
	my %v = (path => lit($path), state => lit($state) . "::$STATE_TYPE", plan => 'NULL',
		created_at => ago('1 day'), retries_count => 0, %c);
	return '(' . join(', ', map { $v{$_} // 'NULL' } @ROW_COLUMNS) . ')';
}

# A consistent random row in a given state.
sub random_row
{
	my ($path, $state) = @_;
	my $t = sub { ago(pick('1 second', '10 minutes', '2 hours', '3 days')) };
	my %c = (plan => pick('NULL', q{'free'}, q{'premium'}), retries_count => rnd(3),
		created_at => ago(pick('1 minute', '1 day', '30 days')));
	if ($state eq 'pre_importing') { $c{pre_import_started_at} = $t->() }
	elsif ($state eq 'pre_import_done') { @c{qw(pre_import_started_at pre_import_done_at)} = ($t->(), $t->()) }
	elsif ($state eq 'importing') { @c{qw(pre_import_done_at import_started_at)} = ($t->(), $t->()) }
	elsif ($state eq 'import_done')
	{
		$c{import_done_at} = $t->();
		$c{skipped_reason} = pick('NULL', q{'native_import'}, q{'not_found'});
	}
	elsif ($state eq 'import_aborted')
	{
		@c{qw(aborted_at retries_count)} = ($t->(), 1 + rnd(4));
		$c{aborted_in_state} = lit(pick(qw(default pre_importing pre_import_done importing)));
		$c{pre_import_done_at} = $t->() if chance(0.4);
	}
	elsif ($state eq 'import_skipped') { @c{qw(skipped_at skipped_reason)} = ($t->(), lit(pick(@REASONS))) }
	return row_values($path, $state, %c);
}

sub new_round
{
	my ($name, %o) = @_;
	$current = { no => scalar(@rounds) + 1, name => $name, url => $o{url} // 'sim', ops => [],
		max_imports => $o{max_imports} // 6 };
	push @rounds, $current;
	setup_op('RESET ALL');
	setup_op(q{SET statement_timeout = '15s'});
	setup_op('SET registry_migration.registry_url = ' . lit($URL{ $current->{url} }));
	setup_op('DELETE FROM registry_migration.repositories');
	setup_op('DELETE FROM registry_migration.events');
	setup_op('DELETE FROM registry_migration.denied_namespaces');
	setup_op(q{INSERT INTO registry_migration.denied_namespaces VALUES ('denied')});
	my %settings = %SANE_SETTINGS;
	if ($o{random})
	{
		$settings{$_} = pick(@{ $RANDOM_SETTINGS{$_} }) for sort keys %RANDOM_SETTINGS;
	}
	%settings = (%settings, %{ $o{settings} || {} });
	my @set = map { "$_ = $settings{$_}" } grep { exists $settings{$_} } map { $_->{name} } @SETTINGS_COLUMNS;
	setup_op('UPDATE registry_migration.settings SET ' . join(', ', @set)) if @set;
	setup_op('UPDATE registry_migration.registry_state SET retry_after_until = NULL');
	setup_op(q{INSERT INTO registry_migration.events (repository_id, path, old_state, new_state, cause, event, at)
		VALUES (0, 'old/a', 'default', 'default', 'admin', 'fuzz', now() - interval '400 days'),
		       (0, 'old/b', 'default', 'default', 'guard', 'fuzz', now() - interval '40 days'),
		       (0, 'old/c', 'default', 'default', 'enqueuer', 'fuzz', now())});
	my @rows;
	if ($o{random})
	{
		my @pool = (@KNOWN_PATHS, @UNKNOWN_PATHS);
		for (1 .. 8 + rnd(10))
		{
			my $p = splice(@pool, rnd(scalar @pool), 1);
			push @rows, [ $p, random_row($p, pick(@STATES)) ];
		}
	}
	else
	{
		@rows = map { [ $_->[0], row_values(@$_) ] } @FIXED_ROWS;
	}
	@round_paths = map { $_->[0] } @rows;
	setup_op('INSERT INTO registry_migration.repositories (' . join(', ', @ROW_COLUMNS) . ') VALUES '
		  . join(', ', map { $_->[1] } @rows));
	return $current;
}

# The calls made after each directed hostile change.
sub battery
{
	call('handle_notification', P('fz/known-1'), S('pre_import_failed'));
	call('handle_notification', P('fz/known-5'), S('pre_import_complete'));
	call('handle_notification', P('fz/known-3'), S('import_complete'));
	call('skip', P('fz/unknown-2'), R('not_in_plan'));
	call('reset', P('fz/known-6'));
	call('purge_events', I(1000));
	call('run_guard');
	call('run_enqueuer');
	call('retry', P('fz/unknown-3'));
	call('cancel', P('fz/preset-imp'), B('false'));
	call('registry_import_status', P('fz/known-0'));
	call('registry_tags_count', P('fz/many-tags'));
	call('worker_status_internal');
	view_op($_) for @$VIEWS;
}

# ---- hostile DML generators ------------------------------------------------------

sub settings_update
{
	my ($col, $value) = @_;
	return dml_op('settings', "UPDATE registry_migration.settings SET " . qi($col) . " = $value",
		tags => ["settings.$col = $value"]);
}

sub random_settings_dml
{
	my $r = rnd(100);
	my $col = pick(@SETTINGS_COLUMNS)->{name};
	my $value = pick(hostile_values($SETTINGS_TYPE{$col}));
	return settings_update($col, $value) if $r < 68;
	if ($r < 76)
	{
		my $col2 = pick(@SETTINGS_COLUMNS)->{name};
		my $value2 = pick(hostile_values($SETTINGS_TYPE{$col2}));
		return dml_op('settings', 'UPDATE registry_migration.settings SET ' . qi($col) . " = $value"
			  . ($col2 ne $col ? ', ' . qi($col2) . " = $value2" : ''),
			tags => [ "settings.$col = $value", $col2 ne $col ? "settings.$col2 = $value2" : () ]);
	}
	return dml_op('settings', 'INSERT INTO registry_migration.settings (' . qi($col) . ") VALUES ($value)",
		tags => ["settings INSERT $col = $value"])
	  if $r < 86;
	return dml_op('settings', 'INSERT INTO registry_migration.settings DEFAULT VALUES') if $r < 89;
	return dml_op('settings', 'DELETE FROM registry_migration.settings', singleton => 'settings',
		removal => 'delete')
	  if $r < 93;
	return dml_op('settings', 'TRUNCATE registry_migration.settings', singleton => 'settings',
		removal => 'truncate')
	  if $r < 96;
	return dml_op('settings', 'DELETE FROM registry_migration.settings WHERE false', singleton => 'settings',
		removal => 'delete');
}

sub random_registry_state_dml
{
	my $r = rnd(100);
	my @cols = grep { !$_->{generated} } @{ $COLUMNS->{registry_state} || [] };
	my $c = @cols ? pick(@cols) : { name => 'retry_after_until', type => 'timestamp with time zone' };
	my $value = pick(hostile_values($c->{type}));
	return dml_op('registry_state', 'UPDATE registry_migration.registry_state SET ' . qi($c->{name}) . " = $value",
		tags => ["registry_state.$c->{name} = $value"])
	  if $r < 55;
	return dml_op('registry_state', 'INSERT INTO registry_migration.registry_state (' . qi($c->{name})
		  . ") VALUES ($value)", tags => ["registry_state INSERT $c->{name} = $value"])
	  if $r < 65;
	return dml_op('registry_state', 'INSERT INTO registry_migration.registry_state DEFAULT VALUES') if $r < 70;
	return dml_op('registry_state', 'DELETE FROM registry_migration.registry_state',
		singleton => 'registry_state', removal => 'delete')
	  if $r < 85;
	return dml_op('registry_state', 'TRUNCATE registry_migration.registry_state',
		singleton => 'registry_state', removal => 'truncate');
}

my @HOSTILE_TS = (q{'infinity'}, q{'-infinity'}, q{now() - interval '10000 years'}, q{'294276-12-31 23:59:59+00'},
	q{'4713-01-01 00:00:00+00 BC'}, q{now() + interval '1 day'});
my $hostile_path_no = 0;

sub random_repositories_dml
{
	my $r = rnd(100);
	my @cols = grep { !$_->{generated} && !$_->{identity} } @{ $COLUMNS->{repositories} || [] };
	if ($r < 40)
	{
		# A hostile row: maximal counters, infinite or extreme timestamps,
		# usually consistent with its state so the table accepts it.
		my $state = pick(@STATES);
		my $path = chance(0.85) ? 'fz/h-' . ++$hostile_path_no : pick(@BAD_PATH_LITERALS);
		my $ts = sub { chance(0.5) ? pick(@HOSTILE_TS) : ago(pick('1 second', '2 hours', '100 days')) };
		my %c = (retries_count => pick(0, 1, 3, 2147483646, 2147483647, -1), created_at => $ts->(),
			plan => pick('NULL', q{'free'}, q{''}));
		$c{retries_count} = 2147483647 if chance(0.3);
		$c{pre_import_started_at} = $ts->() if $state =~ /pre_importing|pre_import_done/ || chance(0.2);
		$c{pre_import_done_at} = $ts->() if $state eq 'pre_import_done' || chance(0.2);
		$c{import_started_at} = $ts->() if $state eq 'importing';
		$c{import_done_at} = $ts->() if $state eq 'import_done';
		if ($state eq 'import_aborted' || chance(0.1))
		{
			$c{aborted_at} = $ts->();
			$c{aborted_in_state} = lit(pick(qw(default pre_importing pre_import_done importing import_done)));
		}
		if ($state eq 'import_skipped' || chance(0.1))
		{
			$c{skipped_at} = $ts->();
			$c{skipped_reason} = lit(pick(@REASONS));
		}
		$c{$_} = 'NULL' for grep { chance(0.04) } qw(pre_import_started_at import_started_at aborted_at skipped_at);
		my $row = row_values($path, $state, %c);
		my @tags = map { "repositories.$_ = $c{$_}" }
		  grep { defined $c{$_} && $c{$_} =~ /infinity|10000 years|294276|4713|2147483647|2147483646/ } sort keys %c;
		push @round_paths, $path if path_valid($path);
		return dml_op('repositories', 'INSERT INTO registry_migration.repositories ('
			  . join(', ', @ROW_COLUMNS) . ") VALUES $row", tags => \@tags);
	}
	if ($r < 85)
	{
		my $c = pick(@cols);
		my $value = $c->{name} eq 'path' ? pick(map { lit($_) } @BAD_PATH_LITERALS, @ODD_VALID_PATHS)
		  : $c->{type} =~ /^(integer|bigint)$/ && chance(0.5) ? pick('2147483647', '2147483646')
		  : $c->{type} eq 'timestamp with time zone' && chance(0.5) ? pick(@HOSTILE_TS)
		  : pick(hostile_values($c->{type}));
		my $where = chance(0.15) || !@round_paths ? 'true' : 'path = ' . lit(pick(@round_paths));
		return dml_op('repositories', 'UPDATE registry_migration.repositories SET ' . qi($c->{name})
			  . " = $value WHERE $where", tags => ["repositories.$c->{name} = $value"]);
	}
	my $where = @round_paths ? 'path = ' . lit(pick(@round_paths)) : 'false';
	return dml_op('repositories', "DELETE FROM registry_migration.repositories WHERE $where");
}

sub random_other_dml
{
	my $r = rnd(100);
	if ($r < 50)
	{
		my $at = pick(q{'-infinity'}, q{'infinity'}, q{now() - interval '10000 years'}, 'now()',
			q{'294276-12-31 23:59:59+00'});
		return dml_op('events', 'INSERT INTO registry_migration.events (repository_id, path, old_state,'
			  . " new_state, cause, event, at) VALUES (-1, 'zz/x', 'default', 'import_skipped', 'admin', 'fuzz', $at)",
			tags => ["events.at = $at"]);
	}
	my $ns = pick(q{'fz'}, q{''}, q{'FZ'}, q{'zz'}, q{repeat('n', 10000)}, 'NULL', q{'a/b'});
	return dml_op('denied_namespaces', "INSERT INTO registry_migration.denied_namespaces VALUES ($ns)",
		tags => ["denied_namespaces $ns"]);
}

sub random_guc_op
{
	my $g = pick(@$GUCS);
	my $t = $g->{vartype};
	my $value = $t eq 'integer' ? pick(q{'0'}, q{'-1'}, q{'1'}, q{'2147483647'}, q{'-2147483648'}, q{'1e400'},
			q{'10 years'}, q{''}, q{'50'}, q{'1000'})
	  : $t eq 'bool' ? pick(q{'on'}, q{'off'}, q{'maybe'}, q{''})
	  : $t eq 'enum' ? pick((map { lit($_) } @{ $g->{enumvals} || [] }), q{'bogus'}, q{''})
	  : pick(q{''}, lit($URL{closed}), lit($URL{sim}), lit("$URL{sim}/"), lit("$URL{sim}/prefix/../x"),
		lit("ftp://127.0.0.1:$closed_port/"), lit("http://user:pw\@127.0.0.1:$closed_port"), q{'not a url'},
		lit("http://127.0.0.1:$closed_port/a%2e%2e/"), q{repeat('h', 1048576)}, q{E'http://127.0.0.1:1/\x01'},
		q{'/etc/passwd'}, q{'/dev/zero'}, q{'relative/key.pem'});
	return add_op(kind => 'guc', fn => 'set_config', guc => $g->{name},
		sql => "SELECT 'R:' || coalesce(left(set_config(" . lit($g->{name}) . ", $value, false), 40), '')",
		desc => "set_config('$g->{name}', $value)");
}

# ==== directed rounds ============================================================

# D1: every settings column, every hostile value of its type, then the battery.
for my $c (@SETTINGS_COLUMNS)
{
	for my $value (hostile_values($c->{type}))
	{
		new_round("settings.$c->{name} = $value");
		settings_update($c->{name}, $value);
		battery();
	}
}

# D2: registry_state values.
for my $c (grep { !$_->{generated} } @{ $COLUMNS->{registry_state} || [] })
{
	for my $value (hostile_values($c->{type}))
	{
		new_round("registry_state.$c->{name} = $value");
		dml_op('registry_state', "UPDATE registry_migration.registry_state SET " . qi($c->{name}) . " = $value",
			tags => ["registry_state.$c->{name} = $value"]);
		battery();
	}
}

# D3: counters at their maximum, then every kind of abort and the cycles.
for my $max_retries ('3', '2147483647')
{
	for my $column (grep { $_->{type} eq 'integer' && !$_->{generated} } @{ $COLUMNS->{repositories} || [] })
	{
		new_round("repositories.$column->{name} = 2147483647, max_retries = $max_retries",
			settings => { max_retries => $max_retries, start_max_retries => '2147483647', capacity => '10' },
			max_imports => 1);
		dml_op('repositories', "UPDATE registry_migration.repositories SET " . qi($column->{name})
			  . ' = 2147483647', tags => ["repositories.$column->{name} = 2147483647"]);
		call('run_enqueuer');
		call('handle_notification', P('fz/known-1'), S('pre_import_failed'));
		call('handle_notification', P('fz/known-2'), S('import_failed'));
		call('handle_notification', P('fz/known-3'), S('import_canceled'));
		call('handle_notification', P('fz/unknown-1'), S('pre_import_canceled'));
		call('handle_notification', P('fz/known-5'), S('pre_import_failed'));
		call('run_guard');
		call('run_enqueuer');
		call('retry', P('fz/unknown-3'));
		call('retry', P('fz/known-5'));
		call('cancel', P('fz/preset-pre'), B('false'));
		call('cancel', P('fz/known-7'), B('true'));
		call('skip', P('fz/known-0'), R('too_many_tags'));
		call('reset', P('fz/known-6'));
		call('run_enqueuer');
		view_op($_) for @$VIEWS;
	}
}

# D3b: every state with every skip reason (rows the table accepts), then
# notifications, admin calls and both cycles on them.
{
	new_round('every state with every skip reason', settings => { max_retries => '1' });
	my @rows;
	for my $state (@STATES)
	{
		for my $i (0 .. $#REASONS)
		{
			my $path = "fz/sr-$state-$i";
			my %c = (skipped_reason => lit($REASONS[$i]), skipped_at => ago('1 hour'),
				pre_import_started_at => ago('3 hours'), retries_count => $i % 4);
			$c{pre_import_done_at} = ago('2 hours') if $state =~ /^(pre_import_done|import_done)$/;
			$c{import_started_at} = ago('2 hours') if $state eq 'importing';
			$c{import_done_at} = ago('1 hour') if $state eq 'import_done';
			@c{qw(aborted_at aborted_in_state retries_count)} = (ago('1 hour'), q{'importing'}, 1 + $i % 3)
			  if $state eq 'import_aborted';
			push @rows, row_values($path, $state, %c);
			push @round_paths, $path;
		}
	}
	dml_op('repositories', 'INSERT INTO registry_migration.repositories (' . join(', ', @ROW_COLUMNS)
		  . ') VALUES ' . join(', ', @rows));
	call('run_guard');
	call('run_enqueuer');
	for my $state (@STATES)
	{
		for my $i (0 .. $#REASONS)
		{
			my $path = "fz/sr-$state-$i";
			call('handle_notification', P($path), S($NOTIFY_STATUSES[ $i % @NOTIFY_STATUSES ]));
			call('skip', P($path), R($REASONS[ ($i + 1) % @REASONS ]));
			call($i % 2 ? 'reset' : 'retry', P($path));
		}
	}
	call('run_guard');
	call('run_enqueuer');
	view_op($_) for @$VIEWS;
}

# D4: every function that takes a path, every malformed path, other
# arguments good; and D7: every argument NULL in turn.
{
	my @path_functions = grep { $_->{takes_path} && !$_->{trigger} } @$FUNCTIONS;
	my @bad = ((map { P($_) } @BAD_PATH_LITERALS),
		(map { { sql => $_, is_path => 1, path_invalid => 1 } } @BAD_PATH_EXPRS, $HUGE_PATH));
	my $n = 0;
	for my $f (@path_functions)
	{
		new_round("malformed paths: $f->{name}");
		for my $bad (@bad)
		{
			my @args = map {
				$_->{name} =~ /(^|_)path$/ ? $bad
				  : $_->{name} =~ /paths$/ ? { %$bad, sql => "ARRAY[$bad->{sql}]::text[]" }
				  : good_arg($_)
			} @{ $f->{args} };
			call_op($f, \@args);
		}
		# Valid unusual paths must not be refused by the grammar check.
		for my $p (@ODD_VALID_PATHS)
		{
			call_op($f, [ map { $_->{name} =~ /(^|_)path$/ ? P($p) : good_arg($_) } @{ $f->{args} } ]);
		}
	}
	new_round('NULL arguments');
	for my $f (grep { !$_->{trigger} } @$FUNCTIONS)
	{
		for my $i (0 .. $#{ $f->{args} })
		{
			my @args = map { $_ == $i ? v_null($f->{args}[$_]{type}) : good_arg($f->{args}[$_]) }
			  0 .. $#{ $f->{args} };
			$args[$i]{is_path} = 1 if $f->{args}[$i]{name} =~ /paths?$/;
			call_op($f, \@args);
		}
		call_op($f, [ map { good_arg($_) } @{ $f->{args} } ]);
		call_op($f, [ map { good_arg($_) } @{ $f->{args} } ], nobody => 1);
	}
}

# D5: trigger functions called directly, as superuser and without grants.
new_round('trigger functions called directly');
for my $f (grep { $_->{trigger} } @$FUNCTIONS)
{
	call_op($f, []) for 1 .. 3;
	call_op($f, [], nobody => 1);
}

# D8: the whole retry_decision table with boundary counters.
if ($FN{retry_decision})
{
	new_round('retry_decision table');
	for my $state (@STATES, undef)
	{
		for my $status (@REGISTRY_STATUSES, 'unknown', 'error', '', 'NATIVE', undef)
		{
			for my $counts ([0, 3], [2, 3], [3, 3], [4, 3], [0, 0], [2147483647, 2147483647],
				[2147483646, 2147483647], [-1, 3], [3, -2147483648])
			{
				my @args = (defined $state ? { sql => lit($state) . "::$STATE_TYPE", val => $state } : v_null($STATE_TYPE),
					defined $status ? v_text($status) : v_null('text'), I($counts->[0]), I($counts->[1]));
				call_op($FN{retry_decision}, \@args);
			}
		}
		call_op($FN{retry_decision}, [ { sql => "'default'::$STATE_TYPE", val => 'default' }, v_text('x'),
			v_null('integer'), I(3) ]);
		call_op($FN{retry_decision}, [ { sql => "'default'::$STATE_TYPE", val => 'default' }, v_text('x'),
			I(3), v_null('integer') ]);
	}
}

# ==== random rounds =================================================================

my $directed_calls = $total_calls;
my $random_round = 0;
while ($total_calls < $TARGET_CALLS)
{
	$random_round++;
	my $url = pick(qw(sim sim sim sim sim sim closed closed closed empty));
	new_round("random $random_round", random => 1, url => $url, max_imports => pick(0, 2, 6));
	setup_op(q{SET registry_migration.connect_timeout = '200ms'});
	for (1 .. 40)
	{
		my $r = rnd(100);
		if ($r < 12) { random_settings_dml() }
		elsif ($r < 15) { random_registry_state_dml() }
		elsif ($r < 24) { random_repositories_dml() }
		elsif ($r < 26) { random_other_dml() }
		elsif ($r < 29) { random_guc_op() }
		elsif ($r < 32) { view_op(pick(@$VIEWS), chance(0.2)) if @$VIEWS }
		else { random_call() }
	}
}

# D6: removing the singleton rows (last: what it breaks is seen below).
for my $statement ('DELETE FROM registry_migration.settings', 'TRUNCATE registry_migration.settings',
	'DELETE FROM registry_migration.registry_state', 'TRUNCATE registry_migration.registry_state')
{
	new_round($statement);
	my ($table) = $statement =~ /registry_migration\.(\w+)/;
	dml_op($table, $statement, singleton => $table, removal => $statement =~ /^TRUNCATE/ ? 'truncate' : 'delete',
		tags => ["$statement"]);
	battery();
}

my @all_ops = map { @{ $_->{ops} } } @rounds;
diag(sprintf('%d rounds, %d statements, %d function calls (%d directed), generated in %.1f s',
	scalar @rounds, scalar @all_ops, $total_calls, $directed_calls, time() - $t_start));

# ==== running them in one psql session ===========================================

my ($in, $out, $err) = ('', '', '');
my $psql;
my $session_starts = 0;
my $timer = IPC::Run::timeout(300);

sub start_psql
{
	($in, $out, $err) = ('', '', '');
	$session_starts++;
	$psql = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=sqlstate',
		  '-d', $node->connstr('fuzz') ],
		'<', \$in, '>', \$out, '2>', \$err, $timer);
}

sub op_script
{
	my ($op) = @_;
	my $s = join('', map { "$_;\n" } @{ $op->{pre} || [] });
	$s .= "$op->{sql};\n\\echo \@\@ $op->{id} :SQLSTATE :ROW_COUNT\n"
	  . "\\if :ERROR\n\\echo \@\@M :LAST_ERROR_MESSAGE\n\\echo \@\@E\n\\endif\n";
	$s .= join('', map { "$_;\n" } @{ $op->{post} || [] });
	return $s;
}

my %op_by_id = map { $_->{id} => $_ } @all_ops;
my @session_losses;

sub parse_output
{
	my ($text) = @_;
	my @pending;
	my ($last, $in_message);
	for my $line (split /\n/, $text)
	{
		if ($in_message)
		{
			if ($line eq '@@E') { $in_message = 0 }
			else { $last->{message} .= "\n$line" }
		}
		elsif ($line =~ /^\@\@ (\d+) (\S*) ?(\S*)$/)
		{
			$last = $op_by_id{$1};
			$last->{sqlstate} = $2;
			$last->{rows} = $3;
			$last->{result} = join("\n", @pending);
			@pending = ();
		}
		elsif ($line =~ /^\@\@M ?(.*)$/) { $last->{message} = $1; $in_message = 1 }
		elsif ($line =~ /^\@\@DONE/) { }
		elsif ($line =~ /^R:(.*)$/) { push @pending, $1 }
		elsif (@pending) { $pending[-1] .= "\n$line" }
	}
}

start_psql();
my $t_run = time();
my %round_seconds;
for my $round (@rounds)
{
	my $t0 = time();
	$sim->reset;
	$sim->configure(max_imports => $round->{max_imports});
	$sim->add_repositories(@SIM_REPOS);
	my $marker = "\@\@DONE $round->{no}";
	$in .= join('', map { op_script($_) } @{ $round->{ops} }) . "\\echo $marker\n";
	$timer->start(300);
	my $ok = eval {
		$psql->pump while $out !~ /^\Q$marker\E$/m && $psql->pumpable;
		1;
	};
	parse_output($out);
	$out = '';
	$round_seconds{ $round->{no} } = time() - $t0;
	if (!$ok || !$psql->pumpable || grep { !defined $_->{sqlstate} } @{ $round->{ops} })
	{
		my ($lost) = grep { !defined $_->{sqlstate} } @{ $round->{ops} };
		push @session_losses, { round => $round, op => $lost, why => $@ || 'psql exited',
			stderr => substr($err, -2000) };
		$_->{not_run} = 1 for grep { !defined $_->{sqlstate} } @{ $round->{ops} };
		$lost->{lost} = 1 if $lost;
		eval { $psql->kill_kill; $psql->finish };
		$node->poll_query_until('fuzz', 'SELECT true');
		start_psql();
	}
	$err = substr($err, -20000) if length($err) > 100000;
}
$in .= "\\q\n";
eval { $psql->finish };
my $run_seconds = time() - $t_run;
diag(sprintf('ran %d statements in %.1f s (%d psql session(s))', scalar @all_ops, $run_seconds,
	$session_starts));

# ==== judging the outcomes ========================================================

my %state_label = map { $_ => 1 } @STATES;
my %decision_value = map { $_ => 1 } qw(none unknown abort skip finish_import finish_import_native
  mark_pre_importing mark_importing start_import retry_pre_import retry_import);
my @failures;

# One failure: the rule it breaks, the statement, a short outcome ("SQLSTATE
# XX000", "succeeded", ...), the error message (or what was returned) and
# the hostile values the round had stored before it.
sub fail_op
{
	my ($rule, $op, $round, $outcome, $message, @tags) = @_;
	push @failures, { rule => $rule, op => $op, round => $round, outcome => $outcome,
		message => $message, tags => [@tags] };
}

# Messages inside a cycle summary that mean a stored value (or a bug) broke
# the handling of a repository, not the registry.
my $SUMMARY_BUG = qr/check constraint|out of range|overflow|SPI_|cache lookup|unrecognized|null value in column|duplicate key|must be called|invalid input syntax|division by zero|internal|not supported|infinite/i;

for my $round (@rounds)
{
	my @stored;    # hostile values this round stored so far
	my $url_state = $round->{url};
	for my $op (@{ $round->{ops} })
	{
		next if $op->{not_run};
		if ($op->{lost})
		{
			fail_op('session', $op, $round, 'session lost', 'the server closed the connection', @stored);
			next;
		}
		my $st = $op->{sqlstate} // '';
		my $ok = $st eq '00000';
		my $class = substr($st, 0, 2);
		my $error = $ok ? undef : $op->{message};
		fail_op('internal', $op, $round, "SQLSTATE $st", $error, @stored) if $class eq 'XX' || $class eq '58';
		fail_op('timeout', $op, $round, "SQLSTATE $st", $error, @stored) if $st eq '57014';
		if ($op->{kind} eq 'setup')
		{
			fail_op('setup', $op, $round, "SQLSTATE $st", $error) unless $ok;
			next;
		}
		if ($op->{kind} eq 'guc')
		{
			$url_state = 'fuzzed' if $ok && $op->{guc} eq 'registry_migration.registry_url';
			next;
		}
		if ($op->{kind} eq 'dml')
		{
			if ($op->{singleton})
			{
				if ($ok && ($op->{removal} eq 'truncate' || ($op->{rows} // 0) > 0))
				{
					fail_op('singleton', $op, $round, uc($op->{removal}) . ' accepted', "$op->{rows} row(s) removed");
				}
				elsif (!$ok && $st ne '55000')
				{
					fail_op('singleton', $op, $round, "SQLSTATE $st (expected 55000)", $error);
				}
			}
			push @stored, @{ $op->{tags} } if $ok;
			next;
		}
		if ($op->{kind} eq 'view')
		{
			fail_op('stored_value', $op, $round, "SQLSTATE $st", $error, @stored)
			  if !$op->{nobody} && ($class eq '22' || $class eq '23');
			next;
		}

		# A function call.
		my $fn = $op->{fn};
		my $result = $op->{result} // '';
		if (my $need = $op->{need})
		{
			# Alternatives: SQLSTATEs, NULL (a NULL result), or the value a
			# call must return.
			my $got = $ok ? 'succeeded' : "SQLSTATE $st";
			my $is_null = $ok && ($result eq '<NULL>' || $result =~ /^0 rows/);
			my $met = grep {
				$_ eq 'NULL' ? $is_null : /^[0-9A-Z]{5}$/ ? $st eq $_ : $ok && $result eq $_
			} split /\|/, $need;
			fail_op($op->{need_rule}, $op, $round, "$got (expected $need)", $ok ? "returned '$result'" : $error,
				@stored)
			  unless $met;
			next;
		}
		if ($class eq '22')
		{
			my $explained = $st eq '22004' ? $op->{any_null}
			  : $st eq '22023' ? ($op->{arg_invalid}
				  || (!$NO_NETWORK{$fn} && ($url_state eq 'empty' || $url_state eq 'fuzzed')))
			  : $st eq '22000' ? $LOOKUP{$fn}
			  : 0;
			fail_op('stored_value', $op, $round, "SQLSTATE $st", $error, @stored) unless $explained;
		}
		fail_op('stored_value', $op, $round, "SQLSTATE $st", $error, @stored) if $class eq '23';
		fail_op('sql_error', $op, $round, "SQLSTATE $st", $error)
		  if $class eq '42' && !($op->{nobody} && $st eq '42501');
		next unless $ok;

		my $f = $FN{$fn};
		if ($f->{rettype} eq $STATE_TYPE && !$f->{retset})
		{
			fail_op('result', $op, $round, 'not a state', "returned '$result'")
			  unless $state_label{$result} || ($result eq '<NULL>' && $f->{strict});
		}
		elsif ($fn eq 'retry_decision')
		{
			fail_op('result', $op, $round, 'not a decision', "returned '$result'") unless $decision_value{$result};
		}
		elsif ($fn =~ /^run_(guard|enqueuer)$/)
		{
			my $summary = eval { $json->decode($result) };
			if (ref $summary ne 'HASH' || !exists $summary->{ran})
			{
				fail_op('result', $op, $round, 'not a cycle summary', substr($result, 0, 200));
				next;
			}
			for my $e (@{ $summary->{errors} || [] })
			{
				my $message = ref $e eq 'HASH' ? ($e->{message} // '') : "$e";
				fail_op('stored_value', $op, $round, 'error in the cycle summary', $message, @stored)
				  if $message =~ $SUMMARY_BUG;
			}
		}
		elsif ($f->{rettype} eq 'bigint' && !$f->{retset})
		{
			fail_op('result', $op, $round, 'not a count', "returned '$result'")
			  unless $result =~ /^\d+$/ || ($result eq '<NULL>' && $LOOKUP{$fn});
		}
	}
}

# ---- the SQLSTATEs of each function ----------------------------------------------

my (%by_fn, %calls_of);
for my $op (grep { $_->{kind} ne 'setup' && !$_->{not_run} } @all_ops)
{
	my $key = $op->{kind} eq 'guc' ? 'set_config(registry_migration.*)' : $op->{fn};
	$by_fn{$key}{ $op->{lost} ? 'LOST' : $op->{sqlstate} }++;
	$calls_of{$key}++;
}
my $table = sprintf("%-34s %6s  %s\n", 'function / statement', 'calls', 'SQLSTATE:count');
for my $key (sort keys %by_fn)
{
	my $states = $by_fn{$key};
	$table .= sprintf("%-34s %6d  %s\n", $key, $calls_of{$key},
		join(' ', map { "$_:$states->{$_}" } sort { $states->{$b} <=> $states->{$a} || $a cmp $b } keys %$states));
}
diag("SQLSTATEs per function (seed $SEED):\n$table");

for my $f (@$FUNCTIONS)
{
	cmp_ok($calls_of{ $f->{name} } // 0, '>=', 20, "registry_migration.$f->{name} was called at least 20 times");
}

# ---- failures, grouped by cause ----------------------------------------------------

sub normalize
{
	my ($m) = @_;
	return '' unless defined $m;
	$m =~ s/\n/\\n/g;
	# Quoted values and numbers vary; the names of relations, constraints
	# and columns say what broke.
	my @parts = split /("[^"]*")/, $m;
	my $before = '';
	for my $part (@parts)
	{
		if ($part =~ /^"/) { $part = '"…"' unless $before =~ /(relation|constraint|column|argument) $/ }
		else { $before = $part; $part =~ s/\d+/N/g }
	}
	$m = join('', @parts);
	return substr($m, 0, 120);
}
sub short
{
	my ($s, $n) = @_;
	$s //= '';
	$s =~ s/\n/\\n/g;
	return length($s) > $n ? substr($s, 0, $n) . '…' : $s;
}
sub column_of { (my $t = $_[0]) =~ s/ = .*//s; $t =~ s/^settings INSERT /settings./; $t =~ s/^registry_state INSERT /registry_state./; return $t }

my %RULES = (
	internal => 'no call ends in an internal error (class XX or 58)',
	session => 'the session is never lost (no crash)',
	timeout => 'no call runs into statement_timeout',
	path_grammar => 'a malformed path gives 22023 in every function that takes a path',
	null_arg => 'a NULL argument gives 22004 (NULL from a STRICT look-up)',
	trigger_direct => "a trigger function called directly gives $TRIGGER_DIRECT_SQLSTATE",
	privilege => 'a role without grants gets 42501',
	stored_value => 'a value the tables accept never breaks a later call (no class 22/23 from it)',
	singleton => 'DELETE/TRUNCATE of settings and registry_state are refused with 55000',
	result => 'results are valid (retry_decision follows its decision table)',
	sql_error => 'no class-42 error from a well-formed call',
	setup => "the test's own baseline statements succeed",
);
for my $rule (sort keys %RULES)
{
	my @mine = grep { $_->{rule} eq $rule } @failures;
	my %groups;
	for my $f (@mine)
	{
		# A stored value is a cause whatever the function; elsewhere the
		# function is part of the cause.
		my $key = join(' | ', $rule eq 'stored_value' ? () : $f->{op}{fn}, $f->{outcome},
			$f->{outcome} =~ /^SQLSTATE|summary/ ? normalize($f->{message}) : ());
		push @{ $groups{$key} }, $f;
	}
	my $report = '';
	for my $key (sort { @{ $groups{$b} } <=> @{ $groups{$a} } || $a cmp $b } keys %groups)
	{
		my @g = @{ $groups{$key} };
		my %fns;
		$fns{ $_->{op}{fn} }++ for @g;
		$report .= sprintf("  [%d×] %s\n", scalar @g, $key);
		$report .= '      in: ' . join(', ', map { "$_ ($fns{$_})" } sort { $fns{$b} <=> $fns{$a} || $a cmp $b } keys %fns)
		  . "\n" if $rule eq 'stored_value' || keys %fns > 1;
		if ($rule eq 'stored_value')
		{
			# Directed rounds store one hostile value: an exact cause. For the
			# random ones, the columns stored before every occurrence.
			my %exact;
			$exact{ join(' + ', @{ $_->{tags} }) }++ for grep { $_->{round}{name} !~ /^random/ } @g;
			$report .= '      after (directed): ' . short(join('; ', sort keys %exact), 600) . "\n" if %exact;
			my %common;
			my $first = 1;
			for my $f (@g)
			{
				my %cols = map { column_of($_) => 1 } @{ $f->{tags} };
				%common = $first ? %cols : map { $_ => 1 } grep { $cols{$_} } keys %common;
				$first = 0;
			}
			$report .= '      stored before every occurrence: ' . (%common ? join(', ', sort keys %common) : '(nothing in common)')
			  . "\n";
		}
		my ($example) = (grep({ $_->{round}{name} !~ /^random/ } @g), @g);
		$report .= sprintf("      e.g. round %d (%s): %s\n        -> %s%s\n", $example->{round}{no},
			short($example->{round}{name}, 60), short($example->{op}{desc}, 140), $example->{outcome},
			defined $example->{message} ? ': ' . short($example->{message}, 160) : '');
	}
	is(scalar @mine, 0, "$rule: $RULES{$rule}") or diag("$rule: " . scalar(@mine) . " failure(s), grouped by cause:\n$report");
}

for my $loss (@session_losses)
{
	diag(sprintf("session lost in round %d (%s) at %s: %s\n%s", $loss->{round}{no}, $loss->{round}{name},
		$loss->{op} ? short($loss->{op}{desc}, 200) : '?', $loss->{why}, $loss->{stderr}));
}
is(scalar @session_losses, 0, 'the psql session was never lost');

# ==== the server and the tables afterwards =========================================

is($node->safe_psql('fuzz', 'SELECT pg_postmaster_start_time()'), $postmaster_start,
	'the postmaster was never restarted');
my $log = slurp_file($node->logfile);
my @crash_lines = grep { /terminated by signal|server process .* was terminated|terminating any other active server processes|PANIC|TRAP:/ }
  split /\n/, $log;
is(scalar @crash_lines, 0, 'no backend was terminated by a signal') or diag(join("\n", @crash_lines[ 0 .. ($#crash_lines < 9 ? $#crash_lines : 9) ]));

is($node->safe_psql('fuzz', 'SELECT count(*) FROM registry_migration.settings'), '1',
	'registry_migration.settings has exactly one row');
is($node->safe_psql('fuzz', 'SELECT count(*) FROM registry_migration.registry_state'), '1',
	'registry_migration.registry_state has exactly one row');
my $checks = sql_json(q{
	SELECT coalesce(json_agg(json_build_object('rel', conrelid::regclass::text, 'name', conname,
		'def', pg_get_constraintdef(oid)) ORDER BY conrelid, conname), '[]')
	  FROM pg_constraint WHERE connamespace = 'registry_migration'::regnamespace AND contype = 'c'});
my @broken;
for my $c (@$checks)
{
	(my $expr = $c->{def}) =~ s/^CHECK \((.*)\)( NOT VALID)?$/$1/s;
	my $n = $node->safe_psql('fuzz', "SELECT count(*) FROM $c->{rel} WHERE NOT ($expr)");
	push @broken, "$c->{rel}.$c->{name}: $n rows" if $n ne '0';
}
ok(@$checks > 0, 'CHECK constraints found');
is(scalar @broken, 0, 'every CHECK constraint of the schema holds for every row') or diag(join("\n", @broken));

$node->stop;
$sim->stop;
diag(sprintf('total %.1f s (running the statements: %.1f s); slowest rounds: %s', time() - $t_start, $run_seconds,
	join(', ', map { sprintf('%d %.1fs', $_, $round_seconds{$_}) }
	  (sort { $round_seconds{$b} <=> $round_seconds{$a} } keys %round_seconds)[0 .. 4])));
done_testing();
