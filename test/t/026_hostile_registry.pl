# A hostile registry: answers built to hurt the client (deeply nested JSON,
# a NUL byte followed by garbage, invalid UTF-8, huge bodies and endless tag
# pages, Link headers that point elsewhere, bodies that trickle in byte by
# byte). The registry's answers are not trusted at all: each such answer is
# an unusable answer for its one repository (class 22 from a look-up,
# "unknown" in a cycle), memory stays bounded by the requests in flight, the
# token goes to the registry's own scheme, host and port only, and timeouts
# and cancels still work.
#
# The registry simulator plays the registry; a second simulator started with
# --catch-all is the "catcher": it answers anything and logs every request it
# gets (with its Authorization header), so the test can show that nothing was
# sent to it. The registry listens on a 4-digit port P and the catcher on a
# 5-digit port whose first four digits are P, so the registry's URL is a
# string prefix of URLs that point to the catcher.
use strict;
use warnings;
use Encode ();
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IPC::Run;
use JSON::PP;
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time sleep);

my $t_start  = time();
my $fixtures = "$FindBin::RealBin/../fixtures";

# ---- the registry and the catcher ------------------------------------------------

my ($sim, $catcher);
for my $attempt (1 .. 40)
{
	my $port = 2000 + int(rand(4500));    # 2000..6499: the catcher's port stays <= 64999
	$sim = eval {
		RegistrySimulator->new(port => $port, pre_import_seconds => 3600,
			import_seconds => 3600, cancel_cooldown => 0, start_timeout => 5,
			stderr => '/dev/null', jwt_public_key => "$fixtures/jwt_test_key.pub.pem");
	} or next;
	for my $digit (0 .. 9)
	{
		$catcher = eval {
			RegistrySimulator->new(port => $port * 10 + $digit, catch_all => 1,
				start_timeout => 5, stderr => '/dev/null');
		} and last;
	}
	last if $catcher;
	$sim->stop;
	undef $sim;
}
BAIL_OUT('could not start the registry and the catcher on related ports') unless $catcher;
my ($P, $C) = ($sim->port, $catcher->port);
note("registry on port $P, catcher on port $C");

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"registry_migration.registry_url = '" . $sim->url . "'",
	"registry_migration.jwt_private_key_file = '$fixtures/jwt_test_key.pem'",
	"registry_migration.request_timeout = '5s'",
	"registry_migration.connect_timeout = '1s'", ''));
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION registry_migration;
	-- A statement's single value, or "ERROR <sqlstate>: message".
	CREATE FUNCTION public.attempt(q text) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		result text; st text; msg text;
	BEGIN
		EXECUTE q INTO result;
		RETURN coalesce(result, 'NULL');
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		RETURN 'ERROR ' || st || ': ' || msg;
	END $$;
	-- Peak resident memory of this backend, in kB.
	CREATE FUNCTION public.hwm_kb() RETURNS bigint LANGUAGE sql AS
	  $$SELECT substring(pg_read_file('/proc/' || pg_backend_pid() || '/status')
	                     FROM 'VmHWM:\s+(\d+)')::bigint$$;
	UPDATE registry_migration.settings SET enabled = false, max_step_duration = '1 min',
	  pre_import_timeout = '1 day', import_timeout = '1 day', pre_import_tags_rate = 0,
	  max_tags_count = 0, guard_batch_size = 100;
});

# ---- helpers -------------------------------------------------------------------------

# sql(), attempt() (through this file's public.attempt), timed_attempt() and
# section_time() come from MigrationTest.
use_node($node, $sim);

sub valid_utf8
{
	my ($bytes) = @_;
	return eval { Encode::decode('UTF-8', $bytes, Encode::FB_CROAK); 1 } ? 1 : 0;
}

sub status_lookup { return attempt("SELECT registry_migration.registry_import_status('$_[0]')") }
sub tags_lookup   { return attempt("SELECT registry_migration.registry_tags_count('$_[0]')") }

# A hostile answer to every request of one kind for one path (replacing all rules).
sub hostile_answer
{
	my ($kind, $path, %action) = @_;
	$sim->clear_faults;
	$sim->hostile(kind => $kind, ($path ? (path => $path) : ()), %action);
}

my @good = ('ok/done', 'ok/pre-done', 'ok/running');
my $hostile = 'hostile/one';
$sim->add_repositories(
	{ path => 'ok/done', status => 'import_complete' },
	{ path => 'ok/pre-done', status => 'pre_import_complete' },
	{ path => 'ok/running', pre_import_outcomes => ['hang'] },
	{ path => $hostile, status => 'import_failed', tags => 2 },
	{ path => 'slow/one', status => 'import_complete', tags => 2 });
