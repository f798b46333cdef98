# The Debian package postgresql-15-registry-migration builds with
# dpkg-buildpackage from a copy of the working tree (never in the tree
# itself), runs the regression suite against its own files while it builds
# (pg_buildext installcheck), and installs the library under
# /usr/lib/postgresql/15/lib and the control file and every SQL script under
# /usr/share/postgresql/15/extension, with the files of the tree unchanged.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Compare qw(compare);
use File::Temp qw(tempdir);
use FindBin;
use JSON::PP;
use Test::More;

my $root = abs_path("$FindBin::RealBin/../..");
chdir $root or die "$root: $!";
plan skip_all => 'the package is built from the files git knows of; this tree is no git checkout'
  unless -e "$root/.git";

sub run { my $out = `$_[0] 2>&1`; return ($? >> 8, $out) }

my $version = JSON::PP->new->decode(scalar `cat META.json`)->{version};
my ($extversion) = `cat Makefile` =~ /^EXTVERSION\s*=\s*(\S+)\s*$/m;
my $package = 'postgresql-15-registry-migration';
my $status_before = `git status --porcelain --ignored`;

# The copy: the files git tracks or would track (so no build product and no
# log), in a directory the cluster of the build's test run can read (as root,
# pg_virtualenv runs it as "postgres").
my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
mkdir "$dir/src" or die;
my ($rc, $out) = run("git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C $dir/src -xf -");
is($rc, 0, 'the tree is copied') or diag($out);

# The build, with its tests (nocheck would skip them).
delete $ENV{DEB_BUILD_OPTIONS};
delete $ENV{DEB_BUILD_PROFILES};
($rc, $out) = run("cd $dir/src && dpkg-buildpackage -us -uc -b");
is($rc, 0, 'dpkg-buildpackage -us -uc -b succeeds') or diag(substr($out, -6000));
like($out, qr/installcheck.*All \d+ tests passed/s,
	"the build ran the regression suite against the package's files");

my $deb = "$dir/${package}_${version}_" . `dpkg --print-architecture` =~ s/\s+//r . '.deb';
ok(-f $deb, "it made $deb") or BAIL_OUT('no package to look at');

# ---- what the package installs ---------------------------------------------------
my @paths = map { (split ' ', $_, 6)[5] =~ s{^\./}{/}r } split /\n/, `dpkg-deb -c $deb`;
my %has = map { $_ => 1 } @paths;
my $lib = '/usr/lib/postgresql/15/lib';
my $share = '/usr/share/postgresql/15/extension';
ok($has{"$lib/registry_migration.so"}, "the library is in $lib");
ok($has{"$share/registry_migration.control"}, "the control file is in $share");
my @scripts = map { s{.*/}{}r } glob("$root/registry_migration--*.sql");
cmp_ok(scalar(@scripts), '>=', 3, 'the tree has install and upgrade scripts');
for my $script (@scripts)
{
	ok($has{"$share/$script"}, "$script is in $share");
}
my @elsewhere = grep {
	!m{^/$|^/usr/$|^/usr/(lib|share)/$|^/usr/lib/postgresql/(15/(lib/.*)?)?$|^/usr/share/postgresql/(15/(extension/.*)?)?$|^/usr/share/doc/(\Q$package\E/.*)?$}
} @paths;
is_deeply(\@elsewhere, [], 'nothing outside the PostgreSQL 15 directories and its documentation');
ok($has{"/usr/share/doc/$package/copyright"}, 'the copyright file is shipped');

# ---- its control fields ---------------------------------------------------------
my %field;
for my $line (split /\n/, `dpkg-deb -f $deb Package Version Architecture Section Depends Description`)
{
	$field{$1} = $2 if $line =~ /^(\S+): (.*)$/;
}
is($field{Package}, $package, 'Package');
is($field{Version}, $version, 'Version: the release version, as in META.json');
is($field{Section}, 'database', 'Section');
isnt($field{Architecture} // 'all', 'all', 'Architecture: a built library, not "all"');
like($field{Depends}, qr/(^|, )postgresql-15\b/, 'Depends on the PostgreSQL 15 server');
like($field{Depends}, qr/(^|, )libcurl4\b/, 'Depends on libcurl');
like($field{Description}, qr/container registry migration/, 'Description');
like(`dpkg-deb -I $deb`, qr/^ Maintainer: .+ <.+\@.+>$/m, 'Maintainer with an address');

# ---- the files, unpacked into a throw-away root -------------------------------------
mkdir "$dir/root" or die;
($rc, $out) = run("dpkg-deb -x $deb $dir/root");
is($rc, 0, 'the package unpacks') or diag($out);
my @changed = grep { compare("$root/$_", "$dir/root$share/$_") != 0 } @scripts;
is_deeply(\@changed, [], "the packaged SQL scripts are the tree's");
my $control = `cat $dir/root$share/registry_migration.control`;
like($control, qr/^default_version = '\Q$extversion\E'$/m, "the packaged control file's default_version is $extversion");
like($control, qr/^module_pathname = '\$libdir\/registry_migration'$/m, 'it loads the library from $libdir');
is(substr(`head -c 4 $dir/root$lib/registry_migration.so`, 0, 4), "\x7fELF", 'the library is an ELF object');

# What the README's Releasing section runs to install it, simulated: its
# dependencies can be met from Debian.
($rc, $out) = run("apt-get install --simulate $deb");
is($rc, 0, 'apt-get install ./' . ($deb =~ s{.*/}{}r) . ' would install it') or diag($out);
like($out, qr/^Inst \Q$package\E /m, '... the package itself');

is(`git status --porcelain --ignored`, $status_before, 'the build left the working tree as it was');

done_testing();
