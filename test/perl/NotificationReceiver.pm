# NotificationReceiver: runs scripts/notification_receiver.py for a TAP test,
# against a PostgreSQL::Test::Cluster node (core Perl modules only).
#
#   my $receiver = NotificationReceiver->new(node => $node, secret => 's3cret');
#   $sim->configure(notify_url => $receiver->notify_url, notify_secret => 's3cret');
#   my $r = $receiver->notify('group/image', 'import_complete');   # HTTP::Tiny answer
#   $receiver->health;  $receiver->log_lines;  $receiver->stop;
#   my $c = $receiver->open_connection;       # requests one after another on it
#   my ($code, $headers) = $receiver->notify_on($c, 'group/image', 'import_complete');
#
# Options: secret (required), secret_via ('file', the default; 'env'; or
# 'args' when args carry the --secret-file option),
# user and dbname (libpq; default the node's superuser and 'postgres'),
# args (more command-line options), dir (for the port, log and secret files).
# The receiver is stopped when the object goes away.
package NotificationReceiver;

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG _exit);
use Time::HiRes qw(time sleep);

our $PYTHON = '/usr/bin/python3';    # the pyenv shim on PATH is not usable by postgres
my $json = JSON::PP->new->utf8->canonical;

sub script_path
{
	my $here = dirname(abs_path(__FILE__));
	return File::Spec->catfile($here, File::Spec->updir, File::Spec->updir, 'scripts',
		'notification_receiver.py');
}

sub new
{
	my ($class, %o) = @_;
	croak 'NotificationReceiver: node and secret are required' unless $o{node} && defined $o{secret};
	my $dir = $o{dir} // tempdir(CLEANUP => 1);
	my $self = bless { dir => $dir, secret => $o{secret}, log => "$dir/receiver.log",
		port_file => "$dir/receiver.port", owner => $$ }, $class;
	unlink $self->{port_file};
	my @args = ('--port-file', $self->{port_file}, '--log', $self->{log}, @{ $o{args} // [] });
	my %env = (PGHOST => $o{node}->host, PGPORT => $o{node}->port,
		PGDATABASE => $o{dbname} // 'postgres', ($o{user} ? (PGUSER => $o{user}) : ()));
	my $via = $o{secret_via} // 'file';
	if ($via eq 'env')
	{
		$env{REGISTRY_NOTIFICATION_SECRET} = $o{secret};
	}
	elsif ($via eq 'file')
	{
		my $file = "$dir/secret";
		open(my $fh, '>', $file) or croak "$file: $!";
		chmod 0600, $file;
		print $fh "$o{secret}\n";
		close $fh;
		push @args, '--secret-file', $file;
	}
	$self->{pid} = spawn(\%env, $PYTHON, script_path(), @args);
	$self->wait_for_port;
	return $self;
}

# Starts a command with extra environment variables; its output goes to ours.
sub spawn
{
	my ($env, @command) = @_;
	my $pid = fork() // croak "fork: $!";
	if ($pid == 0)
	{
		@ENV{ keys %$env } = values %$env;
		{ exec(@command) }
		print STDERR "exec $command[0]: $!\n";
		_exit(127);    # no END blocks of the test in the child
	}
	return $pid;
}

sub wait_for_port
{
	my ($self) = @_;
	my $deadline = time() + 30;
	until (-s $self->{port_file})
	{
		croak "NotificationReceiver: the receiver exited (status $?)"
		  if waitpid($self->{pid}, WNOHANG) == $self->{pid};
		croak 'NotificationReceiver: no port file after 30 s' if time() > $deadline;
		sleep 0.05;
	}
	open(my $fh, '<', $self->{port_file}) or croak "$self->{port_file}: $!";
	$self->{port} = <$fh>;
	close $fh;
	return;
}

sub pid        { return $_[0]{pid} }
sub url        { return "http://127.0.0.1:$_[0]{port}" }
sub notify_url { return $_[0]->url . '/notify' }
sub log_file   { return $_[0]{log} }

# One request; returns HTTP::Tiny's answer with the decoded JSON body as
# {json} (undef when the body is not JSON). The receiver logs a request once
# it has answered it: this returns when that line is in the log too.
sub request
{
	my ($self, $method, $path, %o) = @_;
	my $logged = sub { scalar grep { ($_->{method} // '') eq $method && ($_->{path} // '') eq $path }
		  $self->log_lines };
	my $before = $logged->();
	my $r = HTTP::Tiny->new(timeout => 180)->request($method, $self->url . $path, \%o);
	$r->{json} = eval { $json->decode($r->{content}) };
	my $deadline = time() + 30;
	sleep 0.01 while $r->{status} != 599 && $logged->() == $before && time() < $deadline;
	return $r;
}

# PUT /notify/<path> as the registry sends it; options: secret (undef for no
# header), body (raw, instead of the usual JSON).
sub notify
{
	my ($self, $path, $status, %o) = @_;
	my $secret = exists $o{secret} ? $o{secret} : $self->{secret};
	my $body = $o{body} // $json->encode({ name => (split m{/}, $path)[-1], path => $path,
		status => $status, detail => '' });
	return $self->request('PUT', "/notify/$path", content => $body,
		headers => { 'Content-Type' => 'application/json',
			(defined $secret ? (Authorization => $secret) : ()) });
}

sub health { return $_[0]->request('GET', '/health') }

# A connection of its own, for notifications sent one after another on it, as
# an HTTP/1.1 client such as the registry sends them.
sub open_connection
{
	my ($self) = @_;
	return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Timeout => 30)
	  // croak "connect to the receiver: $!";
}

# notify() on a connection of open_connection(): (HTTP status, lower-cased
# header names => values, body); the status is 0 when the connection ended
# without an answer.
sub notify_on
{
	my ($self, $socket, $path, $status, %o) = @_;
	my $secret = exists $o{secret} ? $o{secret} : $self->{secret};
	my $body = $o{body} // $json->encode({ name => (split m{/}, $path)[-1], path => $path,
		status => $status, detail => '' });
	my $head = "PUT /notify/$path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	  . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n"
	  . (defined $secret ? "Authorization: $secret\r\n" : '') . "\r\n";
	return request_on($socket, $head . $body);
}

