# The fuzzer's own deterministic generator (Park-Miller, exact in 64-bit
# integers), so that a seed gives the same statements on every Perl and
# platform, whatever else in the process uses rand().
package SqlFuzz::Random;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(seed_rng rnd pick chance);

my $rng;

sub seed_rng { my ($seed) = @_; $rng = ($seed % 2147483646) + 1; return }
sub rnd { $rng = ($rng * 48271) % 2147483647; return $rng % $_[0] }   # 0 .. n-1
sub pick { return $_[ rnd(scalar @_) ] }
sub chance { return rnd(1_000_000) < $_[0] * 1_000_000 }

1;
