# The real Docker distribution registry (Debian's docker-registry) for the
# TAP tests: started on 127.0.0.1 with filesystem storage in a temporary
# directory, either open (to push images) or with token authentication (to
# check the extension's tokens the way GitLab's registry checks them).
package DockerRegistry;

use strict;
use warnings;
use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(usleep);

# new(dir => DIR): nothing starts yet.
sub new
{
	my ($class, %args) = @_;
	my $self = bless { dir => $args{dir}, http => HTTP::Tiny->new(timeout => 10) }, $class;
	mkdir "$self->{dir}/storage";
	return $self;
}

sub url { my $self = shift; return "http://127.0.0.1:$self->{port}" }

sub _free_port
{
	my $socket = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0)
	  or die "no free port: $!";
	my $port = $socket->sockport;
	close $socket;
	return $port;
}

# start(token => { issuer, service, cert }) or start() for an open registry.
sub start
{
	my ($self, %args) = @_;
	$self->{port} = _free_port();
	my $config = "$self->{dir}/config.yml";
	open my $fh, '>', $config or die "$config: $!";
	print $fh "version: 0.1\n",
	  "log: {level: warn}\n",
	  "storage: {filesystem: {rootdirectory: $self->{dir}/storage}}\n",
	  "http: {addr: '127.0.0.1:$self->{port}'}\n";
	if (my $t = $args{token})
	{
		print $fh "auth: {token: {realm: 'http://127.0.0.1:1/token', service: '$t->{service}',",
		  " issuer: '$t->{issuer}', rootcertbundle: '$t->{cert}'}}\n";
	}
	close $fh;

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>>', "$self->{dir}/registry.log";
		open STDERR, '>&', \*STDOUT;
		exec 'docker-registry', 'serve', $config or POSIX::_exit(127);
	}
	$self->{pid} = $pid;
	for (1 .. 100)
	{
		return $self if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$self->{port}");
		usleep(100_000);
	}
	die "docker-registry did not start; see $self->{dir}/registry.log";
}

sub stop
{
	my $self = shift;
	return unless $self->{pid};
	kill 'TERM', $self->{pid};
	waitpid $self->{pid}, 0;
	delete $self->{pid};
}

sub DESTROY { my $self = shift; $self->stop }

sub _upload_blob
{
	my ($self, $name, $content) = @_;
	my $digest = 'sha256:' . sha256_hex($content);
	my $r = $self->{http}->post($self->url . "/v2/$name/blobs/uploads/");
	die "blob upload start: $r->{status} $r->{content}" unless $r->{status} == 202;
	my $location = $r->{headers}{location};
	$location = $self->url . $location if $location =~ m{^/};
	$location .= ($location =~ /\?/ ? '&' : '?') . "digest=$digest";
	$r = $self->{http}->put($location,
		{ content => $content, headers => { 'Content-Type' => 'application/octet-stream' } });
	die "blob upload: $r->{status} $r->{content}" unless $r->{status} == 201;
	return { digest => $digest, size => length $content };
}

# push_image(name, tags...): one small OCI image, tagged with each tag.
sub push_image
{
	my ($self, $name, @tags) = @_;
	my $config = $self->_upload_blob($name, '{"architecture":"amd64","os":"linux"}');
	my $layer = $self->_upload_blob($name, "layer of $name");
	my $manifest = encode_json({
		schemaVersion => 2,
		mediaType => 'application/vnd.oci.image.manifest.v1+json',
		config => { mediaType => 'application/vnd.oci.image.config.v1+json', %$config },
		layers => [ { mediaType => 'application/vnd.oci.image.layer.v1.tar+gzip', %$layer } ],
	});
	for my $tag (@tags)
	{
		my $r = $self->{http}->put($self->url . "/v2/$name/manifests/$tag",
			{ content => $manifest,
			  headers => { 'Content-Type' => 'application/vnd.oci.image.manifest.v1+json' } });
		die "manifest $name:$tag: $r->{status} $r->{content}" unless $r->{status} == 201;
	}
}

1;
