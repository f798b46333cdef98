# The registry client against the project's registry simulator:
# every answer of every call as the SQL interface reports it, tokens,
# redirects, transport faults, interrupts, bounded memory, and the
# concurrent status interface.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use File::Copy;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time);

my $fixtures = "$FindBin::RealBin/../fixtures";
my $sim = RegistrySimulator->new(
	pre_import_seconds => 60, import_seconds => 60, cancel_cooldown => 0,
	jwt_public_key => "$fixtures/jwt_test_key.pub.pem");
# A second registry on another loopback address: "another host".
my $other = RegistrySimulator->new(auto_create => 1);
$other->configure(auto_create => 1);

my $node = PostgreSQL::Test::Cluster->new('client');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.jwt_private_key_file = '$fixtures/jwt_test_key.pem'",
	"registry_migration.request_timeout = '5s'", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');

# answer|http_status|registry_status|tags|retry_after|problem of one request.
sub request
{
	my ($call, $path, $settings) = @_;
	return $node->safe_psql('postgres', ($settings // '') .
		  "SELECT answer, http_status, registry_status, tags, retry_after_seconds, problem"
		  . " FROM registry_migration.registry_request('$call', '$path')");
}

sub answer_of { return (split /\|/, request(@_))[0] }

$sim->add_repositories(
	{ path => 'group/new' },
	{ path => 'group/native', native => 1 },
	{ path => 'group/imported', status => 'import_complete' },
	{ path => 'group/pre-done', status => 'pre_import_complete' },
	{ path => 'group/pre-failed', status => 'pre_import_failed' },
	{ path => 'group/idle', status => 'import_failed' },
	{ path => 'group/tags', tags => 2500 },
	{ path => 'group/few-tags', tags => 3 });

# ---- starts ---------------------------------------------
like(request('start_pre_import', 'group/new'), qr/^accepted\|202\|/, 'start pre-import: 202 accepted');
like(request('start_pre_import', 'group/new'), qr/^already running\|425\|/, 'pre-import running: 425');
like(request('start_import', 'group/new'), qr/^already running\|425\|/, 'final import while pre-importing: 425');
like(request('start_pre_import', 'group/native'), qr/^already imported\|200\|/, 'native: 200 already imported');
like(request('start_import', 'group/imported'), qr/^already imported\|200\|/, 'import complete: 200');
like(request('start_pre_import', 'group/unknown'), qr/^not found\|404\|/, 'unknown on the old registry: 404');
like(request('start_import', 'group/pre-failed'), qr/^refused\|424\|.*PRE_IMPORT/,
	'final import after a failed pre-import: 424 refused, with the registry answer');
like(request('start_import', 'group/pre-done'), qr/^accepted\|202\|/, 'final import after a pre-import: 202');
like(request('start_pre_import', 'group/pre-done'), qr/^already running\|409\|/, 'import running: 409');

$sim->configure(max_imports => 2);
like(request('start_pre_import', 'group/idle'), qr/^too many imports\|429\|\|\|\|$/,
	'registry full: 429, no Retry-After');
$sim->configure(retry_after => '30');
like(request('start_pre_import', 'group/idle'), qr/^too many imports\|429\|\|\|30\|$/,
	'429 with Retry-After in seconds');
$sim->configure(retry_after => 'Fri, 01 Jan 2100 00:00:00 GMT');
my $ra = (split /\|/, request('start_pre_import', 'group/idle'))[4];
cmp_ok($ra, '>', 86400, "429 with Retry-After as an HTTP date ($ra s from now)");
$sim->configure(max_imports => 0, retry_after => '');

$sim->set_faults({ match => { kind => 'start' }, times => 1, action => { type => 'respond', code => 400 } });
like(request('start_pre_import', 'group/idle'), qr/^refused\|400\|/, 'start answered 400: refused');
for my $code (401, 403, 500, 503)
{
	$sim->set_faults({ match => { kind => 'start' }, times => 1, action => { type => 'respond', code => $code } });
	like(request('start_pre_import', 'group/idle'), qr/^registry unavailable\|$code\|/,
		"start answered $code: registry unavailable");
}
for my $code (201, 204, 408, 418)
{
	$sim->set_faults({ match => { kind => 'start' }, times => 1, action => { type => 'respond', code => $code } });
	like(request('start_pre_import', 'group/idle'), qr/^refused\|$code\|/, "start answered $code: refused (unusable)");
}

# ---- cancel ----------------------------------------------------------------
like(request('cancel', 'group/new'), qr/^accepted\|202\|/, 'cancel a running pre-import: 202');
is($sim->repository('group/new')->{status}, 'pre_import_canceled', 'the registry canceled it');
like(request('cancel', 'group/idle'), qr/^refused\|400\|.*IMPORT_CANNOT_BE_CANCELED/,
	'cancel with nothing running: 400 refused, with the registry error');
like(request('cancel', 'group/unknown'), qr/^not found\|404\|/, 'cancel unknown: 404');
like(request('force_cancel', 'group/native'), qr/^refused\|400\|/, 'forced cancel of a native repository: 400');
like(request('force_cancel', 'group/idle'), qr/^accepted\|202\|/, 'forced cancel with nothing running: 202');
$sim->set_faults({ match => { kind => 'cancel' }, times => 1, action => { type => 'respond', code => 429 } });
like(request('cancel', 'group/idle'), qr/^registry unavailable\|429\|/, '429 to a cancel: registry unavailable');

# ---- status ----------------------------------------------------------------
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_import_status('group/pre-done')}),
	'import_in_progress', 'status look-up returns the registry status');
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_import_status('group/native')}),
	'native', 'status of a native repository');
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_import_status('never/imported') IS NULL}),
	't', 'status 404: NULL');
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_import_status(NULL) IS NULL}),
	't', 'look-ups are STRICT');