is(sql(q{SELECT answer FROM registry_migration.registry_request('start_pre_import', 'ok/running')}),
	'accepted', 'setup: a pre-import that keeps running on the registry');

# A guard cycle over four stale pre-importing repositories, the status answer
# of hostile/one being hostile. Returns the cycle's result (JSON text or
# "ERROR ...") and the states afterwards.
sub guard_batch
{
	my (%action) = @_;
	sql(q{DELETE FROM registry_migration.repositories; DELETE FROM registry_migration.events;}
		  . join('', map { "INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
			VALUES ('$_', 'pre_importing', now() - interval '1 hour');" } (@good, $hostile)));
	hostile_answer('status', $hostile, %action);
	my $result = attempt('SELECT registry_migration.run_guard()::text');
	$sim->clear_faults;
	my %state = map { split /\|/ } split /\n/,
	  sql('SELECT path, state FROM registry_migration.repositories');
	return ($result, \%state);
}

# What must hold after guard_batch, whatever the hostile answer was.
sub check_guard_batch
{
	my ($name, $result, $state) = @_;
	unlike($result, qr/^ERROR/, "$name: run_guard completes (one hostile answer does not fail the cycle)")
	  or diag($result);
	my $summary = eval { $json->decode($result) } // {};
	is_deeply([ sort @{ $summary->{finished} // [] } ], [ 'ok/done', 'ok/pre-done' ],
		"$name: the cycle records the other repositories' finished steps");
	ok((grep { $_ eq 'ok/running' } @{ $summary->{left_alone} // [] }),
		"$name: the running one is left alone");
	is(join(' ', map { $state->{$_} } @good), 'import_done pre_import_done pre_importing',
		"$name: the other repositories' states");
	like($state->{$hostile}, qr/^(pre_importing|import_aborted)$/,
		"$name: the hostile answer finishes nothing (state $state->{$hostile})");
	my @mentioned = grep { $_ eq $hostile }
	  (@{ $summary->{aborted} // [] }, @{ $summary->{left_alone} // [] },
		map { $_->{path} } @{ $summary->{errors} // [] });
	ok(@mentioned, "$name: the hostile repository is accounted for in the summary (aborted, left alone or an error)");
	is(sql("SELECT count(*) FROM registry_migration.events WHERE path = '$hostile'
		AND (new_state IN ('import_done', 'pre_import_done') OR registry_status LIKE '%complete%')"),
		'0', "$name: no event records a completion for the hostile repository");
}

# Peak RSS growth (kB) of a fresh session running one statement, after a
# warm-up request (library, libcurl and the token are loaded before the first
# reading). Returns (growth, the statement's value or "ERROR ...").
sub peak_growth
{
	my ($statement) = @_;
	my @lines = split /\n/, sql(q{SELECT answer FROM registry_migration.registry_request('cancel', 'warm/up');
		SELECT public.hwm_kb();} . "SELECT public.attempt(\$q\$$statement\$q\$); SELECT public.hwm_kb();");
	return ($lines[-1] - $lines[1], join("\n", @lines[ 2 .. $#lines - 1 ]));
}

# ==== 1. Deeply nested JSON ================================================================

my $t = time();
my %deep = (
	'1 000 000 [ (the whole body)' => { type => 'deep_json', depth => 1_000_000 },
	'1 000 000 nested objects after a valid status' =>
	  { type => 'deep_json', depth => 1_000_000, nest => 'object', member => 'extra' },
	'1 000 000 [ never closed' => { type => 'deep_json', depth => 1_000_000, closed => 0 },
);
for my $name (sort keys %deep)
{
	hostile_answer('status', $hostile, %{ $deep{$name} });
	like(status_lookup($hostile), qr/^ERROR 22/, "deep JSON, $name: registry_import_status fails with class 22");
}
hostile_answer('tags', $hostile, type => 'deep_json', depth => 1_000_000, member => 'tags');
like(tags_lookup($hostile), qr/^ERROR 22/, 'deep JSON in a tag list: registry_tags_count fails with class 22');

hostile_answer('status', $hostile, type => 'deep_json', depth => 1_000_000);
my $batch_sql = "SELECT string_agg(path || '=' || coalesce(registry_status, 'NULL'), ',' ORDER BY path)
	FROM registry_migration.registry_import_statuses(ARRAY['ok/done', '$hostile', 'ok/pre-done'])";
is(attempt($batch_sql), "$hostile=NULL,ok/done=import_complete,ok/pre-done=pre_import_complete",
	'deep JSON: registry_import_statuses returns every row, the hostile one without a status');

check_guard_batch('deep JSON, guard', guard_batch(type => 'deep_json', depth => 1_000_000));
section_time('deep JSON', $t);

# ==== 2. A NUL byte and garbage =================================================================

$t = time();
my %nul = (
	'valid body, then NUL and garbage' => { where => 'after' },
	'raw NUL inside the status string' => { where => 'in_string' },
	'\u0000 inside the status string'  => { where => 'escaped' },
);
for my $name (sort keys %nul)
{
	hostile_answer('status', $hostile, type => 'nul_garbage', status => 'import_complete', %{ $nul{$name} });
	like(status_lookup($hostile), qr/^ERROR 22/, "NUL, $name: registry_import_status fails with class 22 (never import_complete)");
}
hostile_answer('tags', $hostile, type => 'nul_garbage', where => 'after');
like(tags_lookup($hostile), qr/^ERROR 22/, 'NUL after a valid tag list: registry_tags_count fails with class 22');
hostile_answer('status', $hostile, type => 'nul_garbage', where => 'after', status => 'import_complete');
is(attempt($batch_sql), "$hostile=NULL,ok/done=import_complete,ok/pre-done=pre_import_complete",
	'NUL after the body: registry_import_statuses reads the hostile answer as unusable');
check_guard_batch('NUL after the body, guard',
	guard_batch(type => 'nul_garbage', where => 'after', status => 'import_complete'));
check_guard_batch('raw NUL in the status, guard',
	guard_batch(type => 'nul_garbage', where => 'in_string', status => 'import_complete'));
section_time('NUL', $t);

# ==== 3. Invalid UTF-8 ====================================================================

$t = time();
my %utf8 = (
	'0xFF after the status'             => { sequence => 'ff' },
	'a UTF-16 surrogate in the status'  => { sequence => 'eda080' },
	'an overlong "/" in the status'     => { sequence => 'c0af' },
	'a truncated sequence in the status' => { sequence => 'e282' },
	'0xFF in the detail'                => { sequence => 'ff', where => 'detail' },
	'0xFF in a member name'             => { sequence => 'ff', where => 'key' },
);
for my $name (sort keys %utf8)
{
	hostile_answer('status', $hostile, type => 'invalid_utf8', status => 'import_complete', %{ $utf8{$name} });
	like(status_lookup($hostile), qr/^ERROR 22/, "invalid UTF-8, $name: registry_import_status fails with class 22");
}
hostile_answer('tags', $hostile, type => 'invalid_utf8');
like(tags_lookup($hostile), qr/^ERROR 22/, 'invalid UTF-8 in a tag name: registry_tags_count fails with class 22');
hostile_answer('status', $hostile, type => 'invalid_utf8', status => 'import_complete');
my $batch = attempt($batch_sql);
is($batch, "$hostile=NULL,ok/done=import_complete,ok/pre-done=pre_import_complete",
	'invalid UTF-8: registry_import_statuses reads the hostile answer as unusable');
for my $sequence ('ff', 'eda080')
{
	my ($result, $state) = guard_batch(type => 'invalid_utf8', status => 'import_complete', sequence => $sequence);
	check_guard_batch("invalid UTF-8 ($sequence), guard", $result, $state);
	ok(valid_utf8($result), "invalid UTF-8 ($sequence): the cycle summary is valid UTF-8");
	my $events = sql('SELECT e::text FROM registry_migration.events e');
	ok(valid_utf8($events), "invalid UTF-8 ($sequence): every stored event is valid UTF-8");
}
section_time('invalid UTF-8', $t);

# ==== 4. Hostile bodies on start and cancel: absence of harm ===================================

$t = time();
my %bodies = (
	'deep JSON'                => { type => 'deep_json', depth => 1_000_000 },
	'NUL and garbage'          => { type => 'nul_garbage', status => 'import_complete' },
	'invalid UTF-8'            => { type => 'invalid_utf8', status => 'import_complete' },
	'12 MiB, chunked'          => { type => 'huge_body', bytes => 12 << 20, framing => 'chunked' },
);
for my $name (sort keys %bodies)
{
	for my $call ('start_pre_import', 'cancel')
	{
		my $kind = $call eq 'cancel' ? 'cancel' : 'start';
		hostile_answer($kind, $hostile, code => 202, %{ $bodies{$name} });
		my $result = attempt("SELECT answer FROM registry_migration.registry_request('$call', '$hostile')");
		unlike($result, qr/^ERROR (?!22)/, "$name in a 202 to $call: an answer or a class-22 error ($result)");
	}
}
$sim->clear_faults;
is(status_lookup('ok/done'), 'import_complete', 'the backend works normally afterwards');
section_time('start and cancel', $t);

# ==== 5. Bounded memory =======================================================================

$t = time();
my $page_bytes = 7_500_000;    # about 8 MB: below an 8 MiB cap, so every page is read
my $per_page   = int(($page_bytes - 40) / (120 + 4));
hostile_answer('tags', 'big/tags', type => 'tag_pages', pages => 30, page_bytes => $page_bytes, tag_length => 120);
my ($growth, $result) = peak_growth(q{SELECT registry_migration.registry_tags_count('big/tags')});
ok($result eq 30 * $per_page || $result =~ /^ERROR 22/,
	"30 tag pages of 7.5 MB: the full count or an unusable answer ($result)");
cmp_ok($growth, '<', 100 * 1024, "30 tag pages of 7.5 MB: peak backend memory grew by less than 100 MB ($growth kB)");
my @tag_requests = grep { $_->{kind} eq 'tags' && $_->{repository} eq 'big/tags' } @{ $sim->requests };
note(scalar(@tag_requests) . ' tag pages requested');

sub stale_many
{
	sql(q{DELETE FROM registry_migration.repositories; DELETE FROM registry_migration.events;
		INSERT INTO registry_migration.repositories (path, state, pre_import_started_at)
		SELECT format('mem/r%s', to_char(i, 'FM000')), 'pre_importing', now() - interval '1 hour'
		  FROM generate_series(1, 100) i;});
}
stale_many();
# Usable (if absurd) answers below any cap: what is kept of each must be small.
hostile_answer('status', undef, type => 'huge_body', bytes => 4_000_000, status => 'pre_import_in_progress');
($growth, $result) = peak_growth('SELECT registry_migration.run_guard()::text');
unlike($result, qr/^ERROR/, 'guard over 100 stale repositories with 4 MB status answers: completes');
is(eval { $json->decode($result)->{stale} }, 100, '... and handles all 100');
cmp_ok($growth, '<', 200 * 1024,
	"... peak backend memory grew by less than 200 MB (16 requests in flight x a cap), not by the 100 answers ($growth kB)");

# Over any sane cap, without a Content-Length (nothing to refuse up front).
stale_many();
hostile_answer('status', undef, type => 'huge_body', bytes => 12 << 20, framing => 'chunked');
($growth, $result) = peak_growth('SELECT registry_migration.run_guard()::text');
unlike($result, qr/^ERROR/, 'guard over 100 stale repositories with 12 MiB chunked status answers: completes');
is(eval { $json->decode($result)->{stale} }, 100, '... and handles all 100');
cmp_ok($growth, '<', 200 * 1024, "... peak backend memory grew by less than 200 MB ($growth kB)");
$sim->clear_faults;
sql(q{DELETE FROM registry_migration.repositories; DELETE FROM registry_migration.events;});
section_time('memory', $t);

# ==== 6. Link headers: the token goes to the registry only ===================================

$t = time();
my $rest = 'v2/{path}/tags/list?n={n}&last={last}';
my %same = (
	'relative'          => "</$rest>; rel=\"next\"",
	'absolute, same origin' => "<http://127.0.0.1:$P/$rest>; rel=\"next\"",
);
for my $name (sort keys %same)
{
	hostile_answer('tags', 'link/x', type => 'tag_pages', pages => 3, tags_per_page => 4, link => $same{$name});
	my $since = ($sim->requests->[-1] // { seq => 0 })->{seq};
	is(tags_lookup('link/x'), 12, "Link to the same origin ($name) is followed: 3 pages, 12 tags");
	my @pages = grep { $_->{kind} eq 'tags' } @{ $sim->requests($since) };
	is(scalar(grep { $_->{token_valid} } @pages), 3, "... every page request carried a valid token");
}

my %elsewhere = (
	'userinfo (registry host:port as user:password)' => "<http://127.0.0.1:$P\@127.0.0.1:$C/$rest>; rel=\"next\"",
	'another port starting with the registry port'    => "<http://127.0.0.1:$C/$rest>; rel=\"next\"",
	'scheme-relative //host:port'                     => "<//127.0.0.1:$C/$rest>; rel=\"next\"",
	'another host name'                               => "<http://localhost:$C/$rest>; rel=\"next\"",
	'origin only'                                     => "<http://127.0.0.1:$C>; rel=\"next\"",
	'another scheme'                                  => "<https://127.0.0.1:$C/$rest>; rel=\"next\"",
);
for my $name (sort keys %elsewhere)
{
	$catcher->clear_requests;
	hostile_answer('tags', 'link/x', type => 'tag_pages', pages => 3, tags_per_page => 4, link => $elsewhere{$name});
	my $result = tags_lookup('link/x');
	sleep 0.3;    # a request that was not HTTP is logged when its connection ends
	my @caught = @{ $catcher->requests };
	is(scalar(@{ $catcher->authorized_requests }), 0,
		"Link to another origin ($name): the catcher got no request with an Authorization header");
	is(scalar(@caught), 0, "... nor any request at all (result: $result)")
	  or diag(join("\n", map { join(' ', $_->{kind}, $_->{method} // '-', $_->{raw_path} // '-',
			'authorization:', ($_->{authorization} // '-') =~ s/ .*/ .../r) } @caught));
}
$sim->clear_faults;
section_time('Link', $t);

# ==== 7. Trickling bodies ====================================================================

$t = time();
my $timeout = "SET registry_migration.request_timeout = '1s';";
# The client's psql start-up is inside the measured time.
my %trickles = (
	'status body, 1 byte / 100 ms'   => [ 'status', { stage => 'body' },
		"SELECT registry_migration.registry_import_status('slow/one')" ],
	'status headers, 1 byte / 100 ms' => [ 'status', { stage => 'headers' },
		"SELECT registry_migration.registry_import_status('slow/one')" ],
	'tag list body, 1 byte / 100 ms' => [ 'tags', { stage => 'body' },
		"SELECT registry_migration.registry_tags_count('slow/one')" ],
);
for my $name (sort keys %trickles)
{
	my ($kind, $action, $statement) = @{ $trickles{$name} };
	hostile_answer($kind, 'slow/one', type => 'trickle', interval_ms => 100, %$action);
	my ($result, $elapsed) = timed_attempt($statement, $timeout);
	like($result, qr/^ERROR 08/, "trickling $name: registry unavailable (class 08)");
	cmp_ok($elapsed, '<', 2.0, sprintf('... within request_timeout (1 s) + 1 s (%.2f s)', $elapsed));
}
hostile_answer('start', 'slow/one', type => 'trickle', interval_ms => 100);
my ($start_result, $start_elapsed) = timed_attempt(
	q{SELECT answer FROM registry_migration.registry_request('start_pre_import', 'slow/one')}, $timeout);
is($start_result, 'registry unavailable', 'trickling start answer: registry unavailable');
cmp_ok($start_elapsed, '<', 2.0, sprintf('... within request_timeout (1 s) + 1 s (%.2f s)', $start_elapsed));

# A trickle that ends before the timeout is just a slow answer (the control case).
hostile_answer('status', 'slow/one', type => 'trickle', interval_ms => 100, seconds => 0.4);
is(attempt("SELECT registry_migration.registry_import_status('slow/one')", $timeout), 'import_complete',
	'a trickle that ends within the timeout is read normally');

for my $stage ('body', 'headers')
{
	hostile_answer('status', 'slow/one', type => 'trickle', interval_ms => 100, stage => $stage);
	my $since = ($sim->requests->[-1] // { seq => 0 })->{seq};
	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'), '-c',
		"SET registry_migration.request_timeout = '60s'; SELECT registry_migration.registry_import_status('slow/one')" ],
		'>', \$stdout, '2>', \$stderr);
	my $deadline = time() + 10;
	sleep 0.05 until time() > $deadline || grep { $_->{kind} eq 'status' } @{ $sim->requests($since) };
	sleep 0.3;    # well into the trickle
	my $t0 = time();
	sql(q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity
		WHERE query LIKE '%registry_import_status(''slow/one'')%' AND pid <> pg_backend_pid()});
	$h->finish;
	my $took = time() - $t0;
	like($stderr, qr/57014/, "pg_cancel_backend stops a request whose $stage trickles");
	cmp_ok($took, '<', 1.0, sprintf('... within a second (%.2f s)', $took));
}
$sim->clear_faults;
is(status_lookup('ok/done'), 'import_complete', 'the server works normally afterwards');
section_time('trickle', $t);

note(sprintf('total: %.1f s', time() - $t_start));
$node->stop;
$catcher->stop;
$sim->stop;
done_testing();
