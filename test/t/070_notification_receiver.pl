# The notification receiver (scripts/notification_receiver.py), run as a
# process against a real cluster, logged in as a role with nothing but the
# README's grant: the secret stays out of ps and a wrong or missing one
# changes nothing (401); bodies over the limit get 413; each answer class
# (handled, refused, unknown, invalid, other database errors) with its code,
# refusals never retried; a locked row is waited out; /health follows the
# database; the database going away mid-stream loses no notification while
# it is back within the retry window, and one that stays away longer gets 503
# and changes nothing; HTTP/1.1 clients keep their connection for the next
# notification, which neither a stop nor the idle timeout waits for, and
# never read where one request ends ambiguously; a stop
# lets a waiting notification finish; the systemd
# unit is valid and its command line starts the receiver.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IPC::Run;
use MigrationTest;
use NotificationReceiver;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = "$FindBin::RealBin/../..";
my $node = start_node('receiver');
sql(q{CREATE ROLE registry_notifications LOGIN;
	GRANT EXECUTE ON FUNCTION registry_migration.handle_notification(text, text) TO registry_notifications;});

my $secret = 'n0t-in-ps-' . join('', map { sprintf '%02x', int rand 256 } 1 .. 12);
my $receiver = NotificationReceiver->new(node => $node, secret => $secret, user => 'registry_notifications',
	args => [ '--max-body-bytes', 4096, '--retry-seconds', 120, '--dsn', 'application_name=receiver_under_test' ]);

my %pre_importing = (pre_import_started_at => ago('1 hour'));