for my $fault (qw(malformed_json status_missing status_not_string huge_body))
{
	$sim->set_faults({ match => { kind => 'status' }, times => 2, action => { type => $fault } });
	like(request('status', 'group/idle'), qr/^ok\|200\|\|\|\|status answer/, "$fault: status unknown");
	my ($rc, $out, $err) = $node->psql('postgres',
		q{SELECT registry_migration.registry_import_status('group/idle')},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/22000: unusable registry answer/, "$fault: the look-up raises 22000");
}
$sim->set_faults({ match => { kind => 'status' }, times => 1, action => { type => 'respond', code => 408 } });
like(request('status', 'group/idle'), qr/^registry unavailable\|408\|/, '408 to a status: registry unavailable');

# ---- tags ------------------------------------------------------------------
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_tags_count('group/tags')}),
	'2500', 'tag count over three pages (Link header followed)');
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_tags_count('group/few-tags')}),
	'3', 'tag count of a small repository');
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_tags_count('no/such') IS NULL}),
	't', 'tags of an unknown repository: NULL');
$sim->configure(ignore_tags_n => 1);
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_tags_count('group/tags')}),
	'2500', 'a registry that ignores n: one page');
$sim->configure(ignore_tags_n => 0);

# ---- tokens ----------------------------------------------------
my @log = @{ $sim->requests };
is(scalar(grep { !$_->{token_valid} } @log), 0, 'every request carried a token the registry verified');
my @import = grep { $_->{kind} ne 'tags' && $_->{claims} } @log;
my @tags = grep { $_->{kind} eq 'tags' && $_->{claims} } @log;
is_deeply($import[0]{claims}{access}, [ { type => 'registry', name => 'import', actions => ['*'] } ],
	'import calls ask for registry:import:*');
is_deeply($tags[0]{claims}{access}, [ { type => 'repository', name => 'group/tags', actions => ['pull'] } ],
	'the tag list asks for pull on the repository');
# One session, several import calls: one token, reused.
my $since_tokens = $sim->requests->[-1]{seq};
$node->safe_psql('postgres', q{SELECT registry_migration.registry_import_status('group/native')
	FROM generate_series(1, 5)});