# Raw bytes on a connection of open_connection(), then the answer as
# notify_on() returns it.
sub request_on
{
	my ($socket, $bytes) = @_;
	syswrite($socket, $bytes) // return (0, {}, '');
	return read_answer($socket);
}

sub read_answer
{
	my ($socket) = @_;
	my $data = '';
	my $chunk = sub { can_read($socket, 60) && sysread($socket, $data, 65536, length $data) };
	until ($data =~ /\r\n\r\n/)
	{
		$chunk->() or return (0, {}, '');
	}
	my ($head, $rest) = split /\r\n\r\n/, $data, 2;
	my ($first, @lines) = split /\r\n/, $head;
	my %headers = map { my ($k, $v) = split /:\s*/, $_, 2; (lc $k => $v) } @lines;
	my $length = $headers{'content-length'} // 0;
	while (length($rest) < $length)
	{
		$data = $rest;
		$chunk->() or last;
		$rest = $data;
	}
	my ($code) = $first =~ m{^HTTP/1\.\d (\d{3})};
	return ($code // 0, \%headers, substr($rest, 0, $length));
}

sub can_read { return scalar IO::Select->new($_[0])->can_read($_[1]) }

# Whether the other end closes the connection within that many seconds.
sub closed_within
{
	my ($socket, $seconds) = @_;
	my $deadline = time() + $seconds;
	while ((my $left = $deadline - time()) > 0)
	{
		next unless can_read($socket, $left);
		my $n = sysread($socket, my $ignored, 4096);
		return 1 if !$n;    # end of file, or the connection reset
	}
	return 0;
}

# notify() from a child process, so that several can wait at once; returns a
# handle for answer_of().
my $async_count = 0;
sub notify_async
{
	my ($self, $path, $status, %o) = @_;
	my $file = "$self->{dir}/answer-" . ++$async_count;
	my $pid = fork() // croak "fork: $!";
	if ($pid == 0)
	{
		my $r = $self->notify($path, $status, %o);
		if (open(my $fh, '>', "$file.partial"))
		{
			print $fh $r->{status};
			close $fh;
			rename "$file.partial", $file;
		}
		_exit(0);    # no END blocks or destructors of the test in the child
	}
	return { pid => $pid, file => $file };
}

# The HTTP status code a notify_async() request got (waits for it).
sub answer_of
{
	my ($self, $handle) = @_;
	waitpid($handle->{pid}, 0);
	open(my $fh, '<', $handle->{file}) or return 'no answer';
	my $code = <$fh>;
	close $fh;
	return $code;
}

# The request log, one decoded JSON object per line.
sub log_lines
{
	my ($self) = @_;
	open(my $fh, '<', $self->{log}) or return ();
	my @lines = map { $json->decode($_) } grep { /\S/ } <$fh>;
	close $fh;
	return @lines;
}

# SIGTERM, then waits: the exit status (undef when it was not running).
# With a time limit, a receiver still running after it is killed, and -1
# returned.
sub stop
{
	my ($self, $limit) = @_;
	return undef unless $self->{owner} == $$;
	my $pid = delete $self->{pid} or return undef;
	kill 'TERM', $pid;
	my $deadline = time() + ($limit // 0);
	while (waitpid($pid, $limit ? WNOHANG : 0) != $pid)
	{
		if (time() >= $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			return -1;
		}
		sleep 0.05;
	}
	return $? >> 8;
}

sub DESTROY { local $?; $_[0]->stop }

1;
