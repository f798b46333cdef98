# The guard against concurrent sessions: a notification or a second guard
# while a guard waits on the registry, and the re-check under the row lock
# that keeps a repository from being changed twice.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IPC::Run;
use JSON::PP;
use MigrationTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my ($node, $sim) = start_guard_test('guard_concurrency');
my ($r, $g);

my $t = time();
sub start_psql
{
	my ($sql, $out, $err) = @_;
	return IPC::Run::start([ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		'-c', $sql ], '>', $out, '2>', $err);
}
sub logged { my ($line) = @_; return grep { $_ eq $line } requests() }

# A notification while the guard waits on a slow status answer (before it
# locks the row): the notification is not held up; the guard drops its
# change ("state changed"). A second guard meanwhile returns at once.
fresh();
sim_running('k/race', 'pre');
$sim->clear_requests;
put_row('k/race', 'pre_importing', pre_import_started_at => ago('1 hour'));
$sim->set_faults({ match => { kind => 'status', path => 'k/race' }, times => 1,
	action => { type => 'delay', ms => 1500 } });
my ($gout, $gerr) = ('', '');
my $h = start_psql('SELECT registry_migration.run_guard()', \$gout, \$gerr);
ok(wait_until(sub { logged('status k/race') }), 'race 1: the guard is waiting for the status answer');
my $t0 = time();
my $second = guard();
my $second_took = time() - $t0;
ok(defined $second->{ran} && !$second->{ran}, 'a second guard meanwhile: {"ran": false}');
is_deeply([ $second->{stale}, grep { ref $second->{$_} eq 'ARRAY' && @{ $second->{$_} } } sort keys %$second ],
	[0], '... stale 0, every list empty');
cmp_ok($second_took, '<', 1, sprintf('... at once (%.2f s)', $second_took));
$t0 = time();
$sim->finish_step('k/race', 'complete');
is(notify('k/race', 'pre_import_complete'), 'pre_import_done', '... the notification is handled meanwhile');
cmp_ok(time() - $t0, '<', 1, '... without waiting for the guard');
$h->finish;
$g = $json->decode($gout);
is_deeply([ $g->{errors}, $g->{aborted}, $g->{canceled} ], [ [ { path => 'k/race', message => 'state changed' } ], [], [] ],
	'... the guard drops its change: "state changed"');
is(left_alone_reasons($g), 'state_changed 1', '... counted under left_alone_reasons as state_changed');
is_deeply([ events('k/race') ], ['notification finish_pre_import pre_importing>pre_import_done - pre_import_complete'],
	'... one change, logged once, by the notification');
is(row('k/race')->{state}, 'pre_import_done', '... end state pre_import_done');

# A notification while the guard's cancel is slow: the guard has not
# locked the row (it locks only to apply an answer), so the notification
# is applied at once; the accepted cancel then finds the repository
# changed and the guard drops its abort.
fresh();
sim_running('k/lock', 'pre');
$sim->clear_requests;
put_row('k/lock', 'pre_importing', pre_import_started_at => ago('1 hour'));
$sim->set_faults({ match => { kind => 'cancel', path => 'k/lock' }, times => 1,
	action => { type => 'delay', ms => 1500 } });
($gout, $gerr) = ('', '');
$h = start_psql('SELECT registry_migration.run_guard()', \$gout, \$gerr);
ok(wait_until(sub { logged('cancel k/lock') }), 'race 2: the guard is waiting for the cancel answer');
is(sql(q{SET lock_timeout = '1s'; SELECT registry_migration.handle_notification('k/lock', 'pre_import_failed')}),
	'import_aborted', '... the notification does not wait on the guard: it aborts the repository at once');
$h->finish;
$g = $json->decode($gout);
is_deeply([ $g->{canceled}, $g->{aborted}, $g->{errors} ],
	[ ['k/lock'], [], [ { path => 'k/lock', message => 'state changed' } ] ],
	q{... the guard's cancel was accepted, but its abort is dropped: "state changed"});
is(left_alone_reasons($g), 'state_changed 1', '... counted under left_alone_reasons as state_changed');
$r = row('k/lock');
is("$r->{state} $r->{retries_count}", 'import_aborted 1', '... end state import_aborted, one retry spent (not two)');
is_deeply([ events('k/lock') ], [ 'notification abort pre_importing>import_aborted - pre_import_failed' ],
	'... one change, logged once, by the notification');
section_time('concurrency', $t);

# A race is routine: the dropped change is a LOG line, never an ERROR.
my $log = slurp_file($node->logfile);
like($log, qr/LOG:  registry_migration guard: repository "k\/lock" changed while the registry was being asked; left for the next cycle/,
	'the dropped change is in the server log at LOG');
unlike($log, qr/ERROR:/, '... and neither race put an ERROR there');

end_test();
