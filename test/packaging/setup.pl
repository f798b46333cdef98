# scripts/setup --runtime prepares a database host with what the extension
# needs to build and run and no test tool; plain scripts/setup adds the test
# tools. Checked on the lists it prints (--list changes nothing), which the
# README's Install section repeats: the
# run-time list holds the package of every pkg-config module the Makefile
# builds with and of the server headers, and none of the tools only the tests use.
use strict;
use warnings;
use Cwd qw(abs_path);
use FindBin;
use Test::More;

my $root = abs_path("$FindBin::RealBin/../..");
chdir $root or die "$root: $!";

my @runtime = split /\n/, `scripts/setup --list --runtime`;
is($? >> 8, 0, 'scripts/setup --list --runtime');
my @full = split /\n/, `scripts/setup --list`;
is($? >> 8, 0, 'scripts/setup --list');
my %runtime = map { $_ => 1 } @runtime;
my %full = map { $_ => 1 } @full;

for my $p (qw(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev build-essential))
{
	ok($runtime{$p}, "a database host gets $p");
}
for my $p (qw(docker-registry libipc-run-perl postgresql-15-cron python3 debhelper postgresql-all git))
{
	ok(!$runtime{$p}, "a database host does not get the test tool $p");
	ok($full{$p}, "the tests get $p");
}
is_deeply([ grep { !$full{$_} } @runtime ], [], 'the tests get everything a database host gets');

# The packages that own what the build uses, as dpkg knows them.
sub owner
{
	my ($path) = @_;
	my ($package) = `dpkg -S '$path' 2>/dev/null` =~ /^([^:,\s]+)/;
	return $package // "(no package owns $path)";
}
my $makefile = `cat Makefile`;
my %modules = map { $_ => 1 } map { split ' ' } $makefile =~ /pkg-config --(?:cflags|libs) ([a-z0-9 ]+)\)/g;
ok(%modules, 'the Makefile builds with pkg-config modules: ' . join(' ', sort keys %modules));
for my $module (sort keys %modules)
{
	chomp(my $pcdir = `pkg-config --variable=pcfiledir $module`);
	my $package = owner("$pcdir/$module.pc");
	ok($runtime{$package}, "the run-time list has $package, which provides pkg-config's $module");
}
chomp(my $headers = `/usr/lib/postgresql/15/bin/pg_config --includedir-server`);
my $server_dev = owner("$headers/postgres.h");
ok($runtime{$server_dev}, "the run-time list has $server_dev, which provides the server headers");

# The README's Install section names the same packages.
my ($readme_install) = `cat README.md` =~ /^## Install\n.*?^sudo apt-get install ([^\n]+)$/ms;
is_deeply([ sort split ' ', $readme_install // '' ], [ sort @runtime ],
	"the README's Install section installs the run-time list");

system('scripts/setup --bogus >/dev/null 2>&1');
is($? >> 8, 2, 'an unknown option is refused before anything is installed');

done_testing();
