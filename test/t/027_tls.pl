# HTTPS as self-hosted registries run it: a registry whose certificate comes
# from a private CA, that may ask for a client certificate, reached directly
# or through a proxy.
#
# A throw-away CA is made with openssl when the test starts; the registry
# simulator serves https with a certificate it signed (--tls-cert/--tls-key)
# and, for the client-certificate part, asks for a certificate signed by it
# (--tls-client-ca). Proved here:
# - the settings ca_file, client_cert_file, client_key_file and proxy are
#   checked when they are set (what each file holds; a FIFO does not hang);
# - verification is on: without the CA (the system's store) or with another
#   CA no request reaches the registry, and that is "registry down": the
#   enqueuer stops at once with registry_unavailable, nothing changes;
# - with the right CA the cycles run over https to the end;
# - the client certificate is presented when configured, and without it the
#   registry refuses the session: "registry down" again;
# - the token never travels over plain HTTP after a redirect from https: a
#   catcher on plain HTTP (another port), and the registry's own port spoken
#   to in plain HTTP, receive no Authorization header; a tag-list page on
#   plain HTTP is not followed;
# - the proxy: every request goes through it (a CONNECT tunnel for https,
#   in which it sees no token; the whole request for plain HTTP), a refused
#   tunnel or a proxy that is down is "registry down", and the server's
#   proxy environment variables are ignored.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use Fcntl qw(O_WRONLY O_NONBLOCK);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MigrationTest;
use POSIX qw(mkfifo);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use ThrowawayCA;
use Test::More;
use Time::HiRes qw(time sleep);

my $fixtures = "$FindBin::RealBin/../fixtures";
my $dir      = PostgreSQL::Test::Utils::tempdir();

# ---- a throw-away CA, a server certificate for 127.0.0.1, a client certificate --

sub openssl { return ThrowawayCA::openssl(@_) }

sub slurp { return PostgreSQL::Test::Utils::slurp_file($_[0]) }

sub write_file
{
	my ($path, $text) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $text;
	close $fh;
}

my $authority = ThrowawayCA->new($dir);
$authority->make_ca('wrong_ca', 'another CA');
# The client's key and certificate in one file, as some deployments keep them.
write_file("$dir/client_combined.pem", slurp("$dir/client.key") . slurp("$dir/client.crt"));
my ($ca, $wrong_ca) = ("$dir/ca.crt", "$dir/wrong_ca.crt");

# ---- the registry (https), the catcher (plain HTTP), the node -----------------

my $sim = RegistrySimulator->new(tls_cert => "$dir/server.crt", tls_key => "$dir/server.key",
	pre_import_seconds => 0.2, import_seconds => 0.1, cancel_cooldown => 0,
	jwt_public_key => "$fixtures/jwt_test_key.pub.pem");
