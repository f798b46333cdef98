# Runs the rounds in ONE psql session (restarted only if the server drops
# it). After each statement psql echoes a marker with :SQLSTATE, :ROW_COUNT
# and :LAST_ERROR_MESSAGE, so every result and error is attributed to its
# statement: run_rounds() stores them in the op (sqlstate, rows, result,
# message; lost or not_run when the session went away).
package SqlFuzz::Runner;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use Time::HiRes qw(time);

our @EXPORT = qw(run_rounds);

my ($in, $out, $err) = ('', '', '');
my $psql;
my $session_starts = 0;
my $timer = IPC::Run::timeout(300);
my $node;

# ON_ERROR_STOP=0: an error is an outcome to record, not the end of the run.
sub start_psql
{
	($in, $out, $err) = ('', '', '');
	$session_starts++;
	$psql = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-v', 'VERBOSITY=sqlstate',
		  '-d', $node->connstr('fuzz') ],
		'<', \$in, '>', \$out, '2>', \$err, $timer);
}

# The statement with its role change around it, then the marker that names
# it and its outcome.
sub op_script
{
	my ($op) = @_;
	my $s = join('', map { "$_;\n" } @{ $op->{pre} || [] });
	$s .= "$op->{sql};\n\\echo \@\@ $op->{id} :SQLSTATE :ROW_COUNT\n"
	  . "\\if :ERROR\n\\echo \@\@M :LAST_ERROR_MESSAGE\n\\echo \@\@E\n\\endif\n";
	$s .= join('', map { "$_;\n" } @{ $op->{post} || [] });
	return $s;
}

my %op_by_id;

# Stores each marker's SQLSTATE, row count, result (the R: lines before it)
# and message in its op.
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

# Runs the rounds against the node, resetting the simulator (with these
# repositories) before each. Returns the session losses, the seconds each
# round took, the number of psql sessions started and the total seconds.
sub run_rounds
{
	my ($fuzz_node, $sim, $rounds, $sim_repos) = @_;
	$node = $fuzz_node;
	%op_by_id = map { $_->{id} => $_ } map { @{ $_->{ops} } } @$rounds;
	my @session_losses;
	$session_starts = 0;

	start_psql();
	my $t_run = time();
	my %round_seconds;
	for my $round (@$rounds)
	{
		my $t0 = time();
		$sim->reset;
		$sim->configure(max_imports => $round->{max_imports});
		$sim->add_repositories(@$sim_repos);
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
	return (session_losses => \@session_losses, round_seconds => \%round_seconds,
		session_starts => $session_starts, seconds => time() - $t_run);
}

1;
