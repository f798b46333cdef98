# The README's code blocks, for the tests that run them. Each block is
# preceded by a comment naming the test that runs it:
#
#   <!-- tested by: test/t/009_readme.pl -->
#   ```sql
#   ...
#   ```
#
#   my @blocks = Readme::blocks();          # every block, in order
#   my ($conf) = Readme::blocks(section => 'Install', lang => '');
#
# A block is a hash: section (the "## " heading it is under), lang (the
# word after the fence, '' for none), tested_by (the path, or undef), text.
package Readme;

use strict;
use warnings;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

our $PATH = abs_path(dirname(__FILE__) . '/../../README.md');

sub blocks
{
	my (%want) = @_;
	open(my $fh, '<', $PATH) or die "$PATH: $!";
	my @lines = <$fh>;
	close $fh;
	my (@blocks, $section, $tested_by, $open);
	for my $line (@lines)
	{
		if ($open)
		{
			if ($line =~ /^```\s*$/) { push @blocks, $open; undef $open; next }
			$open->{text} .= $line;
			next;
		}
		if ($line =~ /^## (.*?)\s*$/) { $section = $1; undef $tested_by; next }
		if ($line =~ /^<!-- tested by: (\S+) -->\s*$/) { $tested_by = $1; next }
		if ($line =~ /^```(\w*)\s*$/)
		{
			$open = { section => $section, lang => $1, tested_by => $tested_by, text => '' };
			undef $tested_by;
			next;
		}
		undef $tested_by unless $line =~ /^\s*$/;
	}
	die "$PATH: a block is not closed" if $open;
	return grep {
		my $b = $_;
		!grep { $b->{$_} ne $want{$_} } keys %want
	} @blocks;
}

# The statements or command lines of a block, without comments and blank
# lines, whitespace folded, continuation lines joined.
sub commands
{
	my ($block) = @_;
	my $text = $block->{text} =~ s/\\\n\s*/ /gr;
	my $comment = $block->{lang} eq 'sql' ? qr/\s*--.*$/ : qr/\s+#.*$|^\s*#.*$/;
	return grep { length } map { s/$comment//r =~ s/\s+/ /gr =~ s/^ | $//gr } split /\n/, $text;
}

1;
