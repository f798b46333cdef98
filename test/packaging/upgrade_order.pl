# Why the README says "install, restart, then ALTER EXTENSION ... UPDATE":
# a server that preloaded the 1.0 library keeps it after the 1.1 files are
# installed over it, so the update, which creates functions only 1.1's
# library has, fails and changes nothing; after a restart the same update
# succeeds and the worker runs the new library.
#
# The 1.0 library is built from git history (the tree before the upgrade
# script to 1.1 was added) and the current one from the working tree, and
# each is "installed" into a private copy of the PostgreSQL 15 installation
# (the server finds its library and extension directories relative to its
# own binary), so the system installation is never touched.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = abs_path("$FindBin::RealBin/../..");
chdir $root or die "$root: $!";
plan skip_all => 'the 1.0 release is built from git history; this tree is no git checkout'
  unless -e "$root/.git";

sub run { my $out = `$_[0] 2>&1`; return ($? >> 8, $out) }

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
my $pg = '/usr/lib/postgresql/15';

# ---- the two builds --------------------------------------------------------------
my ($first_upgrade) = split /\n/, `git log --format=%H --diff-filter=A -- registry_migration--1.0--1.1.sql | tail -1`;
like($first_upgrade, qr/^[0-9a-f]{40}$/, 'git history has the commit that added the upgrade to 1.1');
my ($rc, $out) = run("mkdir $dir/v1.0 && git archive $first_upgrade^ | tar -C $dir/v1.0 -xf -");
is($rc, 0, 'the 1.0 tree is taken from the commit before it') or diag($out);
like(`cat $dir/v1.0/registry_migration.control`, qr/^default_version = '1\.0'$/m, 'that tree is release 1.0');
($rc, $out) = run("mkdir $dir/current && git ls-files -z --cached --others --exclude-standard"
	  . " | tar --null -T - -cf - | tar -C $dir/current -xf -");
is($rc, 0, 'the working tree is copied') or diag($out);
for my $build (qw(v1.0 current))
{
	($rc, $out) = run("make -s -j2 -C $dir/$build with_llvm=no PG_CONFIG=$pg/bin/pg_config");
	is($rc, 0, "the $build library builds") or diag($out);
}

# ---- a private copy of the installation --------------------------------------------
# Binaries copied (the server resolves links to find its own directory); the
# library and share directories are links to the system's files, but for the
# extension's own files.
my $inst = "$dir/inst";
my $lib = "$inst$pg/lib";
my $ext = "$inst/usr/share/postgresql/15/extension";
($rc, $out) = run("mkdir -p $inst$pg $inst/usr/share/postgresql/15 && cp -a $pg/bin $inst$pg/"
	  . " && mkdir $lib $ext"
	  . " && for f in $pg/lib/*; do ln -s \$f $lib/; done"
	  . " && for f in /usr/share/postgresql/15/*; do [ \$(basename \$f) = extension ] || ln -s \$f $inst/usr/share/postgresql/15/; done"
	  . " && for f in /usr/share/postgresql/15/extension/*; do ln -s \$f $ext/; done"
	  . " && rm -f $lib/registry_migration.so $ext/registry_migration*");
is($rc, 0, 'a private copy of the PostgreSQL 15 installation') or diag($out);

# As "make install" does: a new file, replacing the old one's name.
sub install_build
{
	my ($build) = @_;
	for my $file (glob("$dir/$build/registry_migration--*.sql"), "$dir/$build/registry_migration.control")
	{
		copy($file, "$ext/.tmp") or die "$file: $!";
		rename("$ext/.tmp", "$ext/" . ($file =~ s{.*/}{}r)) or die $!;
	}
	copy("$dir/$build/registry_migration.so", "$lib/.tmp") or die $!;
	rename("$lib/.tmp", "$lib/registry_migration.so") or die $!;
	return;
}
install_build('v1.0');

# ---- a server on it --------------------------------------------------------------
sub as_owner { return $< == 0 ? "runuser -u postgres -- @_" : "@_" }
run("chown -R postgres $dir") if $< == 0;
my $bin = "$inst$pg/bin";
($rc, $out) = run(as_owner("$bin/initdb -D $dir/data -A trust -U postgres --no-sync"));
is($rc, 0, 'initdb') or diag($out);
my $options = "-p 5432 -k $dir -c listen_addresses='' -c fsync=off"
  . " -c shared_preload_libraries=registry_migration -c registry_migration.database=postgres";
sub pg_ctl { return run(as_owner("$bin/pg_ctl -D $dir/data -l $dir/server.log -w $_[0] -o \"$options\"")) }
($rc, $out) = pg_ctl('start');
is($rc, 0, 'the server starts with the 1.0 library preloaded') or diag($out, `cat $dir/server.log`);
END { run(as_owner("$bin/pg_ctl -D $dir/data -m immediate stop")) if $bin && -e "$dir/data/postmaster.pid" }

sub psql
{
	my ($sql) = @_;
	my $out = `psql -X -At -h $dir -p 5432 -U postgres -d postgres -c "$sql" 2>&1`;
	chomp $out;
	return $out;
}
# The worker's pid, once it has connected (it starts with the server).
sub worker
{
	my $pid = '';
	for (1 .. 300)
	{
		$pid = psql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'registry_migration worker'});
		last if $pid =~ /^\d+$/;
		select(undef, undef, undef, 0.1);
	}
	return $pid;
}
sub version { return psql(q{SELECT extversion FROM pg_extension WHERE extname = 'registry_migration'}) }

is(psql('CREATE EXTENSION registry_migration'), 'CREATE EXTENSION', 'CREATE EXTENSION');
is(version(), '1.0', 'the extension is at 1.0');
my $worker = worker();
like($worker, qr/^\d+$/, 'the 1.0 worker runs');

# ---- the new files installed, no restart -------------------------------------------
install_build('current');
like(psql('ALTER EXTENSION registry_migration UPDATE'),
	qr/ERROR:  could not find function "rm_\w+" in file ".*registry_migration\.so"/,
	'before a restart, ALTER EXTENSION ... UPDATE fails: the old library is still loaded');
is(version(), '1.0', '... and changes nothing');
is(worker(), $worker, '... and the worker goes on');

# ---- restart, then update --------------------------------------------------------------
($rc, $out) = pg_ctl('restart');
is($rc, 0, 'the server restarts with the new library') or diag($out);
like(worker(), qr/^\d+$/, 'the worker runs again');
is(version(), '1.0', 'the extension is still at 1.0 after the restart');
is(psql('ALTER EXTENSION registry_migration UPDATE'), 'ALTER EXTENSION', 'after the restart the update succeeds');
isnt(version(), '1.0', 'the extension is at ' . version());
is(psql('SELECT count(*) FROM registry_migration.state_counts'), '7', 'what the new version added works');

done_testing();
