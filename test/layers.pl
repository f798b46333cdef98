#!/usr/bin/perl
# The C source's layers point only downward: every file under src/<layer>/
# includes project headers of its own layer or of a layer it may use, and
# src/core/ uses no server header (it is built outside the server by the
# unit tests). One check per file; ends with "layers: N passed, M failed".
use strict;
use warnings;
use FindBin;

my %may_use = (
	core     => [qw(core)],
	store    => [qw(core store)],
	registry => [qw(core registry)],
	control  => [qw(core store registry control)],
	sql      => [qw(core store registry control sql worker)],
	worker   => [qw(core store registry control worker)],
);
my ($passed, $failed) = (0, 0);
my $src = "$FindBin::RealBin/../src";

for my $layer (sort keys %may_use)
{
	my %allowed = map { $_ => 1 } @{ $may_use{$layer} };
	for my $file (sort glob("$src/$layer/*.[ch]"))
	{
		open my $fh, '<', $file or die "$file: $!";
		my @wrong;
		while (<$fh>)
		{
			next unless /^#include "(?:([a-z_]+)\/)?([a-z_]+)\.h"/;
			my ($dir, $name) = ($1, $2);
			if (defined $dir) { push @wrong, "$dir/$name.h" if exists $may_use{$dir} && !$allowed{$dir} }
			elsif ($layer eq 'core' && $name =~ /^(postgres|fmgr|guc)$/) { push @wrong, "$name.h" }
		}
		(my $shown = $file) =~ s{^.*/src/}{src/};
		if (@wrong) { $failed++; print "not ok: $shown includes @wrong\n" }
		else { $passed++ }
	}
}
print "layers: $passed passed, $failed failed\n";
exit($failed ? 1 : 0);
