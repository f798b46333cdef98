# One flaky answer does not stop the migration: a repository the registry
# gives no usable answer about is passed over (unchanged, listed under
# "unavailable") and the cycle goes on; it stops only when the registry is
# down (no connection at all) or after three repositories in a row were
# passed over for a failed answer, counted across the final imports and the
# new work. A 429 "repository not ready" (the registry's cool-down after a
# canceled pre-import) concerns that repository alone: listed under
# "not_ready", it counts as one of its 429s in a row, its Retry-After is
# ignored, and the cycle goes on. Any other 429 is still registry-wide.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use JSON::PP;
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_enqueuer_test('enqueuer_goodput');
my ($s, $log, $r);

my $not_ready_body = $json->encode({ errors => [ { code => 'IMPORT_REPOSITORY_NOT_READY',
	message => 'failed to begin (pre)import', detail => 'a canceled pre import is winding down' } ] });
my $rate_limit_body = $json->encode({ errors => [ { code => 'IMPORT_RATE_LIMIT',
	message => 'failed to begin (pre)import', detail => undef } ] });
sub not_ready { return respond(429, body => $not_ready_body, @_) }

# New repositories g/<name>, created in the order given, each known to the simulator.
sub new_repositories
{
	my @names = @_;
	$sim->add_repositories(map { { path => "g/$_" } } @names);
	db_add("g/$names[$_]", created_at => "now() - interval '" . (100 - $_) . " min'") for 0 .. $#names;
}

sub consecutive_429s { return sql("SELECT consecutive_429s FROM registry_migration.repositories WHERE path = '$_[0]'") }
sub retry_after_set { return sql('SELECT retry_after_until IS NOT NULL FROM registry_migration.registry_state') }
sub starts_in { return [ map { m{^PUT start (\S+)} ? $1 : () } @{ $_[0] } ] }

# ---- one failed answer -------------------------------------------------------------

for my $answer (respond(500), respond(503), respond(401), { type => 'drop' },
	{ type => 'hang', seconds => 10 })
{
	my $what = $answer->{code} // $answer->{type};
	fresh();
	new_repositories(qw(a b c));
	$sim->set_faults(fault({ kind => 'start', path => 'g/a' }, $answer));
	($s, $log) = enqueue_logged($what eq 'hang' ? "SET registry_migration.request_timeout = '300ms';" : '');
	is_deeply([ $s->{stopped}, $s->{started}, $s->{unavailable} ], [ 'nothing_to_do', [ 'g/b', 'g/c' ], ['g/a'] ],
		"start answered $what: passed over, listed unavailable, the cycle starts the others")
	  or diag explain $s;
	$r = repo('g/a');
	# A start that may have got through is recorded (no state change); a 401 declined it.
	is("$r->{state} $r->{retries_count} " . events_of('g/a'),
		'default 0 ' . ($what eq '401' ? '' : 'default>default:start_unanswered'),
		"$what: the repository is unchanged, " . ($what eq '401' ? 'no event' : 'the lost start recorded'));
}

# The next cycle takes it up again.
$sim->clear_faults;
($s) = enqueue_logged();
is_deeply($s->{started}, ['g/a'], 'the next cycle starts the repository passed over');

# ---- three failed answers in a row ----------------------------------------------------

fresh();
new_repositories(qw(a b c d));
$sim->set_faults(fault({ kind => 'start' }, respond(500)));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{unavailable}, starts_in($log) ],
	[ 'registry_unavailable', [qw(g/a g/b g/c)], [qw(g/a g/b g/c)] ],
	'three failed answers in a row: the cycle stops, the fourth is not asked for');
is(sql(q{SELECT string_agg(DISTINCT format('%s>%s:%s', old_state, new_state, event), ' ') || ' ' || count(*)
	FROM registry_migration.events}), 'default>default:start_unanswered 3',
	'... nothing changed: only the three starts whose answer was lost are recorded');

# Failed, usable, failed, failed: the usable answer ends the run.
for my $usable ([ 'a 202', undef ], [ 'a 429 not ready', not_ready() ], [ 'a 404', respond(404) ])
{
	my ($what, $answer) = @$usable;
	fresh();
	new_repositories(qw(a b c d e));
	$sim->set_faults(map { fault({ kind => 'start', path => "g/$_" }, respond(502)) } qw(a c d));
	$sim->add_faults(fault({ kind => 'start', path => 'g/b' }, $answer)) if $answer;
	($s, $log) = enqueue_logged();
	is_deeply([ $s->{stopped}, $s->{unavailable}, starts_in($log) ],
		[ 'nothing_to_do', [qw(g/a g/c g/d)], [qw(g/a g/b g/c g/d g/e)] ],
		"failed, $what, failed, failed: no stop, every repository asked for")
	  or diag explain $s;
}