# The receiver's log lines for one repository, in order.
sub logged { my ($path) = @_; return grep { ($_->{repository} // '') eq $path } $receiver->log_lines }
sub last_logged { return (logged($_[0]))[-1] }

# ---- the secret ----------------------------------------------------------------
# "ps axeww" adds each process's environment (of our own user's processes).
my $ps = join('', map { (run_command($_))[0] } [ 'ps', '-eww', '-o', 'args' ], [ 'ps', 'axeww', '-o', 'args' ]);
like($ps, qr/notification_receiver\.py --port-file/, 'ps shows the receiver');
ok(index($ps, $secret) < 0, 'but not its secret, in its command line or its environment');

my ($out, $err) = ('', '');
IPC::Run::run([ $NotificationReceiver::PYTHON, NotificationReceiver::script_path(), '--secret', 'leaky',
	'--port-file', '/dev/null' ], '<', '/dev/null', '>', \$out, '2>', \$err, IPC::Run::timeout(60));
ok($? >> 8 == 2 && $err =~ /--secret is not accepted/ && $err !~ /leaky/,
	'--secret on the command line is refused, without echoing the value');

put_row('auth/one', 'pre_importing', %pre_importing);
my $events = event_count();
my $r = $receiver->notify('auth/one', 'pre_import_complete', secret => 'wrong');
is($r->{status}, 401, 'a wrong secret gets 401');
$r = $receiver->notify('auth/one', 'pre_import_complete', secret => substr($secret, 0, -1));
is($r->{status}, 401, 'the secret less its last character gets 401');
$r = $receiver->notify('auth/one', 'pre_import_complete', secret => undef);
is($r->{status}, 401, 'no Authorization header gets 401');
is(state_of('auth/one'), 'pre_importing', 'after them the repository is unchanged');
is(event_count(), $events, 'and nothing was recorded');
is_deeply([ map { "$_->{status} $_->{outcome} $_->{attempts}" } logged('auth/one') ],
	[ ('401 unauthorized 0') x 3 ], 'each is logged as unauthorized, without a database call');

my $env_receiver = NotificationReceiver->new(node => $node, secret => 'from-the-environment',
	secret_via => 'env', user => 'registry_notifications');
is($env_receiver->notify('auth/one', 'pre_import_complete', secret => $secret)->{status}, 401,
	'a receiver with its secret from REGISTRY_NOTIFICATION_SECRET refuses another one');
$r = $env_receiver->notify('auth/one', 'pre_import_complete');
is("$r->{status} $r->{json}{state}", '200 pre_import_done', 'and accepts its own');
$env_receiver->stop;

# ---- the body limit ----------------------------------------------------------------
put_row('body/big', 'pre_importing', %pre_importing);
$r = $receiver->notify('body/big', 'pre_import_complete',
	body => '{"status": "pre_import_complete", "detail": "' . ('x' x 5000) . '"}');
is($r->{status}, 413, 'a body over --max-body-bytes gets 413');
is(state_of('body/big'), 'pre_importing', 'and changes nothing');
$r = $receiver->notify('body/big', 'pre_import_complete',
	body => '{"status": "pre_import_complete", "detail": "' . ('x' x 3000) . '"}');
is("$r->{status} $r->{json}{state}", '200 pre_import_done', 'a body under the limit is handled');

# ---- the answers ---------------------------------------------------------------------
put_row('ans/running', 'pre_importing', %pre_importing);
put_row('ans/new', 'default');
$r = $receiver->notify('ans/running', 'pre_import_complete');
is("$r->{status} $r->{json}{outcome} $r->{json}{state}", '200 handled pre_import_done',
	'applied: 200 with the state after');
is(events_of('ans/running'), 'pre_importing>pre_import_done:finish_pre_import', 'recorded as a notification');
$r = $receiver->notify('ans/running', 'pre_import_complete');
is("$r->{status} $r->{json}{state}", '200 pre_import_done', 'a duplicate (no change): 200 as well');
is(scalar(() = events_of('ans/running') =~ /pre_import_done>pre_import_done/), 1,
	'and recorded as a no-change event');

# The receiver's database sessions.
sub sessions
{
	return sql(q{SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity
		WHERE application_name = 'receiver_under_test'});
}
my $sessions = sessions();

my %refusals = (
	'ans/new import_complete'        => '409 refused 55000',
	'ans/missing import_complete'    => '404 unknown_repository P0002',
	'ans/running done_somehow'       => '400 invalid 22023',
	'ans//bad-path import_complete'  => '400 invalid 22023',);
for my $case (sort keys %refusals)
{
	my ($path, $status) = split / /, $case;
	$r = $receiver->notify($path, $status);
	my $logged = last_logged($path);
	is(join(' ', $r->{status}, $r->{json}{outcome}, $r->{json}{sqlstate}), $refusals{$case},
		"$case: $refusals{$case}");
	is("$logged->{status} $logged->{sqlstate} $logged->{attempts}", ($refusals{$case} =~ s/ \w+ / /r) . ' 1',
		"$case: logged with its SQLSTATE after one attempt (never retried)");
}
is(state_of('ans/new'), 'default', 'the refused notification changed nothing');
is(sessions(), $sessions, 'refusals keep the database session (the pool reuses it)');

my %malformed = (
	'not JSON'                  => [ 'ans/running', body => 'import_complete' ],
	'no status'                 => [ 'ans/running', body => '{"path": "ans/running"}' ],
	'a status that is a number' => [ 'ans/running', body => '{"status": 7}' ],
	'the body names another path' =>
	  [ 'ans/running', body => '{"path": "ans/new", "status": "import_complete"}' ],);
for my $case (sort keys %malformed)
{
	my ($path, %o) = @{ $malformed{$case} };
	$r = $receiver->notify($path, undef, %o);
	is("$r->{status} $r->{json}{outcome}", '400 invalid', "$case: 400");
}
is(state_of('ans/new') . ' ' . state_of('ans/running'), 'default pre_import_done',
	'malformed notifications changed nothing');

is($receiver->request('PUT', '/elsewhere/ans/running', content => '{}',
	headers => { Authorization => $secret })->{status}, 404, 'a URL outside /notify/ gets 404');
$r = $receiver->request('GET', '/notify/ans/running', headers => { Authorization => $secret });
is("$r->{status} $r->{headers}{allow}", '405 PUT', 'another method than PUT gets 405 naming PUT');
is($receiver->request('PUT', '/notify/ans/running', content => sub { return undef },
	headers => { Authorization => $secret })->{status}, 411, 'a chunked body (no Content-Length) gets 411');

# Any other database error is the deployment's to fix (here a missing grant):
# 500 at once, not retried.
sql('REVOKE EXECUTE ON FUNCTION registry_migration.handle_notification(text, text) FROM registry_notifications');
$r = $receiver->notify('ans/running', 'import_complete');
is("$r->{status} $r->{json}{outcome} $r->{json}{sqlstate}", '500 error 42501', 'a missing grant: 500 with 42501');
is(last_logged('ans/running')->{attempts}, 1, 'after one attempt');
sql('GRANT EXECUTE ON FUNCTION registry_migration.handle_notification(text, text) TO registry_notifications');

# A row lock held elsewhere: with a lock_timeout (set through --dsn) the call
# fails (55P03), and the receiver tries again until the lock is released.
my $locked = NotificationReceiver->new(node => $node, secret => $secret, user => 'registry_notifications',
	args => [ '--dsn', 'options=-clock_timeout=50ms', '--retry-seconds', 120 ]);
put_row('ans/locked', 'pre_importing', %pre_importing);
my $holder = $node->background_psql('postgres', timeout => 300);
$holder->query_safe(q{BEGIN; SELECT 1 FROM registry_migration.repositories WHERE path = 'ans/locked' FOR UPDATE});
my $waiting = $locked->notify_async('ans/locked', 'pre_import_complete');
ok(wait_until(sub { ($locked->health->{json}{retrying} // 0) == 1 }, 120),
	'a notification for a locked row waits (retrying, as /health shows)');
$holder->query_safe('COMMIT');
$holder->quit;
is($locked->answer_of($waiting), 200, 'and is handled once the lock is gone');
my ($logged) = grep { ($_->{repository} // '') eq 'ans/locked' } $locked->log_lines;
ok($logged->{attempts} > 1 && $logged->{outcome} eq 'handled' && ($logged->{retried_sqlstate} // '') eq '55P03',
	'after more than one attempt, logged with the SQLSTATE that made it retry')
  or diag(explain($logged));
is(state_of('ans/locked'), 'pre_import_done', 'the state changed');
$locked->stop;

# ---- /health ---------------------------------------------------------------------------
$r = $receiver->health;
is("$r->{status} $r->{json}{database}", '200 up', '/health: 200 while the database answers');
$node->stop('fast');
$r = $receiver->health;
is("$r->{status} $r->{json}{database}", '503 down', '/health: 503 while it is down');
$node->start;
$r = $receiver->health;
is("$r->{status} $r->{json}{database}", '200 up', '/health: 200 again once it is back');

# ---- the database goes away mid-stream --------------------------------------------------
put_row("flow/repo-$_", 'pre_importing', %pre_importing) for 1 .. 12;
is($receiver->notify("flow/repo-$_", 'pre_import_complete')->{status}, 200, "flow/repo-$_ before the outage")
  for 1 .. 3;
$node->stop('fast');
my %answers = map { $_ => $receiver->notify_async("flow/repo-$_", 'pre_import_complete') } 4 .. 12;
ok(wait_until(sub { ($receiver->health->{json}{retrying} // 0) == 9 }, 120),
	'nine notifications arrive while the database is down, and wait');
$node->start;
is_deeply([ map { $receiver->answer_of($answers{$_}) } 4 .. 12 ], [ (200) x 9 ],
	'all nine are answered 200 once it is back within the retry window');
is(sql(q{SELECT count(*) FROM registry_migration.repositories WHERE path LIKE 'flow/%'
	AND state = 'pre_import_done'}), 12, 'no notification was lost: all twelve repositories changed');
is(sql(q{SELECT count(*) FROM registry_migration.events WHERE path LIKE 'flow/%'
	AND old_state = 'pre_importing' AND new_state = 'pre_import_done'}), 12, 'each recorded once');
ok(!grep({ $_->{attempts} < 2 } map { last_logged("flow/repo-$_") } 4 .. 12),
	'the receiver logged the retries (attempts > 1 for each of the nine)');

# A database that stays away longer than the window: 503, nothing applied.
my $impatient = NotificationReceiver->new(node => $node, secret => $secret, user => 'registry_notifications',
	args => [ '--retry-seconds', '0.5' ]);
put_row('flow/too-late', 'pre_importing', %pre_importing);
$node->stop('fast');
$r = $impatient->notify('flow/too-late', 'pre_import_complete');
is("$r->{status} $r->{json}{outcome}", '503 database_unavailable',
	'a database down beyond --retry-seconds: 503');
$node->start;
is(state_of('flow/too-late'), 'pre_importing', 'and the notification was not applied later');
$logged = ($impatient->log_lines)[-1];
ok($logged->{attempts} > 1 && !defined $logged->{sqlstate}, 'logged as given up after more than one attempt');
$impatient->stop;

# ---- kept connections ------------------------------------------------------------------------
# The registry sends its notifications one after another on one connection.
put_row("kept/$_", 'pre_importing', %pre_importing) for 1 .. 3;
my $kept = NotificationReceiver->new(node => $node, secret => $secret, user => 'registry_notifications',
	args => [ '--idle-timeout', 600 ]);
my $connection = $kept->open_connection;
my @answers = map { [ $kept->notify_on($connection, "kept/$_", 'pre_import_complete') ] } 1, 2;
is(join(' ', map { $_->[0] } @answers), '200 200', 'two notifications on one connection: both answered 200');
ok(!grep({ ($_->[1]{connection} // '') =~ /close/i } @answers), 'and neither answer closes the connection');
is(join(' ', map { state_of("kept/$_") } 1, 2), 'pre_import_done pre_import_done', 'both were applied');
my ($code, $headers) = $kept->notify_on($connection, 'kept/3', 'pre_import_complete', secret => 'wrong');
is("$code " . lc($headers->{connection} // ''), '401 close',
	'a refused request whose body was not read: its answer closes the connection');
ok(NotificationReceiver::closed_within($connection, 30), 'and the receiver closes it');

# Where a request ends is never ambiguous on a kept connection: a second
# Content-Length, or one that is not plain digits, closes it.
put_row('kept/length', 'pre_importing', %pre_importing);
my $body = '{"status": "pre_import_complete"}';
for my $lengths ([ 0, length $body ], ['+' . length $body])
{
	$connection = $kept->open_connection;
	($code, $headers) = NotificationReceiver::request_on($connection,
		"PUT /notify/kept/length HTTP/1.1\r\nHost: x\r\nAuthorization: $secret\r\n"
		  . join('', map { "Content-Length: $_\r\n" } @$lengths) . "\r\n$body");
	is("$code " . lc($headers->{connection} // ''), '400 close',
		"Content-Length @$lengths: 400, and the connection closes");
}
is(state_of('kept/length'), 'pre_importing', 'and nothing was applied');
$connection = $kept->open_connection;
my $hidden = "GET /hidden HTTP/1.1\r\nHost: x\r\n\r\n";
($code, $headers) = NotificationReceiver::request_on($connection,
	"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: "
	  . length($hidden) . "\r\n\r\n$hidden");
is("$code " . lc($headers->{connection} // ''), '200 close', 'the same on a GET /health');
ok(NotificationReceiver::closed_within($connection, 30), 'which closes the connection');
ok(!grep({ ($_->{path} // '') eq '/hidden' } $kept->log_lines),
	'so the bytes after the shorter length never run as a request');

# A stop does not wait for a kept connection's next request (here 600 s away).
my $idle = $kept->open_connection;
($code) = $kept->notify_on($idle, 'kept/3', 'pre_import_complete');
is($code, 200, 'a connection that stays open after its notification');
is($kept->stop(60), 0, 'SIGTERM: the receiver exits without waiting for that connection');
ok(NotificationReceiver::closed_within($idle, 5), 'which it closed');

# Nor does a connection stay open forever: no next request within
# --idle-timeout closes it, quietly (it is no bad request).
my $brief = NotificationReceiver->new(node => $node, secret => $secret, user => 'registry_notifications',
	args => [ '--idle-timeout', 1 ]);
put_row('kept/quiet', 'pre_importing', %pre_importing);
$idle = $brief->open_connection;
($code) = $brief->notify_on($idle, 'kept/quiet', 'pre_import_complete');
is($code, 200, 'a connection with no next request');
ok(NotificationReceiver::closed_within($idle, 60), 'is closed after the idle timeout');
is(join(' ', map { $_->{outcome} } grep { $_->{method} || $_->{outcome} } $brief->log_lines), 'handled',
	'and logged as nothing but its one request');
$brief->stop;

# ---- a stop waits for the notification in progress ---------------------------------------
put_row('stop/waiting', 'pre_importing', %pre_importing);
$node->stop('fast');
$waiting = $receiver->notify_async('stop/waiting', 'pre_import_complete');
ok(wait_until(sub { ($receiver->health->{json}{retrying} // 0) == 1 }, 120),
	'a notification waits for the database');
kill 'TERM', $receiver->pid;
$node->start;
is($receiver->answer_of($waiting), 200, 'SIGTERM meanwhile: it is still handled and answered');
is($receiver->stop, 0, 'then the receiver exits cleanly');
is(state_of('stop/waiting'), 'pre_import_done', 'the notification was applied');
is(($receiver->log_lines)[-1]{event}, 'stopped', 'and the log ends with its stop');

# ---- the log ------------------------------------------------------------------------------
my @requests = grep { $_->{method} } $receiver->log_lines;
is(scalar(grep { !(defined $_->{time} && defined $_->{path} && defined $_->{status} && defined $_->{outcome}
	&& exists $_->{sqlstate} && defined $_->{duration_ms} && defined $_->{attempts}) } @requests), 0,
	'every request log line has time, path, status, outcome, sqlstate, duration_ms and attempts');
ok(index(slurp_file($receiver->log_file), $secret) < 0, 'the secret is never logged');

# ---- the systemd unit -----------------------------------------------------------------------
my $unit = "$root/scripts/systemd/registry-notification-receiver.service";
SKIP:
{
	skip 'systemd-analyze is not installed', 1 unless -x '/usr/bin/systemd-analyze';
	my ($ok, $stdout, $stderr) = run_command_status([ 'systemd-analyze', 'verify', $unit ]);
	ok($ok && $stderr eq '', 'systemd-analyze verify accepts the unit') or diag($stderr);
}
my $text = slurp_file($unit);
$text =~ s/\\\n\s*/ /g;
my ($python, $script, @unit_args) = split ' ', ($text =~ /^ExecStart=(.*)$/m)[0];
is("$python " . ($script =~ s{.*/}{}r), '/usr/bin/python3 notification_receiver.py',
	'the unit runs the receiver with /usr/bin/python3');
# Its options with the credential directory (%d) filled in, no extra options
# from the environment file, and any free port instead of the fixed one.
my $credentials = PostgreSQL::Test::Utils::tempdir();
@unit_args = map { s/%d/$credentials/gr } grep { $_ ne '$RECEIVER_OPTIONS' } @unit_args;
my %option = @unit_args;
is($option{'--secret-file'}, "$credentials/notification-secret", 'the secret is the credential systemd loads');
$option{'--port'} = 0;
open(my $fh, '>', $option{'--secret-file'}) or die $!;
print $fh "$secret\n";
close $fh;
chmod 0600, $option{'--secret-file'};
my $from_unit = NotificationReceiver->new(node => $node, secret => $secret, dir => $credentials,
	user => 'registry_notifications', secret_via => 'args', args => [ %option ]);
is($from_unit->health->{status}, 200, 'with the options of the unit the receiver starts and answers');
is($from_unit->notify('ans/running', 'pre_import_complete')->{status}, 200, 'and handles a notification');
$from_unit->stop;

end_test();

# run_command that does not die: (success, stdout, stderr).
sub run_command_status
{
	my ($cmd) = @_;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run($cmd, '<', '/dev/null', '>', \$stdout, '2>', \$stderr);
	return ($ok, $stdout, $stderr);
}
