# A hostile registry: every answer is untrusted until parsed, and memory
# stays bounded. A small HTTP server started by this test (Python standard
# library only) answers each repository path with one kind of hostile
# answer, and listens on a second port that stands for "another host": the
# registry's token must never reach it.
#
# Covered: Link headers and redirects to another origin, paths that would
# build a request to another endpoint, deeply nested / NUL / oversized
# answers (for the look-ups, the status batch and the guard), peak backend
# memory over many large answers, a FIFO as the key file, and answers that
# trickle in.
use strict;
use warnings;
use FindBin;
use Fcntl qw(O_WRONLY O_NONBLOCK);
use File::Copy qw(copy);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use POSIX qw(mkfifo);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $fixtures = "$FindBin::RealBin/../fixtures";
my $dir = PostgreSQL::Test::Utils::tempdir;
my $json = JSON::PP->new->utf8;

# ---- the hostile registry --------------------------------------------------
my $server_source = <<'PYTHON';
import json, sys, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlsplit, parse_qs

LOG = []
LOCK = threading.Lock()
PORTS = {}

def nested(n):
    return b'[' * n + b']' * n

# A status answer of almost 8 MB: under the first release's cap for every answer.
HUGE_STATUS = b'{"status":"import_complete","detail":"' + b'x' * (8 * 1024 * 1024 - 2048) + b'"}'
STATUS = {
    'good/repo': b'{"name":"good/repo","status":"pre_import_in_progress"}',
    # a million levels (2 MB), and 30 000 levels inside 64 KiB
    'deep/million': b'{"status":' + nested(1000000) + b'}',
    'deep/nested': b'{"detail":' + nested(30000) + b',"status":"import_complete"}',
    'long/status': b'{"status":"' + b'a' * 1000 + b'"}',
    'nul/repo': b'{"status":"import_complete"}\x00garbage',
}
TAG = b'"' + b't' * 250 + b'"'
TAGS_PER_PAGE = 31000          # about 7.9 MB per page
PAGES = 30
HUGE_PAGE = b'{"name":"huge/pages","tags":[' + b','.join([TAG] * TAGS_PER_PAGE) + b']}'

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def send(self, code, body=b'', headers=()):
        try:
            self.send_response(code)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self.answer()

    def do_PUT(self):
        self.answer()

    def do_DELETE(self):
        self.answer()

    def answer(self):
        port = self.server.server_address[1]
        url = urlsplit(self.path)
        if url.path == '/_log':
            with LOCK:
                return self.send(200, json.dumps(LOG).encode())
        with LOCK:
            LOG.append({'port': port, 'method': self.command, 'path': self.path,
                        'bearer': (self.headers.get('Authorization') or '').startswith('Bearer ')})
        if port == PORTS['other']:
            if url.path.startswith('/v2/'):
                return self.send(200, b'{"tags":["x","y"]}')
            return self.send(200, b'{"status":"import_complete"}')
        if url.path.startswith('/gitlab/v1/import/') and url.path.endswith('/'):
            return self.status(url.path[len('/gitlab/v1/import/'):-1], url)
        if url.path.startswith('/v2/') and url.path.endswith('/tags/list'):
            return self.tags(url.path[len('/v2/'):-len('/tags/list')], url)
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

    def status(self, repo, url):
        me = 'http://127.0.0.1:%d' % PORTS['registry']
        other = 'http://127.0.0.1:%d' % PORTS['other']
        if repo in STATUS:
            return self.send(200, STATUS[repo])
        if repo.startswith('huge/'):
            return self.send(200, HUGE_STATUS)
        if repo == 'redir/same':
            return self.send(302, headers=[('Location', '/gitlab/v1/import/good/repo/')])
        if repo == 'redir/port':
            return self.send(302, headers=[('Location', other + '/gitlab/v1/import/good/repo/')])
        if repo == 'redir/userinfo':
            return self.send(302, headers=[('Location', me + '@127.0.0.1:%d/gitlab/v1/import/good/repo/'
                                            % PORTS['other'])])
        if repo == 'redir/slow':
            time.sleep(0.7)
            return self.send(302, headers=[('Location', '/gitlab/v1/import/redir/slow/?hop=%d'
                                            % (int(parse_qs(url.query).get('hop', ['0'])[0]) + 1))])
        if repo == 'trickle/repo':
            return self.trickle()
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

    def trickle(self):
        try:
            self.send_response(200)
            self.send_header('Content-Length', '5000')
            self.end_headers()
            self.wfile.write(b'{"status":"import_complete","detail":"')
            for _ in range(5000):
                self.wfile.write(b'x')
                self.wfile.flush()
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def tags(self, repo, url):
        me = 'http://127.0.0.1:%d' % PORTS['registry']
        page = int(parse_qs(url.query).get('page', ['1'])[0])
        if repo == 'leak/userinfo':
            return self.send(200, b'{"tags":["a"]}', [('Link', '<%s@127.0.0.1:%d/v2/%s/tags/list?n=1000&last=a>; rel="next"'
                                                      % (me, PORTS['other'], repo))])
        if repo == 'leak/scheme-relative':
            return self.send(200, b'{"tags":["a"]}', [('Link', '<//127.0.0.1:%d/v2/%s/tags/list?last=a>; rel="next"'
                                                      % (PORTS['other'], repo))])
        if repo == 'leak/host':
            return self.send(200, b'{"tags":["a"]}', [('Link', '<http://localhost:%d/v2/%s/tags/list?last=a>; rel="next"'
                                                      % (PORTS['registry'], repo))])
        if repo == 'same/abs':
            if page == 1:
                return self.send(200, b'{"tags":["a"]}', [('Link', '<%s/v2/same/abs/tags/list?n=1000&page=2>; rel="next"' % me)])
            return self.send(200, b'{"tags":["b","c"]}')
        if repo == 'huge/pages':
            link = [('Link', '</v2/huge/pages/tags/list?n=1000&page=%d>; rel="next"' % (page + 1))] if page < PAGES else []
            return self.send(200, HUGE_PAGE, link)
        if repo == 'deep/tags':
            return self.send(200, b'{"tags":' + nested(1000000) + b'}')
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