my %jti = map { $_->{claims}{jti} => 1 } @{ $sim->requests($since_tokens) };
is(scalar(keys %jti), 1, 'the import token is reused within a session');
is($import[0]{claims}{exp} - $import[0]{claims}{iat}, 300, 'token lifetime 5 minutes');
# The version is written once, as EXTVERSION in the Makefile; the installed
# control file's default_version is made from it.
my ($version) = slurp_file("$FindBin::RealBin/../../Makefile") =~ /^EXTVERSION\s*=\s*(\S+)/m;
is($log[0]{user_agent}, "registry_migration/$version", 'User-Agent names the extension and its current version');
is($node->safe_psql('postgres', q{SELECT default_version FROM pg_available_extensions
	WHERE name = 'registry_migration'}), $version, 'the installed default_version is the EXTVERSION');

# The token settings take effect on reload.
$node->append_conf('postgresql.conf', "registry_migration.jwt_token_lifetime = '2min'\n");
$node->reload;
$since_tokens = $sim->requests->[-1]{seq};
request('status', 'group/native');
is($sim->requests($since_tokens)->[0]{claims}{exp} - $sim->requests($since_tokens)->[0]{claims}{iat}, 120,
	'jwt_token_lifetime sets exp - iat');
$node->append_conf('postgresql.conf', "registry_migration.jwt_audience = 'another_service'\n");
$node->reload;
like(request('status', 'group/native'), qr/^registry unavailable\|401\|.*credentials/,
	'a token for another audience is refused by the registry');
$node->append_conf('postgresql.conf', "registry_migration.jwt_audience = 'container_registry'\n");
$node->reload;
like(request('status', 'group/native'), qr/^ok\|200\|native/, 'the right audience again');

# The key file replaced, as a key rotation does: from the next request of
# the same session on, tokens are signed with the new key, without a reload.
# A replacement the server cannot read yet leaves the key in use as it is
# (logged once) and is read as soon as it can be; so is a file missing for
# a moment. $sim trusts the first key, $rotated the second.
my $keydir = PostgreSQL::Test::Utils::tempdir;
my $key_file = "$keydir/registry_migration.key";
copy("$fixtures/jwt_test_key.pem", $key_file) or die "copy: $!";
$node->append_conf('postgresql.conf', "registry_migration.jwt_private_key_file = '$key_file'\n");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT current_setting('registry_migration.jwt_private_key_file') = '$key_file'")
  or die 'the key file setting was not applied';
my $rotated = RegistrySimulator->new(jwt_public_key => "$fixtures/jwt_rotated_key.pub.pem");
$rotated->add_repositories({ path => 'group/rotated', status => 'import_complete' });

sub status_via
{
	my ($registry, $path) = @_;
	return "SET registry_migration.registry_url = '" . $registry->url . "';\n"
	  . "SELECT answer || ' ' || http_status FROM registry_migration.registry_request('status', '$path');";
}
my $log_offset = -s $node->logfile;
is($node->safe_psql('postgres', join("\n",
	status_via($sim, 'group/native'),
	"\\! cp '$fixtures/jwt_rotated_key.pem' '$keydir/new.key' && chmod 000 '$keydir/new.key' && mv '$keydir/new.key' '$key_file'",
	status_via($rotated, 'group/rotated'),
	status_via($rotated, 'group/rotated'),
	"\\! chmod 600 '$key_file'",
	status_via($rotated, 'group/rotated'),
	"\\! cp '$fixtures/jwt_test_key.pem' '$key_file'",
	status_via($sim, 'group/native'),
	"\\! rm '$key_file'",
	status_via($sim, 'group/native'),
	status_via($sim, 'group/native'))),
	join("\n", 'ok 200', ('registry unavailable 401') x 2, ('ok 200') x 4),
	'a key rotation within one session: a new key the server cannot read is not used, '
	  . 'it is once readable, then the first key again in place, and the file gone: the key stays');
is(scalar(grep { !$_->{token_valid} } @{ $rotated->requests }), 2,
	'... the registry that trusts the new key refused only the two tokens of the old one');
