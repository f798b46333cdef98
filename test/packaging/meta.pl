# META.json is a valid PGXN distribution description (Meta Spec 1.0.0), and
# the facts it repeats agree with their one source: the version with the
# Makefile's EXTVERSION (and the Debian changelog), the install script with
# the files in the tree, the abstract with the control file's comment, the
# license with LICENSE and debian/copyright. CHANGELOG.md has a section per
# release.
#
# Debian packages no PGXN validator, so the rules of the spec are checked
# here; the second half proves each rule rejects what it should.
use strict;
use warnings;
use FindBin;
use JSON::PP;
use Test::More;

my $root = "$FindBin::RealBin/../..";

sub slurp
{
	my ($file) = @_;
	open(my $fh, '<', "$root/$file") or die "$file: $!";
	local $/;
	return scalar <$fh>;
}

# ---- the rules of the PGXN Meta Spec 1.0.0 ----------------------------------

my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
# A term: at least two characters, no slash, backslash, space or control.
my $term = qr/^[^\/\\\s\p{Cntrl}]{2,}$/;
my $range_part = qr/(?:(?:[=!]=|[<>]=?)\s*)?(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?/;
my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd
  gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5
  postgresql qpl_1_0 ssleay sun zlib open_source restricted unrestricted unknown);
my %top_keys = map { $_ => 1 } qw(name version abstract maintainer license provides meta-spec
  description generated_by tags no_index prereqs release_status resources);
my %phases = map { $_ => 1 } qw(configure build test runtime develop);
my %relationships = map { $_ => 1 } qw(requires recommends suggests conflicts);
my %extension_keys = map { $_ => 1 } qw(file version abstract docfile);

sub is_string { my ($v) = @_; return defined $v && !ref $v && length $v > 0 }
sub is_object { return ref $_[0] eq 'HASH' }
sub custom_key { return $_[0] =~ /^[xX]_./ }

