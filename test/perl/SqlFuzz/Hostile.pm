# Hostile statements of the random rounds: DML on settings, registry_state,
# repositories, events and denied_namespaces that stores values at the edge
# of what the tables accept (or beyond it), and SETs of every
# registry_migration.* parameter. Each names the hostile values it stores
# (tags), so a later failure can be traced back to them.
package SqlFuzz::Hostile;

use strict;
use warnings;
use Exporter 'import';
use SqlFuzz::Generator;
use SqlFuzz::Random;
use SqlFuzz::Surface;
use SqlFuzz::Values;

our @EXPORT = qw(settings_update random_settings_dml random_registry_state_dml random_repositories_dml
  random_other_dml random_guc_op);

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

# Hostile rows get new paths, so that their INSERT does not collide.
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

1;
