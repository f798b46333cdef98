# The rounds of the fuzz run, in order. Directed rounds come first and
# guarantee coverage: every settings column with every hostile value of its
# type followed by a battery of calls; registry_state values; counters at
# their maximum followed by aborts; rows in every state with every skip
# reason; every path function with every malformed path and with NULLs; the
# trigger functions called directly; the whole retry_decision table. Random
# rounds follow until the target number of calls, and the removal of the
# singleton rows comes last.
package SqlFuzz::Plan;

use strict;
use warnings;
use Exporter 'import';
use SqlFuzz::Generator;
use SqlFuzz::Hostile;
use SqlFuzz::Random;
use SqlFuzz::Surface;
use SqlFuzz::Values;

our @EXPORT = qw(plan_rounds);

# Generates every round into @rounds (SqlFuzz::Generator); returns how many
# of the calls the directed rounds made.
sub plan_rounds
{
	my ($target_calls) = @_;
	settings_rounds();
	registry_state_rounds();
	counter_rounds();
	skip_reason_round();
	path_and_null_rounds();
	trigger_round();
	retry_decision_round();
	my $directed_calls = $total_calls;
	random_rounds($target_calls);
	removal_rounds();
	return $directed_calls;
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

# Every settings column, every hostile value of its type, then the battery.
sub settings_rounds
{
	for my $c (@SETTINGS_COLUMNS)
	{
		for my $value (hostile_values($c->{type}))
		{
			new_round("settings.$c->{name} = $value");
			settings_update($c->{name}, $value);
			battery();
		}
	}
	return;
}

# Every hostile registry_state value, then the battery.
sub registry_state_rounds
{
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
	return;
}

# Counters at their maximum, then every kind of abort and the cycles.
sub counter_rounds
{
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
	return;
}

# Every state with every skip reason (rows the table accepts), then
# notifications, admin calls and both cycles on them.
sub skip_reason_round
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
	return;
}

# Every function that takes a path, every malformed path, other arguments
# good; then every argument NULL in turn.
sub path_and_null_rounds
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
	return;
}

# Trigger functions called directly, as superuser and without grants.
sub trigger_round
{
	new_round('trigger functions called directly');
	for my $f (grep { $_->{trigger} } @$FUNCTIONS)
	{
		call_op($f, []) for 1 .. 3;
		call_op($f, [], nobody => 1);
	}
	return;
}

# The whole retry_decision table with boundary counters.
sub retry_decision_round
{
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
	return;
}

# Random rounds until the target number of calls: calls mixed with hostile
# DML, SETs and views against the simulator (60 %), a closed port (30 %) or
# no registry_url (10 %).
sub random_rounds
{
	my ($target_calls) = @_;
	my $random_round = 0;
	while ($total_calls < $target_calls)
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
	return;
}

# Removing the singleton rows (last: what it breaks is seen in the checks
# that follow the run).
sub removal_rounds
{
	for my $statement ('DELETE FROM registry_migration.settings', 'TRUNCATE registry_migration.settings',
		'DELETE FROM registry_migration.registry_state', 'TRUNCATE registry_migration.registry_state')
	{
		new_round($statement);
		my ($table) = $statement =~ /registry_migration\.(\w+)/;
		dml_op($table, $statement, singleton => $table, removal => $statement =~ /^TRUNCATE/ ? 'truncate' : 'delete',
			tags => ["$statement"]);
		battery();
	}
	return;
}

1;