# Every problem of a decoded META.json, as readable lines.
sub meta_problems
{
	my ($m) = @_;
	my @p;
	return ('the document is not a JSON object') unless is_object($m);
	for my $key (qw(name version abstract maintainer license provides meta-spec))
	{
		push @p, "required key $key is missing" unless exists $m->{$key};
	}
	for my $key (sort keys %$m)
	{
		push @p, "unknown key $key" unless $top_keys{$key} || custom_key($key);
	}
	push @p, 'name is not a term' if exists $m->{name} && !(is_string($m->{name}) && $m->{name} =~ $term);
	push @p, 'version is not a semantic version'
	  if exists $m->{version} && !(is_string($m->{version}) && $m->{version} =~ $semver);
	for my $key (qw(abstract description generated_by))
	{
		push @p, "$key is not a non-empty string" if exists $m->{$key} && !is_string($m->{$key});
	}
	if (exists $m->{maintainer})
	{
		my $mt = $m->{maintainer};
		push @p, 'maintainer is not a string or a list of strings'
		  unless is_string($mt) || (ref $mt eq 'ARRAY' && @$mt && !grep { !is_string($_) } @$mt);
	}
	push @p, license_problems($m->{license}) if exists $m->{license};
	push @p, provides_problems($m->{provides}) if exists $m->{provides};
	if (exists $m->{'meta-spec'})
	{
		my $ms = $m->{'meta-spec'};
		if (!is_object($ms)) { push @p, 'meta-spec is not an object' }
		else
		{
			push @p, 'meta-spec version is not 1.0.x'
			  unless is_string($ms->{version}) && $ms->{version} =~ /^1\.0\.\d+$/;
			push @p, 'meta-spec url is not the spec\'s'
			  if exists $ms->{url} && ($ms->{url} // '') !~ m{^https?://pgxn\.org/meta/spec\.txt$};
			push @p, map { "unknown meta-spec key $_" }
			  grep { $_ ne 'version' && $_ ne 'url' && !custom_key($_) } sort keys %$ms;
		}
	}
	push @p, prereqs_problems($m->{prereqs}) if exists $m->{prereqs};
	push @p, 'release_status is not stable, testing or unstable'
	  if exists $m->{release_status} && ($m->{release_status} // '') !~ /^(stable|testing|unstable)$/;
	if (exists $m->{tags})
	{
		my $t = $m->{tags};
		push @p, 'tags is not a non-empty list'
		  unless ref $t eq 'ARRAY' && @$t;
		push @p, map { "tag '$_' is not a valid tag" }
		  grep { !(is_string($_) && length($_) <= 255 && /^[^\/\\\p{Cntrl}]{2,}$/) } @{ ref $t eq 'ARRAY' ? $t : [] };
	}
	return @p;
}

sub license_problems
{
	my ($l) = @_;
	return () if is_string($l) && $licenses{$l};
	return () if ref $l eq 'ARRAY' && @$l && !grep { !(is_string($_) && $licenses{$_}) } @$l;
	return () if is_object($l) && %$l && !grep { !(is_string($_) && m{^[a-z][a-z0-9+.-]*:}i) } values %$l;
	return ('license is not a known license name, a list of them, or an object of URLs');
}

sub provides_problems
{
	my ($pr) = @_;
	return ('provides is not a non-empty object') unless is_object($pr) && %$pr;
	my @p;
	for my $ext (sort keys %$pr)
	{
		push @p, "extension name $ext is not a term" unless $ext =~ $term;
		my $e = $pr->{$ext};
		if (!is_object($e)) { push @p, "provides.$ext is not an object"; next }
		push @p, "provides.$ext.file is missing" unless is_string($e->{file});
		push @p, "provides.$ext.version is not a semantic version"
		  unless is_string($e->{version}) && $e->{version} =~ $semver;
		for my $path (grep { exists $e->{$_} } qw(file docfile))
		{
			push @p, "provides.$ext.$path is not a relative Unix path"
			  unless is_string($e->{$path}) && $e->{$path} !~ m{^/|\\|(^|/)\.\.(/|$)};
		}
		push @p, map { "unknown key provides.$ext.$_" }
		  grep { !$extension_keys{$_} && !custom_key($_) } sort keys %$e;
	}
	return @p;
}

sub prereqs_problems
{
	my ($pr) = @_;
	return ('prereqs is not a non-empty object') unless is_object($pr) && %$pr;
	my @p;
	for my $phase (sort keys %$pr)
	{
		next if custom_key($phase);
		if (!$phases{$phase}) { push @p, "unknown prereqs phase $phase"; next }
		my $rels = $pr->{$phase};
		if (!(is_object($rels) && %$rels)) { push @p, "prereqs.$phase is not a non-empty object"; next }
		for my $rel (sort keys %$rels)
		{
			next if custom_key($rel);
			if (!$relationships{$rel}) { push @p, "unknown relationship prereqs.$phase.$rel"; next }
			my $deps = $rels->{$rel};
			if (!(is_object($deps) && %$deps)) { push @p, "prereqs.$phase.$rel is not a non-empty object"; next }
			for my $dep (sort keys %$deps)
			{
				my $v = $deps->{$dep};
				push @p, "prerequisite $dep is not a term" unless $dep =~ $term;
				push @p, "prerequisite $dep has no valid version range"
				  unless defined $v && !ref $v
				  && ($v eq '0' || $v =~ /^$range_part(?:,\s*$range_part)*$/);
			}
		}
	}
	return @p;
}

# ---- the project's META.json ----------------------------------------------------

my $meta = eval { JSON::PP->new->decode(slurp('META.json')) };
ok($meta, 'META.json is JSON') or diag($@);
is_deeply([ meta_problems($meta) ], [], 'META.json follows the PGXN Meta Spec 1.0.0');

my ($extversion) = slurp('Makefile') =~ /^EXTVERSION\s*=\s*(\S+)\s*$/m;
like($extversion, qr/^\d+\.\d+(\.\d+)?$/, "the Makefile's EXTVERSION ($extversion)");
(my $three_part = $extversion) =~ s/^(\d+\.\d+)$/$1.0/;
is($meta->{version}, $three_part, 'the distribution version is EXTVERSION in three parts');
is($meta->{name}, 'registry_migration', 'the distribution is named after the extension');
my $ext = $meta->{provides}{registry_migration};
ok($ext, 'it provides the extension registry_migration');
is($ext->{version}, $three_part, "the extension's version is the same");
is($ext->{file}, "registry_migration--$extversion.sql", "its file is the install script of $extversion");
ok(-f "$root/$ext->{file}", "$ext->{file} exists");
ok(-f "$root/$ext->{docfile}", "its docfile $ext->{docfile} exists");
is($meta->{prereqs}{runtime}{requires}{PostgreSQL}, '15.0.0', 'it needs PostgreSQL 15 at run time');
is($meta->{license}, 'postgresql', 'under the PostgreSQL License');
is($meta->{'meta-spec'}{version}, '1.0.0', 'described by Meta Spec 1.0.0');

my $control = slurp('registry_migration.control.in');
like($control, qr/^default_version = '\@EXTVERSION\@'$/m,
	"the control file's default_version is filled in from EXTVERSION");
my ($comment) = $control =~ /^comment = '(.*)'$/m;
is($meta->{abstract}, $comment, "the abstract is the control file's comment");

my ($deb_version) = slurp('debian/changelog') =~ /^\S+ \(([^)]+)\)/;
is($deb_version, $three_part, 'the Debian changelog is at the same version');
is(slurp('debian/pgversions'), "15\n", 'the Debian package is built for PostgreSQL 15');

my $license = slurp('LICENSE');
like($license, qr/^PostgreSQL License\n\nCopyright \(c\) \d{4}(-\d{4})?, The registry_migration authors\n/,
	'LICENSE is the PostgreSQL License of the registry_migration authors');
like($license, qr/Permission to use, copy, modify, and distribute this software/, 'LICENSE grants the usual rights');
like(slurp('debian/copyright'), qr/^License: PostgreSQL$/m, 'debian/copyright names the same license');

my $changelog = slurp('CHANGELOG.md');
(my $two_part = $extversion) =~ s/\.0$//;
like($changelog, qr/^## \Q$two_part\E\b/m, "CHANGELOG.md has a section for $two_part");
like($changelog, qr/^## 1\.0$/m, 'CHANGELOG.md has a section for 1.0');

# ---- each rule rejects what it should ---------------------------------------------

my %broken = (
	'no name' => sub { delete $_[0]{name} },
	'a two-part version' => sub { $_[0]{version} = '1.1' },
	'a name with a slash' => sub { $_[0]{name} = 'registry/migration' },
	'an unknown license' => sub { $_[0]{license} = 'PostgreSQL License' },
	'a maintainer list with an empty entry' => sub { $_[0]{maintainer} = ['someone <a@b.c>', ''] },
	'an extension without a file' => sub { delete $_[0]{provides}{registry_migration}{file} },
	'an extension version that is no semver' => sub { $_[0]{provides}{registry_migration}{version} = '1.1' },
	'an absolute docfile' => sub { $_[0]{provides}{registry_migration}{docfile} = '/README.md' },
	'an empty provides' => sub { $_[0]{provides} = {} },
	'meta-spec 2.0.0' => sub { $_[0]{'meta-spec'}{version} = '2.0.0' },
	'an unknown key' => sub { $_[0]{homepage} = 'https://example.org' },
	'an unknown phase' => sub { $_[0]{prereqs}{install} = { requires => { PostgreSQL => '15.0.0' } } },
	'a bad version range' => sub { $_[0]{prereqs}{runtime}{requires}{PostgreSQL} = '>= 15' },
	'a bad release status' => sub { $_[0]{release_status} = 'final' },
	'a tag with a slash' => sub { $_[0]{tags} = ['a/b'] },);
for my $what (sort keys %broken)
{
	my $copy = JSON::PP->new->decode(JSON::PP->new->encode($meta));
	$broken{$what}->($copy);
	ok(scalar(meta_problems($copy)) > 0, "the validator rejects $what");
}
my $custom = JSON::PP->new->decode(JSON::PP->new->encode($meta));
$custom->{x_internal} = 1;
is_deeply([ meta_problems($custom) ], [], 'the validator accepts a custom x_ key');

done_testing();
