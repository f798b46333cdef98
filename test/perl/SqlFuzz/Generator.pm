# The fuzzer's statements: arguments drawn from the value pools, operations
# (calls, views, DML, setup statements) with what each must end in, and the
# rounds they belong to, each starting from a fresh baseline.
#
# Every random draw goes through SqlFuzz::Random, in the order the test
# generates, so one seed gives one sequence of statements.
package SqlFuzz::Generator;

use strict;
use warnings;
use Exporter 'import';
use SqlFuzz::Expectations;
use SqlFuzz::Random;
use SqlFuzz::Surface;
use SqlFuzz::Values;

our @EXPORT = qw(
  set_registry_urls %URL $closed_port
  v_null v_text gen_arg good_arg P S I B R
  add_op setup_op call_op call random_call view_op dml_op
  row_values new_round @rounds @round_paths $total_calls
);

# Where a round's registry_url points: the simulator, a closed port, or
# nowhere.
our %URL;
our $closed_port;

sub set_registry_urls
{
	my ($sim_url, $port) = @_;
	$closed_port = $port;
	%URL = (sim => $sim_url, closed => "http://127.0.0.1:$closed_port", empty => '');
	return;
}

# ---- arguments -------------------------------------------------------------------

# A value is { sql, null, val (the text when known), and flags }.
sub v_null { return { sql => "NULL::$_[0]", null => 1 } }
sub v_text { return { sql => lit($_[0]), val => $_[0] } }

# The paths of the repositories the current round inserted.
our @round_paths;

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

our @rounds;
my $current;
my $next_op_id = 0;
our $total_calls = 0;

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

# A call of a function with these arguments, and what it must end in.
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

# ---- the baseline of a round -------------------------------------------------------

# The VALUES tuple of a repositories row: path and state, sane defaults, and
# the columns given.
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

# Starts a round from its baseline: the session reset, the settings (sane,
# random, or as given), three old events, and the fixed or random
# repositories the round works on.
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

1;