# A tag list and a status request count like a start.
fresh(max_tags_count => 5);
new_repositories(qw(a b c d));
$sim->set_faults(fault({ kind => 'tags' }, respond(500)));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{unavailable}, starts_in($log) ],
	[ 'registry_unavailable', [qw(g/a g/b g/c)], [] ],
	'three failed tag lists in a row: the cycle stops');

fresh();
$sim->add_repositories({ path => 'ab/x', status => 'pre_import_failed' });
db_aborted('ab/x', '1 hour');
my $aborted_before = repo('ab/x');
new_repositories(qw(a b c));
$sim->set_faults(fault({ kind => 'status' }, respond(500)), fault({ kind => 'start' }, respond(500)));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{unavailable} ], [ 'registry_unavailable', [qw(ab/x g/a g/b)] ],
	'a failed status request of an aborted repository counts: it and two failed starts stop the cycle');
$r = repo('ab/x');
is(join(' ', $r->{state}, $r->{retries_count}, $r->{aborted_at}), "import_aborted 1 $aborted_before->{aborted_at}",
	'... the aborted repository keeps its retries and its aborted_at');
ok(!grep({ m{g/c} } @$log), '... the next one is not asked for');

# Final imports and new work share the count.
fresh();
$sim->add_repositories(map { { path => "fin/$_", status => 'pre_import_complete' } } qw(a b));
db_pre_import_done('fin/a', '2 hours');
db_pre_import_done('fin/b', '1 hour');
new_repositories(qw(a b));
$sim->set_faults(fault({ kind => 'start' }, respond(500)));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{unavailable}, starts_in($log) ],
	[ 'registry_unavailable', [qw(fin/a fin/b g/a)], [qw(fin/a fin/b g/a)] ],
	'two failed final imports and one failed start: the cycle stops');
is(join(' ', state_of('fin/a'), state_of('fin/b')), 'pre_import_done pre_import_done', '... the final imports wait');

# ... and a usable final import ends the run too.
fresh();
$sim->add_repositories({ path => 'fin/a', status => 'pre_import_complete' }, { path => 'fin/b', status => 'pre_import_complete' });
db_pre_import_done('fin/a', '2 hours');
db_pre_import_done('fin/b', '1 hour');
new_repositories(qw(a b c));
$sim->set_faults(fault({ kind => 'start', path => 'fin/a' }, respond(500)),
	map { fault({ kind => 'start', path => "g/$_" }, respond(500)) } qw(a b));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{final_imports}, $s->{unavailable}, $s->{started} ],
	[ 'nothing_to_do', ['fin/b'], [qw(fin/a g/a g/b)], ['g/c'] ],
	'failed, usable (final import), failed, failed: no stop');

# ---- the registry down ------------------------------------------------------------------

fresh();
new_repositories(qw(a b c));
$sim->down(30);
my $t0 = time();
$s = enqueue();
is_deeply([ $s->{stopped}, $s->{unavailable} ], [ 'registry_unavailable', ['g/a'] ],
	'the registry refuses connections: the cycle stops at once, after the first repository');
cmp_ok(time() - $t0, '<', 3, '... without waiting');
is(event_count(), '0', '... nothing changed');
$sim->reset;
$sim->add_repositories(map { { path => "g/$_" } } qw(a b c));
($s, $log) = enqueue_logged();
is_deeply($s->{started}, [qw(g/a g/b g/c)], 'the registry back: the next cycle starts them') or diag explain [$s, $log];

fresh();
new_repositories(qw(a b));
$s = enqueue(q{SET registry_migration.registry_url = 'http://127.0.0.1:1';});
is_deeply([ $s->{stopped}, $s->{unavailable} ], [ 'registry_unavailable', ['g/a'] ],
	'nothing listens on the registry port: the cycle stops at once');

fresh();
new_repositories(qw(a b));
$s = enqueue(q{SET registry_migration.registry_url = 'http://registry.invalid';});
is_deeply([ $s->{stopped}, $s->{unavailable} ], [ 'registry_unavailable', ['g/a'] ],
	'the registry name does not resolve: the cycle stops at once');

