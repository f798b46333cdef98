# RegistrySimulator: start and drive test/simulator/registry_simulator.py
# from the TAP tests (core Perl modules only).
#
#   use lib "$dir/test/perl";          # or -I test/perl
#   use RegistrySimulator;
#   my $sim = RegistrySimulator->new(pre_import_seconds => 0.2, max_imports => 5);
#   $sim->add_repositories({ path => 'group/image', tags => 3 });
#   ... point the extension at $sim->url ...
#   is($sim->repository('group/image')->{status}, 'import_complete');
#   $sim->stop;                        # also done when $sim goes out of scope
#
# Every method that talks to the control API returns the decoded JSON answer
# and dies (croak) when the simulator answers with an error.
package RegistrySimulator;

use strict;
use warnings;

use Carp qw(croak);
use File::Basename qw(dirname);
use File::Spec;
use Cwd qw(abs_path);
use HTTP::Tiny;
use IO::Select;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

our $PYTHON = '/usr/bin/python3';    # the pyenv shim on PATH is not usable by postgres

# Option name => command-line flag. Booleans become bare flags.
my %VALUE_OPTIONS = (
	pre_import_seconds => '--pre-import-seconds',
	import_seconds     => '--import-seconds',
	max_imports        => '--max-imports',
	notify_url         => '--notify-url',
	notify_secret      => '--notify-secret',
	notify_timeout     => '--notify-timeout',
	jwt_public_key     => '--jwt-public-key',
	jwt_issuer         => '--jwt-issuer',
	jwt_audience       => '--jwt-audience',
	retry_after        => '--retry-after',
	latency_ms         => '--latency-ms',
	cancel_cooldown    => '--cancel-cooldown',
	port_file          => '--port-file',
	shutdown_grace     => '--shutdown-grace',
	bind               => '--bind',
	tls_cert           => '--tls-cert',
	tls_key            => '--tls-key',
	tls_client_ca      => '--tls-client-ca',
	control_port       => '--control-port',);
my %FLAG_OPTIONS = (
	auto_create   => '--auto-create',
	ignore_tags_n => '--ignore-tags-n',
	catch_all     => '--catch-all',
	verbose       => '--verbose',);

# The simulator lives in test/simulator, next to this module's test/perl.
sub script_path
{
	my $here = dirname(abs_path(__FILE__));
	return File::Spec->catfile($here, File::Spec->updir, 'simulator', 'registry_simulator.py');
}

