# What the fuzz test prints: the SQLSTATEs each function and statement kind
# ended in, and the failures of one rule grouped by cause (the hostile
# values stored before them, an example statement), so that thousands of
# failures read as a few causes.
package SqlFuzz::Report;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(sqlstate_table failure_report session_loss_text);

# The table of SQLSTATE counts per function (and per kind of statement), and
# the number of calls of each.
sub sqlstate_table
{
	my ($ops) = @_;
	my (%by_fn, %calls_of);
	for my $op (grep { $_->{kind} ne 'setup' && !$_->{not_run} } @$ops)
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
	return ($table, \%calls_of);
}

# A message with the parts that vary folded, so that alike failures group.
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

# The failures of one rule, grouped by cause.
sub failure_report
{
	my ($rule, @mine) = @_;
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
	return $report;
}

# Where the session was lost, why, and the end of psql's stderr.
sub session_loss_text
{
	my ($loss) = @_;
	return sprintf("session lost in round %d (%s) at %s: %s\n%s", $loss->{round}{no}, $loss->{round}{name},
		$loss->{op} ? short($loss->{op}{desc}, 200) : '?', $loss->{why}, $loss->{stderr});
}

1;