my $catcher = RegistrySimulator->new(catch_all => 1);
like($sim->url, qr{^https://127\.0\.0\.1:\d+$}, 'the simulator serves the registry over https');
my ($P, $C) = ($sim->port, $catcher->port);

# Proxy variables in the server's environment must not be used: they point
# at a port where nothing listens, so a request that used them would fail.
my %saved_env = map { $_ => $ENV{$_} } qw(http_proxy https_proxy HTTPS_PROXY ALL_PROXY all_proxy);
$ENV{$_} = 'http://127.0.0.1:1' for keys %saved_env;
my $node = start_node('tls', sim => $sim, conf => [
	"registry_migration.jwt_private_key_file = '$fixtures/jwt_test_key.pem'",
	"registry_migration.request_timeout = '5s'",
	"registry_migration.connect_timeout = '2s'" ]);
defined $saved_env{$_} ? ($ENV{$_} = $saved_env{$_}) : delete $ENV{$_} for keys %saved_env;
create_attempt_function();
fresh_defaults(enabled => 'true', capacity => 10, max_tags_count => 0,
	max_step_duration => q{'0'}, pre_import_timeout => q{'1 h'}, import_timeout => q{'1 h'});

# stderr of a statement run after loading the library (verbose: with the
# SQLSTATE), or '' when it worked.
sub error_of
{
	my ($statement, %opt) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "LOAD 'registry_migration'; $statement",
		extra_params => [ '-v', 'VERBOSITY=verbose' ], %opt);
	return $err;
}

# A statement's output in a session that loaded the library first (its
# settings are known, and checked, only then).
sub loaded_sql
{
	my $out = sql("LOAD 'registry_migration';\n$_[0]");
	$out =~ s/\ALOAD\n?//;
	return $out;
}

# ALTER SYSTEM the settings (undef: RESET), reload, and wait until a new
# session sees them.
sub configure
{
	my (%set) = @_;
	my @statements = map {
		defined $set{$_}
		  ? "ALTER SYSTEM SET registry_migration.$_ = " . quote($set{$_})
		  : "ALTER SYSTEM RESET registry_migration.$_"
	} sort keys %set;
	loaded_sql(join(";\n", @statements, 'SELECT pg_reload_conf()'));
	my $seen = join(' AND ', map {
		"current_setting('registry_migration.$_') = " . quote($set{$_} // '')
	} sort keys %set);
	$node->poll_query_until('postgres', "SELECT $seen")
	  or die "settings not applied: @{[ %set ]}";
	return;
}

sub status_of { return attempt("SELECT registry_migration.registry_import_status('$_[0]')") }

# The simulator's log entries of one kind.
sub entries_of_kind
{
	my ($server, $kind) = @_;
	return grep { $_->{kind} eq $kind } @{ $server->requests };
}

# Registry API requests (not TLS failures or plain-HTTP attempts) in a log.
sub api_requests
{
	my ($server) = @_;
	return grep { $_->{kind} !~ /^(tls_failed|plain_http_on_tls|invalid)$/ } @{ $server->requests };
}

# ---- the settings are checked when set -----------------------------------------

my $fifo = "$dir/fifo.pem";
mkfifo($fifo, 0600) or die "mkfifo: $!";
write_file("$dir/empty.pem", '');
openssl('pkey', '-in', "$dir/client.key", '-aes128', '-passout', 'pass:secret', '-out', "$dir/encrypted.key");
my @refused = (
	[ ca_file => 'relative/ca.pem', qr/it must be given as an absolute path/ ],
	[ ca_file => "$dir/missing.pem", qr/could not open it: No such file/ ],
	[ ca_file => $dir, qr/it is a directory, not a regular file/ ],
	[ ca_file => "$dir/empty.pem", qr/it holds no certificate in PEM format/ ],
	[ ca_file => "$dir/client.key", qr/it holds no certificate in PEM format/ ],
	[ client_cert_file => "$dir/client.key", qr/it holds no certificate in PEM format/ ],
	[ client_key_file => "$dir/client.crt", qr/it holds no unencrypted private key in PEM format/ ],
	[ client_key_file => "$dir/encrypted.key", qr/it holds no unencrypted private key in PEM format/ ],
	[ client_key_file => '/dev/null', qr/it is a character device, not a regular file/ ],
	[ proxy => 'http://user:secret@127.0.0.1:3128', qr/must not contain credentials/ ],
	[ proxy => 'ftp://127.0.0.1:21', qr/scheme must be http, https, socks5 or socks5h/ ],
	[ proxy => 'http://127.0.0.1', qr/must name its port/ ],
);
for my $case (@refused)
{
	my ($name, $value, $why) = @$case;
	like(error_of("ALTER SYSTEM SET registry_migration.$name = " . quote($value)),
		qr/22023: invalid value for parameter "registry_migration.$name".*\n.*$why/,
		"$name = '$value' is refused: $why");
}
{
	my $timed_out = 0;
	my $err = error_of("ALTER SYSTEM SET registry_migration.client_key_file = '$fifo'",
		timeout => 15, timed_out => \$timed_out);
	if ($timed_out && sysopen(my $w, $fifo, O_WRONLY | O_NONBLOCK)) { close $w }
	ok(!$timed_out, 'a FIFO as the client key file does not hang the session');
	like($err, qr/it is a FIFO, not a regular file/, '... it is refused, saying why');
}
is(sql(q{SELECT count(*) FROM pg_file_settings WHERE name LIKE 'registry_migration.%'
	AND sourcefile LIKE '%postgresql.auto.conf'}), '0', 'nothing refused was written');
# The proxy kinds beside plain http (used below) are accepted and written;
# the entry is removed again, without a reload.
for my $proxy ('socks5h://[::1]:1080', 'https://proxy.example.com:3128/')
{
	is(error_of('ALTER SYSTEM SET registry_migration.proxy = ' . quote($proxy)), '',
		"proxy = '$proxy' is accepted");
	is(sql(q{SELECT setting || coalesce(' ' || error, '') FROM pg_file_settings
		WHERE name = 'registry_migration.proxy' AND sourcefile LIKE '%postgresql.auto.conf'}),
		$proxy, '... and written');
}
loaded_sql('ALTER SYSTEM RESET registry_migration.proxy');
is(loaded_sql(q{SELECT string_agg(name || ' ' || context, ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('registry_migration.ca_file', 'registry_migration.client_cert_file',
	'registry_migration.client_key_file', 'registry_migration.proxy')}),
	'registry_migration.ca_file sighup, registry_migration.client_cert_file sighup, '
	  . 'registry_migration.client_key_file sighup, registry_migration.proxy sighup',
	'they change by reload only: a session cannot choose whom the token goes to');

# ---- verification is on: no CA configured, or another CA ------------------------

# Four repositories ready to start on the given registry, one enqueue cycle
# and a look-up: the registry is down, for the reason $why.
sub stops_at_once
{
	my ($registry, $label, $why) = @_;
	fresh();
	$registry->add_repositories(map { { path => "tls/r$_" } } 1 .. 4);
	db_add("tls/r$_", created_at => "now() - interval '" . (10 - $_) . " min'") for 1 .. 4;
	$sim->clear_requests;
	my $s = enqueue();
	is($s->{stopped}, 'registry_unavailable', "$label: the enqueuer stops with registry_unavailable");
	is_deeply($s->{unavailable}, ['tls/r1'], '... at once, after the first repository: the registry is down');
	is(sql(q{SELECT count(*) FROM registry_migration.events}), '0', '... nothing changed');
	like(status_of('tls/r1'), qr/^ERROR 08006: registry unavailable .* DETAIL: $why/,
		"... and a look-up says why");
	return;
}

$sim->clear_requests;
stops_at_once($sim, 'without ca_file (the system CA store)', 'TLS failure .*(certificate|verify)');
ok(scalar(entries_of_kind($sim, 'tls_failed')) >= 1, '... the client refused the handshake');
is(scalar(api_requests($sim)), 0, '... and no request reached the registry');

configure(ca_file => $wrong_ca);
stops_at_once($sim, 'ca_file of another CA', 'TLS failure .*(certificate|verify)');
like(join(' ', map { $_->{tls_error} } entries_of_kind($sim, 'tls_failed')), qr/UNKNOWN_CA/i,
	'... the client rejected the registry\'s certificate (unknown CA)');
is(scalar(api_requests($sim)), 0, '... and no request reached the registry');

# ---- the right CA: the cycles run over https ----------------------------------

configure(ca_file => $ca);
fresh();
$sim->add_repositories(map { { path => "tls/r$_", tags => 2 } } 1 .. 4);
db_add("tls/r$_", created_at => "now() - interval '" . (10 - $_) . " min'") for 1 .. 4;
my $s = enqueue();
is_deeply($s->{started}, [ map { "tls/r$_" } 1 .. 4 ], 'with the CA: the enqueuer starts every repository over https');
my $cycles = 0;
wait_until(sub {
	guard();
	enqueue();
	$cycles++;
	return sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state <> 'import_done'}) eq '0';
}, 30);
is(sql(q{SELECT string_agg(state::text || ' ' || retries_count, ', ' ORDER BY path) FROM registry_migration.repositories}),
	join(', ', ('import_done 0') x 4), "... and the guard and the enqueuer take them to the end ($cycles rounds)");
my @api = api_requests($sim);
is(scalar(grep { !$_->{token_valid} } @api), 0, '... every request carried a valid token');
is(scalar(entries_of_kind($sim, 'tls_failed')), 0, '... and no handshake failed');
is(sql(q{SELECT registry_migration.registry_tags_count('tls/r1')}), '2', 'the tag list is read over https too');

# ---- the client certificate -------------------------------------------------------

my $strict = RegistrySimulator->new(tls_cert => "$dir/server.crt", tls_key => "$dir/server.key",
	tls_client_ca => $ca, pre_import_seconds => 600, import_seconds => 600,
	jwt_public_key => "$fixtures/jwt_test_key.pub.pem");
use_node($node, $strict);
configure(registry_url => $strict->url);
stops_at_once($strict, 'a registry that wants a client certificate, none configured', 'TLS failure');
like(join(' ', map { $_->{tls_error} } entries_of_kind($strict, 'tls_failed')), qr/PEER_DID_NOT_RETURN_A_CERTIFICATE/,
	'... the registry refused the session: no client certificate');
is(scalar(api_requests($strict)), 0, '... and processed no request');

configure(client_cert_file => "$dir/client.crt", client_key_file => "$dir/client.key");
$strict->add_repositories({ path => 'tls/cert' });
$strict->clear_requests;
is(status_of('tls/cert'), '', 'client_cert_file and client_key_file: the registry answers (404: not started yet)');
is_deeply([ map { "$_->{kind} $_->{tls_client}" } api_requests($strict) ], ['status registry_migration'],
	'... the client certificate was presented');
configure(client_cert_file => "$dir/client_combined.pem", client_key_file => undef);
$strict->clear_requests;
is(status_of('tls/cert'), '', 'a certificate file that holds its key works without client_key_file');
is_deeply([ map { "$_->{kind} $_->{tls_client}" } api_requests($strict) ], ['status registry_migration'],
	'... and presents the certificate');
configure(client_cert_file => "$dir/client.crt");
like(status_of('tls/cert'), qr/^ERROR F0000: could not use registry_migration.client_cert_file DETAIL: .*holds no private key/,
	'a certificate without its key and no client_key_file: a clear configuration error');
configure(client_cert_file => undef, client_key_file => "$dir/client.key");
like(status_of('tls/cert'), qr/^ERROR F0000: could not use registry_migration.client_key_file DETAIL: .*client_cert_file is not set/,
	'a key without a certificate: a clear configuration error');
configure(client_key_file => undef, registry_url => $sim->url);
use_node($node, $sim);
$strict->stop;

# ---- the token never travels over plain HTTP after a redirect from https ---------

fresh();
$sim->add_repositories({ path => 'redir/catcher' }, { path => 'redir/same' }, { path => 'redir/tags', tags => 3 });
$sim->set_faults(
	fault({ kind => 'status', path => 'redir/catcher' },
		{ type => 'redirect', location => "http://127.0.0.1:$C/gitlab/v1/import/redir/catcher/" }),
	fault({ kind => 'status', path => 'redir/same' },
		{ type => 'redirect', location => "http://127.0.0.1:$P/gitlab/v1/import/redir/same/" }));
$sim->hostile(kind => 'tags', path => 'redir/tags', type => 'tag_pages', pages => 2, tags_per_page => 2,
	link => "<http://127.0.0.1:$C/v2/{path}/tags/list?n={n}&last={last}>; rel=\"next\"");
$catcher->clear_requests;
is(status_of('redir/catcher'), 'import_complete', 'a redirect from https to a plain-HTTP host is followed');
my @first_hop = grep { ($_->{repository} // '') eq 'redir/catcher' } api_requests($sim);
is(join(' ', map { $_->{token_valid} ? 'token' : 'no token' } @first_hop), 'token',
	'... the registry itself got the token');
is(scalar(@{ $catcher->requests }), 1, '... the catcher got the redirected request');
is(scalar(@{ $catcher->authorized_requests }), 0, '... without an Authorization header');

$sim->clear_requests;
like(status_of('redir/same'), qr/^ERROR 22000: unusable registry answer/,
	'a redirect to the same host and port in plain HTTP is followed (and gets the registry\'s 400)');
my @plain = entries_of_kind($sim, 'plain_http_on_tls');
is(scalar(@plain), 1, '... the registry\'s port received one plain-HTTP request');
is($plain[0]{authorization}, undef, '... without an Authorization header: only the scheme differed');

like(attempt(q{SELECT registry_migration.registry_tags_count('redir/tags')}),
	qr/^ERROR 08006: registry unavailable .*Link header/,
	'a tag-list page on plain HTTP is not followed: the listing fails');
is(scalar(@{ $catcher->requests }), 1, '... the catcher got no request for it');
$sim->clear_faults;

# ---- the proxy --------------------------------------------------------------------

# A recording proxy (test/simulator/recording_proxy.py): (handle, port).
sub start_proxy
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $RegistrySimulator::PYTHON, "$FindBin::RealBin/../simulator/recording_proxy.py", @args ],
		'<', '/dev/null', '>', \$out, '2>', \$err);
	my $deadline = time() + 15;
	while ($out !~ /\n/ && time() < $deadline)
	{
		$h->pump_nb;
		sleep 0.05;
	}
	$out =~ m{^listening on http://127\.0\.0\.1:(\d+)} or die "recording proxy: $out $err";
	return ($h, $1);
}

sub proxy_log
{
	my ($port) = @_;
	my $r = HTTP::Tiny->new(timeout => 10)->get("http://127.0.0.1:$port/_proxy/log");
	die "proxy log: $r->{status}" unless $r->{success};
	return @{ decode_json($r->{content}) };
}

my ($proxy, $PP) = start_proxy();
configure(proxy => "http://127.0.0.1:$PP");
$sim->clear_requests;
is(status_of('redir/same'), '', 'through the proxy: the https registry answers');
my @passed = proxy_log($PP);
is_deeply([ map { "$_->{method} $_->{target} $_->{code}" } @passed ], ["CONNECT 127.0.0.1:$P 200"],
	'... through one CONNECT tunnel to the registry');
is(join(' ', map { $_->{authorization} // 'none' } @passed), 'none', '... in which the proxy saw no token');
ok($passed[0]{bytes_to_server} > 0 && $passed[0]{bytes_to_client} > 0, '... only encrypted bytes');
is(join(' ', map { $_->{token_valid} ? 'token' : 'no token' } api_requests($sim)), 'token',
	'... the registry got the request with its token');

configure(registry_url => $catcher->url);
$catcher->clear_requests;
is(status_of('via/plain'), 'import_complete', 'a plain-HTTP registry through the proxy answers too');
@passed = proxy_log($PP);
is("$passed[-1]{method} $passed[-1]{target}", "GET http://127.0.0.1:$C/gitlab/v1/import/via/plain/",
	'... the proxy forwarded the whole request');
like($passed[-1]{authorization} // '', qr/^Bearer /, '... and could read the token: plain HTTP hides nothing');
configure(registry_url => $sim->url);
$proxy->kill_kill;

($proxy, $PP) = start_proxy('--refuse-connect');
configure(proxy => "http://127.0.0.1:$PP");
stops_at_once($sim, 'a proxy that refuses the tunnel', 'proxy refused the tunnel');
is(scalar(api_requests($sim)), 0, '... no request reached the registry');
$proxy->kill_kill;
stops_at_once($sim, 'a proxy that is down', 'connection failed');

# A tunnel that never opens: only the proxy's CONNECT is written, nothing
# reaches the registry, so it is the registry down, not a failed answer.
($proxy, $PP) = start_proxy('--hang-connect');
configure(proxy => "http://127.0.0.1:$PP", connect_timeout => '300ms');
stops_at_once($sim, 'a proxy whose tunnel never opens', 'timeout while connecting');
is(scalar(api_requests($sim)), 0, '... no request reached the registry');
configure(connect_timeout => '2s');
$proxy->kill_kill;

configure(proxy => undef);
is(status_of('redir/same'), '', 'no proxy set: direct requests, whatever the environment says');

$catcher->stop;
end_test();
