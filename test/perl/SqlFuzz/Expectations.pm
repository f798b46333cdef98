# What each call and statement of the fuzzer must end in, and the judging of
# the outcomes against it.
#
# At generation time call_expectation() fixes, from the contract alone, the
# answers a call may give (a SQLSTATE, NULL or a value). After the run
# judge_outcomes() walks every statement and returns one failure for each
# broken rule of %RULES, with the hostile values its round stored before it.
package SqlFuzz::Expectations;

use strict;
use warnings;
use Exporter 'import';
use JSON::PP;
use SqlFuzz::Surface;
use SqlFuzz::Values;

our @EXPORT = qw($TRIGGER_DIRECT_SQLSTATE @EXPECTED_FUNCTIONS %RULES call_expectation judge_outcomes);

our @EXPECTED_FUNCTIONS = qw(retry_decision run_guard run_enqueuer handle_notification cancel
  retry skip reset purge_events registry_import_status registry_tags_count
  registry_import_statuses registry_request worker_status_internal);

# A trigger function called directly must give a clear SQLSTATE (0A000),
# not XX000 (PL/pgSQL's own answer to such a call).
our $TRIGGER_DIRECT_SQLSTATE = '0A000';

# Functions that never talk to the registry (a 22023 from them must come
# from an argument) and the look-ups, which may answer class 22 for an
# unusable registry answer.
my %NO_NETWORK = map { $_ => 1 } qw(handle_notification skip reset purge_events retry_decision
  worker_status_internal);
my %LOOKUP = map { $_ => 1 } qw(registry_import_status registry_tags_count registry_import_statuses
  registry_request);

# The rules, one assertion each; a failure names the rule it breaks.
our %RULES = (
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

my %decision_value = map { $_ => 1 } qw(none unknown abort skip finish_import finish_import_native
  mark_pre_importing mark_importing start_import retry_pre_import retry_import);

# Messages inside a cycle summary that mean a stored value (or a bug) broke
# the handling of a repository, not the registry.
my $SUMMARY_BUG = qr/check constraint|out of range|overflow|SPI_|cache lookup|unrecognized|null value in column|duplicate key|must be called|invalid input syntax|division by zero|internal|not supported|infinite/i;

my $json = JSON::PP->new->utf8(0)->canonical->allow_nonref;

# The failures of the statements of these rounds (each op carries the
# sqlstate, rows, result and message the run gave it).
sub judge_outcomes
{
	my ($rounds) = @_;
	my @failures;
	my %state_label = map { $_ => 1 } @STATES;

	# One failure: the rule it breaks, the statement, a short outcome ("SQLSTATE
	# XX000", "succeeded", ...), the error message (or what was returned) and
	# the hostile values the round had stored before it.
	my $fail_op = sub
	{
		my ($rule, $op, $round, $outcome, $message, @tags) = @_;
		push @failures, { rule => $rule, op => $op, round => $round, outcome => $outcome,
			message => $message, tags => [@tags] };
	};

	for my $round (@$rounds)
	{
		my @stored;    # hostile values this round stored so far
		my $url_state = $round->{url};
		for my $op (@{ $round->{ops} })
		{
			next if $op->{not_run};
			if ($op->{lost})
			{
				$fail_op->('session', $op, $round, 'session lost', 'the server closed the connection', @stored);
				next;
			}
			my $st = $op->{sqlstate} // '';
			my $ok = $st eq '00000';
			my $class = substr($st, 0, 2);
			my $error = $ok ? undef : $op->{message};
			$fail_op->('internal', $op, $round, "SQLSTATE $st", $error, @stored) if $class eq 'XX' || $class eq '58';
			$fail_op->('timeout', $op, $round, "SQLSTATE $st", $error, @stored) if $st eq '57014';
			if ($op->{kind} eq 'setup')
			{
				$fail_op->('setup', $op, $round, "SQLSTATE $st", $error) unless $ok;
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
						$fail_op->('singleton', $op, $round, uc($op->{removal}) . ' accepted', "$op->{rows} row(s) removed");
					}
					elsif (!$ok && $st ne '55000')
					{
						$fail_op->('singleton', $op, $round, "SQLSTATE $st (expected 55000)", $error);
					}
				}
				push @stored, @{ $op->{tags} } if $ok;
				next;
			}
			if ($op->{kind} eq 'view')
			{
				$fail_op->('stored_value', $op, $round, "SQLSTATE $st", $error, @stored)
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
				$fail_op->($op->{need_rule}, $op, $round, "$got (expected $need)", $ok ? "returned '$result'" : $error,
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
				$fail_op->('stored_value', $op, $round, "SQLSTATE $st", $error, @stored) unless $explained;
			}
			$fail_op->('stored_value', $op, $round, "SQLSTATE $st", $error, @stored) if $class eq '23';
			$fail_op->('sql_error', $op, $round, "SQLSTATE $st", $error)
			  if $class eq '42' && !($op->{nobody} && $st eq '42501');
			next unless $ok;

			my $f = $FN{$fn};
			if ($f->{rettype} eq $STATE_TYPE && !$f->{retset})
			{
				$fail_op->('result', $op, $round, 'not a state', "returned '$result'")
				  unless $state_label{$result} || ($result eq '<NULL>' && $f->{strict});
			}
			elsif ($fn eq 'retry_decision')
			{
				$fail_op->('result', $op, $round, 'not a decision', "returned '$result'") unless $decision_value{$result};
			}
			elsif ($fn =~ /^run_(guard|enqueuer)$/)
			{
				my $summary = eval { $json->decode($result) };
				if (ref $summary ne 'HASH' || !exists $summary->{ran})
				{
					$fail_op->('result', $op, $round, 'not a cycle summary', substr($result, 0, 200));
					next;
				}
				for my $e (@{ $summary->{errors} || [] })
				{
					my $message = ref $e eq 'HASH' ? ($e->{message} // '') : "$e";
					$fail_op->('stored_value', $op, $round, 'error in the cycle summary', $message, @stored)
					  if $message =~ $SUMMARY_BUG;
				}
			}
			elsif ($f->{rettype} eq 'bigint' && !$f->{retset})
			{
				$fail_op->('result', $op, $round, 'not a count', "returned '$result'")
				  unless $result =~ /^\d+$/ || ($result eq '<NULL>' && $LOOKUP{$fn});
			}
		}
	}
	return @failures;
}

1;