servers = {}
for name in ('registry', 'other'):
    servers[name] = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    servers[name].daemon_threads = True
    PORTS[name] = servers[name].server_address[1]
for server in servers.values():
    threading.Thread(target=server.serve_forever, daemon=True).start()
print('listening %d %d' % (PORTS['registry'], PORTS['other']), flush=True)
sys.stdin.read()
PYTHON

my $script = "$dir/hostile_registry.py";
open(my $fh, '>', $script) or die "write $script: $!";
print $fh $server_source;
close $fh;
my ($server_in, $server_out, $server_err) = ('', '', '');
my $server = IPC::Run::start([ '/usr/bin/python3', $script ], \$server_in, \$server_out, \$server_err,
	IPC::Run::timeout(60));
$server->pump until $server_out =~ /listening (\d+) (\d+)\n/;
my ($port, $other_port) = ($1, $2);
my $registry = "http://127.0.0.1:$port";
my $http = HTTP::Tiny->new(timeout => 10);

sub server_log { return @{ $json->decode($http->get("$registry/_log")->{content}) } }
sub log_size { return scalar(server_log()) }
sub requests_since { my @log = server_log(); my @since = @log[ $_[0] .. $#log ]; return @since }

# ---- the node ----------------------------------------------------------------
my $key = "$dir/key.pem";
copy("$fixtures/jwt_test_key.pem", $key) or die "copy key: $!";
chmod 0600, $key;

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '$registry'",
	"registry_migration.jwt_private_key_file = '$key'",
	"registry_migration.request_timeout = '10s'",
	"registry_migration.max_concurrent_requests = 16", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');

sub sql { return $node->safe_psql('postgres', $_[0]) }

# The value of a statement, or its error: a check that fails does not end the test.
sub value_or_error
{
	my ($statement) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $statement,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $rc == 0 ? $out : $err;
}

# stderr of a statement (verbose: with the SQLSTATE), or '' when it worked.
sub error_of
{
	my ($statement) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $statement,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $err;
}

# ---- the token goes to the registry's origin only: Link pages ------------------
for my $repo (qw(leak/userinfo leak/scheme-relative leak/host))
{
	my $since = log_size();
	my $err = error_of("SELECT registry_migration.registry_tags_count('$repo')");
	like($err, qr/08006: registry unavailable .*\n.*next page \(Link header\) is not on the registry's scheme, host and port/,
		"$repo: a Link to another origin is a failed answer");
	my @elsewhere = grep { $_->{port} != $port } requests_since($since);
	is(scalar(@elsewhere), 0, "$repo: nothing was sent to the other origin");
	ok(!grep({ $_->{port} != $port && $_->{bearer} } server_log()), "$repo: the token never left the registry");
}
like(sql("SELECT answer || '|' || http_status || '|' || problem FROM registry_migration.registry_request('tags', 'leak/userinfo')"),
	qr/^registry unavailable\|200\|the tag list's next page/, 'registry_request shows the refused Link');
{
	my $since = log_size();
	is(sql("SELECT registry_migration.registry_tags_count('same/abs')"), '3',
		'an absolute Link on the same origin is followed');
	my @pages = requests_since($since);
	is(scalar(@pages), 2, '... two pages');
	is(scalar(grep { $_->{bearer} && $_->{port} == $port } @pages), 2, '... both with the token');
}

# ---- redirects ------------------------------------------------------------------
{
	my $since = log_size();
	is(sql("SELECT registry_migration.registry_import_status('redir/same')"), 'pre_import_in_progress',
		'a redirect within the registry is followed');
	my @hops = requests_since($since);
	is(join(' ', map { "$_->{port}:" . ($_->{bearer} ? 'token' : 'none') } @hops), "$port:token $port:token",
		'... with the token on both hops');
}
for my $repo (qw(redir/port redir/userinfo))
{
	my $since = log_size();
	is(sql("SELECT registry_migration.registry_import_status('$repo')"), 'import_complete',
		"$repo: a GET follows a redirect to another origin");
	my @hops = requests_since($since);
	is(join(' ', map { "$_->{port}:" . ($_->{bearer} ? 'token' : 'none') } @hops), "$port:token $other_port:none",
		"$repo: ... without the token there");
}
{
	my $t0 = time();
	my $err = error_of("SET registry_migration.request_timeout = '1500ms';
		SELECT registry_migration.registry_import_status('redir/slow')");
	my $took = time() - $t0;
	like($err, qr/08006: .*\n.*timeout/, 'slow redirects: request_timeout covers every hop');
	cmp_ok($took, '<', 3, sprintf('... the whole chain ended in %.2f s', $took));
}

# ---- paths never build a request to another endpoint ----------------------------
{
	my $since = log_size();
	for my $path ('../../../v2/secret', 'a//b', 'a/./b', 'a%2e%2e/b', 'a%2fb', 'A/b', '/' x 3000)
	{
		my $shown = length($path) > 20 ? substr($path, 0, 20) . '...' : $path;
		for my $call (qw(status tags start_pre_import cancel))
		{
			my $err = error_of("SELECT * FROM registry_migration.registry_request('$call', '$path')");
			like($err, qr/22023: invalid repository path/, "$call of \"$shown\": 22023");
			unlike($err, qr/out of memory/, "$call of \"$shown\": not \"out of memory\"");
		}
	}
	like(error_of(q{SELECT registry_migration.registry_import_status('../x')}), qr/22023/,
		'registry_import_status refuses ..');
	like(error_of(q{SELECT registry_migration.registry_tags_count('a//b')}), qr/22023/,
		'registry_tags_count refuses an empty segment');
	like(error_of(q{SELECT * FROM registry_migration.registry_import_statuses(ARRAY['good/repo', '../x'])}),
		qr/22023/, 'registry_import_statuses refuses the batch');
	my @sent = requests_since($since);
	is(scalar(@sent), 0, 'none of them sent a request');
}

# ---- hostile answers are unusable for one repository, never an error of another kind --
for my $repo (qw(deep/nested deep/million long/status nul/repo))
{
	like(error_of("SELECT registry_migration.registry_import_status('$repo')"),
		qr/22000: unusable registry answer to the import status of "\Q$repo\E"/,
		"$repo: the status look-up raises class 22");
}
like(error_of(q{SELECT registry_migration.registry_tags_count('deep/tags')}),
	qr/22000: unusable registry answer to the tag count/, 'a tag list nested a million levels: class 22');
is(value_or_error(q{SELECT string_agg(path || '=' || coalesce(registry_status, 'NULL'), ' ' ORDER BY path)
	FROM registry_migration.registry_import_statuses(ARRAY['deep/nested', 'deep/million', 'good/repo', 'long/status'])}),
	'deep/million=NULL deep/nested=NULL good/repo=pre_import_in_progress long/status=NULL',
	'the status batch answers every repository, hostile ones as unknown');

# The guard: hostile answers are "unknown" for their repository alone.
sql(q{UPDATE registry_migration.settings SET enabled = false, max_step_duration = '0',
	pre_import_timeout = '1 day', pre_import_tags_rate = 0, guard_batch_size = 100});
for my $repo (qw(deep/nested deep/million long/status good/repo))
{
	sql("INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
		VALUES ('$repo', 'pre_importing', now() - interval '1 hour')");
}
my ($rc, $guard_out, $guard_err) = $node->psql('postgres', 'SELECT registry_migration.run_guard()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
is($rc, 0, 'run_guard works with hostile answers') or diag($guard_err);
my $guard = $rc == 0 ? $json->decode($guard_out) : {};
is(join(' ', sort @{ $guard->{aborted} // [] }), 'deep/million deep/nested long/status',
	'... the repositories with unusable answers are aborted (status unknown)');
is(join(' ', @{ $guard->{left_alone} // [] }), 'good/repo', '... the one with a usable answer is left alone');
is(sql(q{SELECT coalesce(max(length(registry_status)), 0) <= 64 FROM registry_migration.events}), 't',
	'no hostile status reached the event log');

# ---- memory is bounded by the answers in flight, not by their number ------------
sub peak_growth_kb
{
	my ($warm_up, $statement) = @_;
	my $hwm = q{SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status')
		FROM 'VmHWM:\s+(\d+)')::bigint};
	my @out = split /\n/, sql("$warm_up; $hwm; $statement; $hwm");
	return ($out[-2], $out[-1] - $out[-3]);
}
my ($count, $growth) = peak_growth_kb(q{SELECT registry_migration.registry_tags_count('same/abs')},
	q{SELECT registry_migration.registry_tags_count('huge/pages')});
is($count, 30 * 31000, 'thirty pages of 7.9 MB counted');
cmp_ok($growth, '<', 100_000, "... peak backend memory grew by $growth kB");
diag("thirty tag pages of 7.9 MB: peak backend memory grew by $growth kB");
my $batch = join(',', map { "'huge/repo-$_'" } 1 .. 100);
($count, $growth) = peak_growth_kb(q{SELECT count(*) FROM registry_migration.registry_import_statuses(ARRAY['good/repo'])},
	"SELECT count(*) FILTER (WHERE registry_status IS NULL AND problem LIKE 'status answer larger than%')
	FROM registry_migration.registry_import_statuses(ARRAY[$batch])");
is($count, 100, 'a hundred status answers of 8 MB: each over the cap, unknown');
cmp_ok($growth, '<', 100_000, "... peak backend memory grew by $growth kB");
diag("a hundred status answers of 8 MB: peak backend memory grew by $growth kB");

# ---- answers that trickle in -------------------------------------------------------
{
	my $t0 = time();
	my $err = error_of(q{SET registry_migration.request_timeout = '1s';
		SELECT registry_migration.registry_import_status('trickle/repo')});
	my $took = time() - $t0;
	like($err, qr/08006: .*\n.*timeout while reading the answer/, 'a trickling answer: request_timeout ends it');
	cmp_ok($took, '<', 3, sprintf('... after %.2f s', $took));

	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'), '-c',
		"SET registry_migration.request_timeout = '60s'; SELECT registry_migration.registry_import_status('trickle/repo')" ],
		'>', \$stdout, '2>', \$stderr);
	$node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
		WHERE query LIKE '%trickle/repo%' AND pid <> pg_backend_pid()}) or die 'no trickling session';
	sleep 1;
	my $start = time();
	sql(q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
		WHERE query LIKE '%trickle/repo%' AND pid <> pg_backend_pid()});
	$h->finish;
	my $cancel_took = time() - $start;
	like($stderr, qr/57014: canceling statement due to user request/, 'a trickling answer: cancel stops it');
	cmp_ok($cancel_took, '<', 2, sprintf('... within %.2f s', $cancel_took));
	diag(sprintf('trickling answer: request_timeout 1s ended it after %.2f s, cancel took %.2f s', $took, $cancel_took));
}

# ---- the key file is read without blocking -------------------------------------------
# A backend stuck opening a FIFO cannot be canceled: on a timeout, open the
# FIFO for writing once so that the reader gets end-of-file, and fail.
sub release_fifo
{
	my ($fifo) = @_;
	if (sysopen(my $w, $fifo, O_WRONLY | O_NONBLOCK)) { close $w }
}

my $fifo = "$dir/fifo.pem";
mkfifo($fifo, 0600) or die "mkfifo: $!";
{
	my $timed_out = 0;
	# The check hook runs once the library is loaded in the session.
	my $load = q{SELECT registry_migration.retry_decision('default', NULL, 0, 1);};
	my ($rc, $out, $err) = $node->psql('postgres',
		"$load ALTER SYSTEM SET registry_migration.jwt_private_key_file = '$fifo'",
		extra_params => [ '-v', 'VERBOSITY=verbose' ], timeout => 15, timed_out => \$timed_out);
	release_fifo($fifo) if $timed_out;
	ok(!$timed_out, 'setting a FIFO as the key file does not hang');
	like($err, qr/22023: invalid value .*\n.*it is a FIFO, not a regular file/, '... it is refused, saying why');
	like(error_of("$load ALTER SYSTEM SET registry_migration.jwt_private_key_file = '$dir'"),
		qr/22023: invalid value .*\n.*it is a directory, not a regular file/, 'a directory is refused');
	sql('ALTER SYSTEM RESET registry_migration.jwt_private_key_file');
}
{
	# The key file configured at start turns into a FIFO before a backend's first token.
	my $timed_out = 0;
	my ($rc, $out, $err) = $node->psql('postgres', join("\n",
		q{SELECT registry_migration.retry_decision('default', NULL, 0, 1);},
		"\\! rm -f '$key' && mkfifo '$key'",
		q{SELECT registry_migration.registry_import_status('good/repo');}),
		extra_params => [ '-v', 'VERBOSITY=verbose' ], timeout => 15, timed_out => \$timed_out);
	release_fifo($key) if $timed_out;
	ok(!$timed_out, 'a key file that became a FIFO does not hang the first request');
	like($err, qr/F0000: could not use registry_migration.jwt_private_key_file\n.*it is a FIFO, not a regular file/,
		'... a clear configuration error');
	unlink $key;
	copy("$fixtures/jwt_test_key.pem", $key) or die "copy key: $!";
	chmod 0600, $key;
}
is(sql(q{SELECT registry_migration.registry_import_status('good/repo')}), 'pre_import_in_progress',
	'the server works normally afterwards');

# ---- no secret in the server log ---------------------------------------------------
my $log = slurp_file($node->logfile);
unlike($log, qr/eyJ[\w-]{10,}\.[\w-]{10,}/, 'no token in the server log');
unlike($log, qr/BEGIN (RSA )?PRIVATE KEY/, 'no key in the server log');

$node->stop;
$server->kill_kill;
done_testing();
