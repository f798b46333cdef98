# A private CA made with openssl for one test: a CA, a server certificate
# for 127.0.0.1 and a client certificate signed by it, as a self-hosted
# registry's operator would have them.
#
#   my $ca = ThrowawayCA->new($dir);        # $dir/ca.crt, server.crt/.key, client.crt/.key
#   $ca->make_ca('other_ca', 'another CA');
#   ThrowawayCA::openssl('pkey', ...);
package ThrowawayCA;

use strict;
use warnings;
use IPC::Run;

# Runs openssl with the arguments; dies with its message when it fails.
sub openssl
{
	my @args = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'openssl', @args ], '<', '/dev/null', '>', \$out, '2>', \$err)
	  or die "openssl @args: $err";
	return $out;
}

sub new
{
	my ($class, $dir) = @_;
	my $self = bless { dir => $dir }, $class;
	$self->make_ca('ca', 'registry_migration test CA');
	$self->make_signed('server', '127.0.0.1', 'ca',
		"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
	$self->make_signed('client', 'registry_migration', 'ca', "extendedKeyUsage=clientAuth\n");
	return $self;
}

sub file { return "$_[0]{dir}/$_[1]" }

# A CA: key and self-signed certificate, $dir/$name.key and .crt.
sub make_ca
{
	my ($self, $name, $cn) = @_;
	my $dir = $self->{dir};
	openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.crt", '-subj', "/CN=$cn", '-days', '2',
		'-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
	return;
}

# A key and a certificate signed by the CA $ca, with the extensions given.
sub make_signed
{
	my ($self, $name, $cn, $ca, $extensions) = @_;
	my $dir = $self->{dir};
	open(my $fh, '>', "$dir/$name.ext") or die "$name.ext: $!";
	print $fh $extensions;
	close $fh;
	openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$dir/$name.key",
		'-out', "$dir/$name.csr", '-subj', "/CN=$cn");
	openssl('x509', '-req', '-in', "$dir/$name.csr", '-CA', "$dir/$ca.crt", '-CAkey', "$dir/$ca.key",
		'-CAcreateserial', '-out', "$dir/$name.crt", '-days', '2', '-extfile', "$dir/$name.ext");
	return;
}

1;