my @rotation_log = slurp_file($node->logfile, $log_offset) =~ /the key file "\Q$key_file\E" changed but cannot be used.*\n.*DETAIL:\s+(.*)/g;
is(scalar(@rotation_log), 2, '... each replacement that could not be used is logged once');
like($rotation_log[0] // '', qr/Permission denied/, '... saying why: not readable');
like($rotation_log[1] // '', qr/No such file/, '... not there');
$rotated->stop;
$node->append_conf('postgresql.conf', "registry_migration.jwt_private_key_file = '$fixtures/jwt_test_key.pem'\n");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT current_setting('registry_migration.jwt_private_key_file') = '$fixtures/jwt_test_key.pem'")
  or die 'the key file setting was not applied';

# ---- redirects -------------------------------------------------
(my $other_url = $other->url) =~ s/127\.0\.0\.1/localhost/;
$other->add_repositories({ path => 'moved/repo', status => 'import_complete' });
$sim->set_faults({ match => { kind => 'status', path => 'moved/repo' }, action =>
	  { type => 'redirect', location => "$other_url/gitlab/v1/import/moved/repo/" } });
like(request('status', 'moved/repo'), qr/^ok\|200\|import_complete\|/, 'a GET follows a redirect to another host');
my @moved = grep { $_->{kind} eq 'status' } @{ $other->requests };
ok(@moved && !$moved[-1]{token_present}, 'the token was not sent to the other host');
$sim->set_faults({ match => { kind => 'start' }, times => 1, action =>
	  { type => 'redirect', location => $sim->url . '/gitlab/v1/import/group/idle/?import_type=pre' } });
like(request('start_pre_import', 'group/idle'), qr/^registry unavailable\|302\|/,
	'a PUT does not follow a redirect: registry unavailable');
$sim->set_faults({ match => { kind => 'status' }, action =>
	  { type => 'redirect', location => $sim->url . '/gitlab/v1/import/group/idle/' } });
like(request('status', 'group/idle'), qr/^registry unavailable\|\|.*more than 3 redirects/,
	'a redirect loop stops after 3 redirects');
$sim->set_faults({ match => { kind => 'status' }, action => { type => 'redirect', location => 'ftp://127.0.0.1/x' } });
like(request('status', 'group/idle'), qr/^registry unavailable\|\|.*not http or https/,
	'a redirect to another protocol is not followed');
$sim->clear_faults;

# ---- transport faults ------------------------------------------------------
my %faults = (
	drop => qr/connection closed without an answer/,
	garbage => qr/not an HTTP answer/,
	truncate => qr/truncated answer/,
);
for my $fault (sort keys %faults)
{
	$sim->set_faults({ match => { kind => 'status' }, times => 1, action => { type => $fault } });
	like(request('status', 'group/idle'), qr/^registry unavailable\|\|\|\|\|$faults{$fault}/,
		"$fault: registry unavailable, described");
}
$sim->set_faults({ match => { kind => 'status' }, times => 1, action => { type => 'hang', seconds => 5 } });
like(request('status', 'group/idle', "SET registry_migration.request_timeout = '300ms';"),
	qr/^registry unavailable\|\|\|\|\|timeout while waiting for the answer/, 'hung registry: timeout, with its phase');
like(request('status', 'group/idle', "SET registry_migration.registry_url = 'http://127.0.0.1:1';"),
	qr/^registry unavailable\|\|\|\|\|connection failed/, 'connection refused');
(my $https = $sim->url) =~ s/^http:/https:/;
like(request('status', 'group/idle', "SET registry_migration.registry_url = '$https';"),
	qr/^registry unavailable\|\|\|\|\|TLS failure/, 'TLS failure (TLS verification on)');
my ($rc, $out, $err) = $node->psql('postgres',
	"SET registry_migration.registry_url = ''; SELECT registry_migration.registry_import_status('a/b')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/22023: registry_migration.registry_url is not set/, 'empty registry_url: 22023 naming the setting');
$sim->set_faults({ match => { kind => 'status' }, times => 1, action => { type => 'respond', code => 503 } });
($rc, $out, $err) = $node->psql('postgres', q{SELECT registry_migration.registry_import_status('group/idle')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/08006: registry unavailable .*\n.*HTTP 503/, 'look-up with the registry unavailable: 08006 naming what failed');

# ---- bounded memory --------------------------------------------------------
$sim->set_faults({ match => { kind => 'status' }, action => { type => 'huge_body', bytes => 20_000_000 } });
my $rss = $node->safe_psql('postgres', q{
	CREATE FUNCTION pg_temp.rss_kb() RETURNS bigint LANGUAGE sql AS
	  $$SELECT substring(pg_read_file('/proc/self/status') FROM 'VmRSS:\s+(\d+)')::bigint$$;
	SELECT count(*) FROM registry_migration.registry_request('status', 'group/idle');
	SELECT pg_temp.rss_kb();
	SELECT count(*) FROM generate_series(1, 25), registry_migration.registry_request('status', 'group/idle');
	SELECT pg_temp.rss_kb();});
my (undef, $before, undef, $after) = split /\n/, $rss;
cmp_ok($after - $before, '<', 40_000, "25 answers of 20 MB: backend memory grew by " . ($after - $before) . " kB");
$sim->clear_faults;

# ---- interrupts ------------------------------------------------
$sim->set_faults({ match => { kind => 'status' }, action => { type => 'hang', seconds => 120 } });
my $hang_settings = "SET registry_migration.request_timeout = '60s';";
my $t0 = time();
($rc, $out, $err) = $node->psql('postgres',
	"$hang_settings SET statement_timeout = '500ms'; SELECT registry_migration.registry_import_status('group/idle')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
my $elapsed = time() - $t0;
like($err, qr/57014: canceling statement due to statement timeout/, 'statement_timeout stops a hung request');
cmp_ok($elapsed, '<', 10, sprintf('... long before the request timeout (%.2f s)', $elapsed));

sub interrupt_hung_lookup
{
	my ($function, $expected) = @_;
	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'), '-c',
		"$hang_settings SELECT registry_migration.registry_import_status('group/idle')" ],
		'>', \$stdout, '2>', \$stderr);
	$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE query LIKE '%registry_import_status%' AND pid <> pg_backend_pid()}) or die 'no hung session';
	my $start = time();
	$node->safe_psql('postgres', "SELECT $function(pid) FROM pg_stat_activity
		WHERE query LIKE '%registry_import_status%' AND pid <> pg_backend_pid()");
	$h->finish;
	my $took = time() - $start;
	like($stderr, $expected, "$function stops a hung request");
	cmp_ok($took, '<', 10, sprintf('... long before the request timeout (%.2f s)', $took));
}
interrupt_hung_lookup('pg_cancel_backend', qr/57014: canceling statement due to user request/);
interrupt_hung_lookup('pg_terminate_backend', qr/57P01: terminating connection due to administrator command/);
$sim->clear_faults;
is($node->safe_psql('postgres', q{SELECT registry_migration.registry_import_status('group/native')}),
	'native', 'the server works normally afterwards');

# ---- concurrent status requests -------------------------------------------
my @paths = map { "batch/repo-$_" } 1 .. 64;
$sim->add_repositories(map { { path => $_, status => 'pre_import_complete' } } @paths);
$sim->configure(latency_ms => 200);
my $since = $sim->requests->[-1]{seq};
my $rows = $node->safe_psql('postgres', "SET registry_migration.max_concurrent_requests = 16;
	SELECT count(*) FILTER (WHERE registry_status = 'pre_import_complete'), count(*)
	  FROM registry_migration.registry_import_statuses(ARRAY['" . join("','", @paths) . "'])");
is($rows, '64|64', 'the batch answers every repository, in one call');
$sim->configure(latency_ms => 0);

# How many of the batch's requests were at the registry at the same time.
my @batch = grep { $_->{kind} eq 'status' } @{ $sim->requests($since) };
my @edges = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
  map { ([ $_->{time}, 1 ], [ $_->{time} + $_->{duration_ms} / 1000, -1 ]) } @batch;
my ($now, $peak) = (0, 0);
for (@edges) { $now += $_->[1]; $peak = $now if $now > $peak }
is(scalar(@batch), 64, 'one request per repository');
cmp_ok($peak, '<=', 16, "at most max_concurrent_requests in flight (peak $peak)");
cmp_ok($peak, '>=', 8, 'requests really overlap');

# ---- no secret in the server log ------------------------------------------
my $log = slurp_file($node->logfile);
unlike($log, qr/eyJ[\w-]{10,}\.[\w-]{10,}/, 'no token in the server log');

$node->stop;
done_testing();