sub new
{
	my ($class, %options) = @_;
	# port => N asks for that port; new() dies if it cannot be had.
	my @args = ('--port', $options{port} // 0);
	for my $name (sort keys %options)
	{
		my $value = $options{$name};
		if ($VALUE_OPTIONS{$name})
		{
			push @args, $VALUE_OPTIONS{$name}, $value if defined $value;
		}
		elsif ($FLAG_OPTIONS{$name})
		{
			push @args, $FLAG_OPTIONS{$name} if $value;
		}
		elsif ($name ne 'stderr' && $name ne 'start_timeout' && $name ne 'port')
		{
			croak "RegistrySimulator: unknown option '$name'";
		}
	}

	my $self = bless { owner => $$, json => JSON::PP->new->utf8->canonical }, $class;
	$self->{http} = HTTP::Tiny->new(timeout => 60, keep_alive => 1);
	$self->_spawn(\@args, $options{stderr});
	$self->_wait_ready($options{start_timeout} // 15);
	return $self;
}

sub _spawn
{
	my ($self, $args, $stderr) = @_;
	pipe(my $reader, my $writer) or croak "pipe: $!";
	my $pid = fork();
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		close $reader;
		open(STDOUT, '>&', $writer) or die "dup stdout: $!";
		if (defined $stderr)
		{
			open(STDERR, '>>', $stderr) or die "open $stderr: $!";
		}
		exec($PYTHON, script_path(), @$args) or die "exec $PYTHON: $!";
	}
	close $writer;
	$self->{pid}    = $pid;
	$self->{stdout} = $reader;
	return;
}

# Read the single "listening on http://HOST:PORT" line ("listening on
# https://HOST:PORT control http://HOST:CPORT" when serving https: the
# control API then has a plain-HTTP port of its own).
sub _wait_ready
{
	my ($self, $timeout) = @_;
	my $select   = IO::Select->new($self->{stdout});
	my $deadline = time() + $timeout;
	my $line     = '';
	while ($line !~ /\n/)
	{
		my $left = $deadline - time();
		if ($left <= 0 || !$select->can_read($left))
		{
			$self->stop;
			croak "registry simulator did not start within ${timeout}s";
		}
		my $read = sysread($self->{stdout}, my $chunk, 4096);
		if (!$read)
		{
			$self->stop;
			croak "registry simulator exited before it was ready";
		}
		$line .= $chunk;
	}
	$line =~ m{^listening on (https?://\S+):(\d+)(?: control (http://\S+))?}
	  or croak "registry simulator said: $line";
	$self->{url}         = "$1:$2";
	$self->{port}        = $2;
	$self->{control_url} = $3 // $self->{url};
	return;
}

# url: the registry (https with tls_cert); control_url: where /_sim/ is served.
sub url  { return $_[0]->{url} }
sub control_url { return $_[0]->{control_url} }
sub port { return $_[0]->{port} }
sub pid  { return $_[0]->{pid} }

# ---- control API -----------------------------------------------------------

sub _control
{
	my ($self, $method, $route, $body) = @_;
	croak "registry simulator is not running" unless $self->{pid};
	my %request = (headers => { 'Content-Type' => 'application/json' });
	$request{content} = $self->{json}->encode($body) if defined $body;
	my $response = $self->{http}->request($method, "$self->{control_url}/_sim/$route", \%request);
	my $data = eval { $self->{json}->decode($response->{content}) };
	if (!$response->{success})
	{
		my $why = $data && ref $data eq 'HASH' ? $data->{error} : $response->{content};
		croak "registry simulator: $method /_sim/$route: $response->{status} $why";
	}
	return $data;
}

sub _escape_path
{
	my ($path) = @_;
	return join '/',
	  map { (my $s = $_) =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge; $s }
	  split m{/}, $path, -1;
}

# Each repository is a hash: path, exists, native, tags (count or list),
# pre_import_outcomes, import_outcomes, pre_import_seconds, import_seconds, status.
sub add_repositories
{
	my ($self, @given) = @_;
	my @repositories = map { {%$_} } @given;    # the caller's hashes stay as they were
	for my $repository (@repositories)
	{
		for my $flag (qw(exists native))
		{
			$repository->{$flag} = $repository->{$flag} ? JSON::PP::true : JSON::PP::false
			  if exists $repository->{$flag};
		}
	}
	return $self->_control('POST', 'repositories', { repositories => \@repositories });
}

sub repository
{
	my ($self, $path) = @_;
	return $self->_control('GET', 'repositories/' . _escape_path($path));
}

sub remove_repository
{
	my ($self, $path) = @_;
	return $self->_control('DELETE', 'repositories/' . _escape_path($path));
}

sub state          { return $_[0]->_control('GET', 'state') }
sub requests       { return $_[0]->_control('GET', 'requests' . (defined $_[1] ? "?since=$_[1]" : '')) }
sub clear_requests { return $_[0]->_control('DELETE', 'requests') }
sub notifications  { return $_[0]->_control('GET', 'notifications') }
sub clear_notifications { return $_[0]->_control('DELETE', 'notifications') }
sub faults         { return $_[0]->_control('GET', 'faults') }
sub clear_faults   { return $_[0]->_control('DELETE', 'faults') }
sub reset          { return $_[0]->_control('POST', 'reset') }

# "Registry down": the simulator refuses new connections for $seconds (and
# answers nothing on the ones already open), then accepts them again. reset()
# ends it early, through a connection opened before.
sub down           { return $_[0]->_control('POST', 'down', { seconds => $_[1] }) }

# Rules: { match => {method, kind, path, import_type}, times => N, action => {type => ...} }
sub set_faults
{
	my ($self, @rules) = @_;
	return $self->_control('POST', 'faults', { rules => \@rules });
}

# The same rules, added after the ones already set.
sub add_faults
{
	my ($self, @rules) = @_;
	return $self->_control('POST', 'faults', { rules => \@rules, append => JSON::PP::true });
}

# One hostile answer, added after the rules already set:
#   $sim->hostile(kind => 'status', path => 'g/a', type => 'deep_json', depth => 1e6);
#   $sim->hostile(kind => 'tags', type => 'tag_pages', pages => 30, page_bytes => 8e6, times => 5);
# The match keys (method, kind, path, import_type) and times are taken out;
# everything else is the action. Booleans may be given as 0/1.
sub hostile
{
	my ($self, %args) = @_;
	my (%match, $times);
	for my $key (qw(method kind path import_type))
	{
		$match{$key} = delete $args{$key} if exists $args{$key};
	}
	$times = delete $args{times};
	for my $flag (qw(closed))
	{
		$args{$flag} = $args{$flag} ? JSON::PP::true : JSON::PP::false if exists $args{$flag};
	}
	for my $number (qw(depth pages tags_per_page page_bytes tag_length bytes code))
	{
		$args{$number} = int($args{$number}) if defined $args{$number};
	}
	return $self->add_faults({ match => \%match, times => $times, action => \%args });
}

# Requests (of the registry API, not /_sim/) that carried an Authorization
# header, and every request at all, including ones that were not HTTP (kind
# "invalid", e.g. a TLS handshake). For a catcher (catch_all => 1).
sub authorized_requests { return [ grep { defined $_->{authorization} } @{ $_[0]->requests } ] }
sub connections_accepted { return $_[0]->_control('GET', 'state?repositories=0')->{connections_accepted} }

# lose => N, or lose_rate => 0.3, seed => 1
sub lose_notifications
{
	my ($self, %faults) = @_;
	return $self->_control('POST', 'notification_faults', \%faults);
}

# A registry-initiated cancel of the running step (notification sent).
sub registry_cancel
{
	my ($self, $path) = @_;
	return $self->_control('POST', 'cancel', { path => $path });
}

# End the running step now: outcome complete (default), failed or canceled.
sub finish_step
{
	my ($self, $path, $outcome) = @_;
	return $self->_control('POST', 'finish',
		{ path => $path, outcome => $outcome // 'complete' });
}

# Change settings at run time: the option names of new() without the jwt ones.
sub configure
{
	my ($self, %settings) = @_;
	for my $flag (qw(auto_create ignore_tags_n catch_all))
	{
		$settings{$flag} = $settings{$flag} ? JSON::PP::true : JSON::PP::false
		  if exists $settings{$flag};
	}
	return $self->_control('POST', 'config', \%settings);
}

# Poll until the repository reports $status; true on success.
sub wait_for_status
{
	my ($self, $path, $status, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	while (time() < $deadline)
	{
		my $current = $self->repository($path)->{status};
		return 1 if defined $current && $current eq $status;
		sleep 0.05;
	}
	return 0;
}

# ---- lifetime --------------------------------------------------------------

# SIGTERM: the simulator cancels its running steps, sends their
# notifications, and exits. Returns the exit status (0 = clean).
sub stop
{
	my ($self, $timeout) = @_;
	my $pid = delete $self->{pid} or return $self->{exit_status};
	local $?;    # never clobber the exit status of the test script
	kill 'TERM', $pid;
	my $deadline = time() + ($timeout // 20);
	my $done     = 0;
	while (time() < $deadline)
	{
		$done = waitpid($pid, WNOHANG);
		last if $done == $pid || $done < 0;
		sleep 0.05;
	}
	if ($done != $pid && $done >= 0)
	{
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	$self->{exit_status} = $? >> 8;
	close $self->{stdout} if $self->{stdout};
	delete $self->{stdout};
	return $self->{exit_status};
}

sub DESTROY
{
	my ($self) = @_;
	local ($@, $!, $?);
	# Only the process that started it stops it (not a forked child).
	$self->stop if $self->{pid} && $self->{owner} == $$;
	return;
}

1;
