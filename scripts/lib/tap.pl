#!/usr/bin/perl
# Runs TAP test files as "prove --timer" does (TAP::Harness, prove's own
# engine: the same progress lines and summary), then prints one last line
#   tap: N passed, M failed
# counting assertions from the harness's own results, not from its text. A
# file that fails without a failed assertion (it died, its plan is wrong, it
# exited non-zero) counts as one failure.
use strict;
use warnings;
use TAP::Harness;

my $aggregator = TAP::Harness->new({ timer => 1 })->runtests(@ARGV);
my ($passed, $failed) = (0, 0);
for my $file ($aggregator->descriptions)
{
	my ($parser) = $aggregator->parsers($file);
	my $bad = scalar($parser->failed);
	$bad = 1 if $bad == 0 && $parser->has_problems;
	$passed += $parser->tests_run - scalar($parser->failed);
	$failed += $bad;
}
$failed = 1 if $failed == 0 && @ARGV && !$aggregator->all_passed;
print "tap: $passed passed, $failed failed\n";
exit($failed ? 1 : 0);