# A connection made, then a timeout: a failed answer, not the registry down.
fresh();
new_repositories(qw(a b));
$sim->set_faults(fault({ kind => 'start', path => 'g/a' }, { type => 'hang', seconds => 10 }));
$s = enqueue(q{SET registry_migration.request_timeout = '300ms';});
is_deeply([ $s->{stopped}, $s->{unavailable}, $s->{started} ], [ 'nothing_to_do', ['g/a'], ['g/b'] ],
	'a request timeout after connecting: a failed answer, the cycle goes on');

# The same on a connection kept from the request before, as the worker's
# requests mostly are: a failed answer, and the lost start is recorded.
fresh();
new_repositories(qw(a b c));
$sim->set_faults(fault({ kind => 'start', path => 'g/b' }, { type => 'hang', seconds => 10 }));
$s = enqueue(q{SET registry_migration.request_timeout = '300ms';});
is_deeply([ $s->{stopped}, $s->{unavailable}, $s->{started} ], [ 'nothing_to_do', ['g/b'], [ 'g/a', 'g/c' ] ],
	'a request timeout on a kept connection: a failed answer, not the registry down');
is(events_of('g/b'), 'default>default:start_unanswered', '... the start that may have got through is recorded');
like(sql(q{SELECT detail FROM registry_migration.events WHERE path = 'g/b'}), qr/while waiting for the answer/,
	'... and its detail says the request timed out waiting for the answer, not connecting');

# ---- 429 "repository not ready" ------------------------------------------------------------

fresh(start_max_retries => 2);
new_repositories(qw(a b c));
$sim->set_faults(fault({ kind => 'start', path => 'g/a' }, not_ready(headers => { 'Retry-After' => '600' })));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{not_ready}, $s->{started}, $s->{unavailable} ],
	[ 'nothing_to_do', ['g/a'], [qw(g/b g/c)], [] ],
	'429 IMPORT_REPOSITORY_NOT_READY: listed not_ready, the cycle starts the others');
is(join(' ', state_of('g/a'), consecutive_429s('g/a'), events_of('g/a')), 'default 1 ',
	'... the repository is unchanged but for its count of 429s in a row');
is(retry_after_set(), 'f', '... its Retry-After is not recorded (not registry-wide)');
is(scalar(grep { m{g/a} } @$log), 1, '... and it is asked once in the cycle');

# A failed answer does not reset the count; a usable one does.
$sim->set_faults(fault({ kind => 'start', path => 'g/a' }, respond(500)));
($s) = enqueue_logged();
is_deeply([ $s->{unavailable}, consecutive_429s('g/a') ], [ ['g/a'], 1 ],
	'a failed answer leaves the count of 429s in a row as it was');
$sim->set_faults(fault({ kind => 'start', path => 'g/a' }, not_ready()));
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, consecutive_429s('g/a') ], [ ['g/a'], 2 ], 'a second NOT_READY: 2 in a row');

# The (start_max_retries + 1)-th: aborted, listed aborted, the cycle goes on.
new_repositories(qw(d));
($s) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{aborted}, $s->{not_ready}, $s->{started} ],
	[ 'nothing_to_do', ['g/a'], [], ['g/d'] ],
	'the (start_max_retries + 1)-th NOT_READY aborts it, listed aborted; the cycle goes on');
$r = repo('g/a');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}, consecutive_429s('g/a')),
	'import_aborted pre_importing 1 0', '... start event then abort; the count starts over');

# The registry's own cool-down after a canceled pre-import.
fresh();
$sim->configure(cancel_cooldown => 30);
sim_running('cool/a', 'pre');
my $cancel = HTTP::Tiny->new(timeout => 10)->request('DELETE', $sim->url . '/gitlab/v1/import/cool/a/');
is($cancel->{status}, 202, 'a pre-import canceled on the registry');
db_aborted('cool/a', '1 hour');
new_repositories(qw(a));
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{not_ready}, $s->{retried}, $s->{started} ],
	[ 'nothing_to_do', ['cool/a'], [], ['g/a'] ],
	'a retry during the cool-down: not_ready, and new work is started');
is(retry_after_set(), 'f', '... no Retry-After');

# Answered "not ready", an aborted repository is left alone for 5 s per 429
# in a row, counted from its abort (the registry's cool-down is about 5 s
# from the cancel, which precedes the abort): no request about it meanwhile,
# and a cool-down that lasts longer is asked about once per 5 s, up to 10 s
# after the abort; from then on at every cycle, as the oldest aborted
# repository is retried first.
fresh();
$sim->configure(cancel_cooldown => 30);
sim_running('cool/b', 'pre');
$cancel = HTTP::Tiny->new(timeout => 10)->request('DELETE', $sim->url . '/gitlab/v1/import/cool/b/');
is($cancel->{status}, 202, 'a pre-import canceled on the registry a moment ago');
db_aborted('cool/b', '1 second');
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, consecutive_429s('cool/b') ], [ ['cool/b'], 1 ], '... its retry: not ready');
($s, $log) = enqueue_logged();
is_deeply([ $s->{stopped}, $s->{not_ready}, [ grep { m{cool/b} } @$log ] ], [ 'nothing_to_do', [], [] ],
	'... the next cycle, within 5 s of the abort, sends nothing about it');
