# The guard against concurrent sessions: a notification or a second guard
# while a guard waits on the registry, and row locks that keep a repository
# from being changed twice.
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
is_deeply([ events('k/race') ], ['notification finish_pre_import pre_importing>pre_import_done - pre_import_complete'],
	'... one change, logged once, by the notification');
is(row('k/race')->{state}, 'pre_import_done', '... end state pre_import_done');

# A notification while the guard holds the row (its cancel is slow): the
# notification waits for the guard's commit, then finds the abort done.
fresh();
sim_running('k/lock', 'pre');
$sim->clear_requests;
put_row('k/lock', 'pre_importing', pre_import_started_at => ago('1 hour'));
$sim->set_faults({ match => { kind => 'cancel', path => 'k/lock' }, times => 1,
	action => { type => 'delay', ms => 1500 } });
($gout, $gerr) = ('', '');
$h = start_psql('SELECT registry_migration.run_guard()', \$gout, \$gerr);
ok(wait_until(sub { logged('cancel k/lock') }), 'race 2: the guard is waiting for the cancel answer');
my ($nout, $nerr) = ('', '');
my $n = start_psql(q{SELECT registry_migration.handle_notification('k/lock', 'pre_import_failed')}, \$nout, \$nerr);
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
	WHERE query LIKE '%handle_notification(''k/lock''%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()}),
	'... the notification waits on the row lock');
$h->finish;
$n->finish;
$g = $json->decode($gout);
is_deeply([ $g->{canceled}, $g->{aborted} ], [ ['k/lock'], ['k/lock'] ], '... the guard canceled and aborted it');
is($nout =~ s/\s+$//r, 'import_aborted', '... the notification then found it aborted: no change, returns import_aborted');
$r = row('k/lock');
is("$r->{state} $r->{retries_count}", 'import_aborted 1', '... end state import_aborted, one retry spent (not two)');
is_deeply([ events('k/lock') ], [ 'guard abort pre_importing>import_aborted 202 -',
	'notification notification import_aborted>import_aborted - pre_import_failed' ],
	'... each change logged once, in order');
section_time('concurrency', $t);

end_test();
