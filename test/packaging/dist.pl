# make dist writes the PGXN release archive registry_migration-<version>.zip:
# every file committed at HEAD under one directory named after the release,
# with what a build and PGXN need (install and upgrade scripts, the control
# template, the sources, README, LICENSE, META.json) and nothing else (no
# .git, no build product, no test log), leaving the working tree as it was.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Temp qw(tempdir);
use FindBin;
use IO::Uncompress::Unzip qw($UnzipError);
use JSON::PP;
use Test::More;

my $root = abs_path("$FindBin::RealBin/../..");
chdir $root or die "$root: $!";
plan skip_all => 'make dist archives a git checkout; this tree is none'
  unless -e "$root/.git";

sub run { my $out = `$_[0] 2>&1`; return ($? >> 8, $out) }

my $version = JSON::PP->new->decode(scalar `cat META.json`)->{version};
my $prefix = "registry_migration-$version/";
my ($rc, $out) = run('make -s -n dist');
like($out, qr/-o \S*registry_migration-\Q$version\E\.zip HEAD\b/,
	"make dist names the archive registry_migration-$version.zip and archives HEAD");

my $status_before = `git status --porcelain --ignored`;
my $dir = tempdir(CLEANUP => 1);
($rc, $out) = run("make -s dist DISTFILE=$dir/dist.zip");
is($rc, 0, 'make dist succeeds') or diag($out);

# The archive's entries (directories end with a slash) and META.json.
my (@entries, $archived_meta);
my $zip = IO::Uncompress::Unzip->new("$dir/dist.zip") or die "cannot read the archive: $UnzipError";
for (my $more = 1; $more > 0; $more = $zip->nextStream)
{
	my $name = $zip->getHeaderInfo->{Name};
	push @entries, $name;
	if ($name eq "${prefix}META.json")
	{
		local $/;
		$archived_meta = <$zip>;
	}
}
$zip->close;

is_deeply([ grep { index($_, $prefix) != 0 } @entries ], [], "every entry is under $prefix");
my %in = map { substr($_, length $prefix) => 1 } @entries;
for my $file (qw(Makefile registry_migration.control.in registry_migration--1.0.sql
	registry_migration--1.1.sql registry_migration--1.0--1.1.sql src/registry_migration.c
	src/core/ src/worker/worker.c README.md LICENSE META.json CHANGELOG.md
	debian/control debian/rules sql/setup.sql expected/setup.out test/t/005_upgrade.pl))
{
	ok($in{$file}, "the archive has $file");
}
my @unwanted = grep { m{(^|/)\.git/|(^|/)tmp_check/|(^|/)log/|(^|/)results/|regression\.(diffs|out)$|\.(o|so|bc|zip|deb)$|^registry_migration\.control$} }
  keys %in;
is_deeply(\@unwanted, [], 'no .git, build product, archive or test log in the archive');

my @committed = split /\n/, `git ls-tree -r --name-only HEAD`;
my @files = grep { $_ ne "" && !m{/$} } keys %in;
is_deeply([ sort @files ], [ sort @committed ], 'exactly the files committed at HEAD');
is($archived_meta, scalar `git show HEAD:META.json`, "the archive's META.json is HEAD's");

is(`git status --porcelain --ignored`, $status_before, 'make dist leaves the working tree as it was');

done_testing();
