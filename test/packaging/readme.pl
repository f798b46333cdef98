# Every command in the README is run by a test, and the README says which:
# each code block is preceded by "<!-- tested by: FILE -->". This checks
# that every block has one, that FILE exists, and that FILE really covers
# the block: it either reads the block from the README (it names the README
# and the block's first line, or the section and the start of the first
# line, or for SQL the whole section), or holds each of the block's
# commands itself. The second half proves that each rule catches a block
# nobody runs.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use Readme;
use Test::More;

my $root = "$FindBin::RealBin/../..";

sub slurp
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return undef;
	local $/;
	return <$fh>;
}

sub fold { return $_[0] =~ s/\s+/ /gr }

# Why the block is not covered, or '' when it is.
sub uncovered
{
	my ($block) = @_;
	my $by = $block->{tested_by} // return 'no "tested by" comment';
	my $test = slurp("$root/$by") // return "$by does not exist";
	$test =~ s/\\(.)/$1/g;    # a regular expression's escapes do not hide a line
	my $first = (split /\n/, $block->{text})[0] =~ s/^(--|#)\s*|\s+$//gr;
	# Read from the README: the whole section, the block by its first line,
	# or the block by section name and the start of its first line.
	# A test that reads a section's SQL blocks may not run its command
	# lines: for those it must also name the start of the first line.
	my $section = index($test, "## $block->{section}") >= 0;
	my $named = index($test, "'$block->{section}'") >= 0 || $section;
	my $start = index($test, substr($first, 0, 12)) >= 0;
	return '' if $test =~ /README/
	  && (index($test, $first) >= 0 || ($section && $block->{lang} ne 'sh') || ($named && $start));
	my $folded = fold($test);
	my @missing = grep { index($folded, $_) < 0 } map { s/;$//r } Readme::commands($block);
	return @missing ? "$by neither reads it from the README nor runs: $missing[0]" : '';
}

my @blocks = Readme::blocks();
cmp_ok(scalar(@blocks), '>=', 15, scalar(@blocks) . ' code blocks in the README');
for my $block (@blocks)
{
	my $name = "$block->{section}: " . ((split /\n/, $block->{text})[0]);
	is(uncovered($block), '', "covered: $name");
}

# ---- each rule notices a block nobody runs ------------------------------------
my $sample = { section => 'Install', lang => 'sql', text => "SELECT 'no test runs this';\n" };
like(uncovered({ %$sample, tested_by => undef }), qr/no "tested by"/, 'a block without a comment');
like(uncovered({ %$sample, tested_by => 'test/t/no_such_test.pl' }), qr/does not exist/,
	'a block naming a missing test');
like(uncovered({ %$sample, section => 'Nowhere', tested_by => 'test/t/006_upgrade_live.pl' }),
	qr/neither reads it from the README nor runs: SELECT 'no test runs this'/,
	'a block whose test neither reads it nor runs it');
done_testing();