sub aborted_ago { sql("UPDATE registry_migration.repositories SET aborted_at = now() - interval '$_[0]' WHERE path = 'cool/b'") }
aborted_ago('4.5 s');
($s, $log) = enqueue_logged();
is_deeply([ $s->{not_ready}, [ grep { m{cool/b} } @$log ] ], [ [], [] ], '... nor 4.5 s after it');
aborted_ago('5.5 s');
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, consecutive_429s('cool/b') ], [ ['cool/b'], 2 ],
	'... 5 s after the abort it is asked again: still not ready, two 429s in a row');
aborted_ago('9.5 s');
($s, $log) = enqueue_logged();
is_deeply([ $s->{not_ready}, [ grep { m{cool/b} } @$log ] ], [ [], [] ],
	'... then left alone until 10 s after the abort');
aborted_ago('10.5 s');
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, consecutive_429s('cool/b') ], [ ['cool/b'], 3 ], '... and asked again after that');
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, consecutive_429s('cool/b') ], [ ['cool/b'], 4 ],
	'... and then at every cycle: held back no longer than 10 s after its abort');
$sim->configure(cancel_cooldown => 0);
aborted_ago('15.5 s');
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, $s->{retried}, consecutive_429s('cool/b') ], [ [], ['cool/b'], 0 ],
	'... 15 s after it, the cool-down over: retried, and the count of 429s starts again');

# Whatever count of 429s a direct change of the table wrote, the hold ends
# 10 s after the abort.
fresh(start_max_retries => 2147483647);
$sim->configure(cancel_cooldown => 600);
sim_running('cool/b', 'pre');
$cancel = HTTP::Tiny->new(timeout => 10)->request('DELETE', $sim->url . '/gitlab/v1/import/cool/b/');
db_aborted('cool/b', '9 seconds');
sql(q{UPDATE registry_migration.repositories SET consecutive_429s = 2147483000 WHERE path = 'cool/b'});
($s, $log) = enqueue_logged();
is_deeply([ $s->{not_ready}, [ grep { m{cool/b} } @$log ] ], [ [], [] ],
	'a count of 429s written directly: left alone 9 s after the abort');
aborted_ago('10.5 s');
($s) = enqueue_logged();
is_deeply([ $s->{not_ready}, consecutive_429s('cool/b') ], [ ['cool/b'], 2147483001 ],
	'... asked again 10 s after it');

# retry() of a repository that is not ready: a warning, nothing changes but its count.
fresh();
$sim->add_repositories({ path => 'adm/a', status => 'pre_import_failed' });
db_aborted('adm/a', '1 hour');
$sim->set_faults(fault({ kind => 'start', path => 'adm/a' }, not_ready()));
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT registry_migration.retry('adm/a')});
is($out, 'import_aborted', 'retry() answered NOT_READY: the repository stays import_aborted');
like($err, qr/WARNING:  the registry is not ready to import repository "adm\/a" yet/, '... with a warning');
is(join(' ', consecutive_429s('adm/a'), repo('adm/a')->{retries_count}, retry_after_set()), '1 1 f',
	'... one more 429 in a row, no retry spent, no Retry-After');

# ---- any other 429 is registry-wide -------------------------------------------------------

for my $case ([ 'IMPORT_RATE_LIMIT', $rate_limit_body ], [ 'no code', '{"errors":[{"message":"busy"}]}' ],
	[ 'a body that is not JSON', 'too many imports' ])
{
	my ($what, $body) = @$case;
	fresh();
	new_repositories(qw(a b));
	$sim->set_faults(fault({ kind => 'start' }, respond(429, body => $body, headers => { 'Retry-After' => '60' })));
	($s, $log) = enqueue_logged();
	is_deeply([ $s->{stopped}, $s->{not_ready}, starts_in($log), consecutive_429s('g/a') ],
		[ 'too_many_imports', [], ['g/a'], 1 ], "429 with $what: the cycle stops, too_many_imports");
	is(retry_after_set(), 't', "... its Retry-After is recorded");
}

end_test();
