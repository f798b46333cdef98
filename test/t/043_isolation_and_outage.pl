# Isolation: an error while handling one repository (a SQL error, an unusable
# answer) changes only that repository and the cycle goes on. An outage in
# the middle of a migration spends no retries, and the migration finishes
# once the registry is back.
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

my ($node, $sim) = start_enqueuer_test('isolation_and_outage');
my ($s, $log, $r, $before, $deadline);

fresh(max_tags_count => 5);
sql(q{CREATE FUNCTION public.fail_on_start() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.path IN ('iso/sql', 'iso/ab', 'iso/ab2', 'iso/fin') AND NEW.state IN ('pre_importing', 'importing') THEN
			RAISE EXCEPTION 'injected failure for %', NEW.path;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER fail_on_start BEFORE UPDATE ON registry_migration.repositories
		FOR EACH ROW EXECUTE FUNCTION public.fail_on_start();});
$sim->add_repositories({ path => 'iso/ab', status => 'pre_import_failed' },
	{ path => 'iso/ab2', status => 'pre_import_failed' }, { path => 'iso/fin', status => 'pre_import_complete' },
	map { { path => "iso/$_" } } qw(tags refused sql ok));
db_aborted('iso/ab', '1 hour');
db_aborted('iso/ab2', '50 min', retries_count => 2);
db_pre_import_done('iso/fin', '1 hour');
db_add('iso/tags', created_at => "now() - interval '4 min'");
db_add('iso/refused', created_at => "now() - interval '3 min'");
db_add('iso/sql', created_at => "now() - interval '2 min'");
db_add('iso/ok', created_at => "now() - interval '1 min'");
db_add('iso/bystander', state => "'importing'", import_started_at => "now() - interval '1 min'");
$before = repo('iso/ab');
$sim->set_faults(fault({ kind => 'tags', path => 'iso/tags' }, { type => 'malformed_json' }),
	fault({ kind => 'start', path => 'iso/refused' }, respond(400)));
($s, $log) = enqueue_logged();
is_deeply(paths_of($s->{errors}), [qw(iso/fin iso/ab iso/ab2 iso/tags iso/sql)], 'errors: the repositories whose handling failed');
like($s->{errors}[1]{message}, qr/injected failure for iso\/ab/, '... with the message of a SQL error');
like($s->{errors}[3]{message}, qr/tag list/, '... and of an unusable tag list');
is_deeply($s->{aborted}, [qw(iso/fin iso/ab iso/tags iso/refused iso/sql)], 'each of them, and the refused start, aborted');
is_deeply($s->{skipped}, [ { path => 'iso/ab2', reason => 'too_many_retries' } ], '... or skipped at the retry limit');
$r = repo('iso/fin');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted pre_import_done 1',
	'an error on a final import: aborted from pre_import_done');
$r = repo('iso/ab2');
is(join(' ', $r->{state}, $r->{skipped_reason}, $r->{retries_count}), 'import_skipped too_many_retries 3',
	'an aborted one whose retry fails at the limit: skipped too_many_retries');
is_deeply($s->{started}, ['iso/ok'], 'the cycle went on to the next repository');
is($s->{stopped}, 'nothing_to_do', '... to the end');
$r = repo('iso/tags');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted default 1',
	'unusable tag list: aborted from default');
$r = repo('iso/sql');
is(join(' ', $r->{state}, $r->{aborted_in_state}, $r->{retries_count}), 'import_aborted default 1',
	'SQL error: aborted, the failed start rolled back');
is(events_of('iso/sql'), 'default>import_aborted:abort', '... only the abort is recorded');
$r = repo('iso/ab');
is("$r->{state} $r->{retries_count}", 'import_aborted 2', 'an aborted one whose retry fails: retries_count + 1');
ok($r->{aborted_at} gt $before->{aborted_at}, '... and a new aborted_at');
is(join(' ', state_of('iso/ok'), state_of('iso/bystander')), 'pre_importing importing', 'the others are as expected');
is(events_of('iso/bystander'), '', '... and a bystander has no event');
like(slurp_file($node->logfile), qr/WARNING:  registry_migration enqueuer: error on repository "iso\/tags": unusable answer/,
	'the error is in the server log too');
sql(q{DROP TRIGGER fail_on_start ON registry_migration.repositories; DROP FUNCTION public.fail_on_start()});
$sim->clear_faults;
($s, $log) = enqueue_logged();
is_deeply($s->{retried}, [qw(iso/fin iso/ab iso/tags iso/refused iso/sql)],
	'the next cycle takes the aborted ones up again');
is(join(' ', map { state_of("iso/$_") } qw(fin ab sql)), 'importing pre_importing pre_importing',
	'... those the registry is already running are marked as such (no new request for them)');
is(scalar(grep { m{^PUT start iso/(fin|ab|sql) } } @$log), 0, '... no start request for those');

# ---- a registry outage in the middle of a migration ----------------------------

fresh(capacity => 3, max_step_duration => "'0.2 s'");
my @out = map { "out/r$_" } 1 .. 6;
$sim->add_repositories((map { { path => $_, pre_import_seconds => 0.3, import_seconds => 0.2 } } @out),
	{ path => 'out/ab', status => 'pre_import_failed', pre_import_seconds => 0.2, import_seconds => 0.2 });
db_add($out[$_], created_at => "now() - interval '" . (10 - $_) . " min'") for 0 .. $#out;
db_aborted('out/ab', '1 day');
($s) = enqueue_logged();
is_deeply([ @{ $s->{retried} }, @{ $s->{started} } ], [ 'out/ab', @out[ 0, 1 ] ], 'three in process');
settings(capacity => 4);    # one free slot: the enqueuer has something to ask for
$sim->set_faults(fault({}, respond(503)));
my $outage_start = sql('SELECT max(id) FROM registry_migration.events');
my %seen;
for (1 .. 4)
{
	sleep 0.3;
	my $e = enqueue();
	my $g = guard();
	$seen{"enqueuer $e->{stopped}"}++;
	$seen{"guard left alone " . scalar(@{ $g->{left_alone} }) . " of $g->{stale}"}++ if $g->{stale};
	$seen{'guard aborted'}++ if @{ $g->{aborted} } || @{ $g->{skipped} };
}
is_deeply([ sort keys %seen ], [ 'enqueuer registry_unavailable', 'guard left alone 3 of 3' ],
	'during the outage: the enqueuer stops after three failed answers in a row, the guard leaves every stale repository alone');
is(sql("SELECT count(*) FROM registry_migration.events WHERE id > $outage_start AND event <> 'start_unanswered'"),
	'0', '... nothing changed (the starts answered 503 are only recorded as unanswered)');
$sim->clear_faults;
$deadline = time() + 30;
my $cycles = 0;
while (time() < $deadline)
{
	enqueue();
	guard();
	$cycles++;
	last if sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state <> 'import_done'}) eq '0';
	sleep 0.1;
}
is(sql(q{SELECT string_agg(DISTINCT state::text, ',') FROM registry_migration.repositories}), 'import_done',
	"registry back: every repository finished ($cycles cycles)");
is(sql(q{SELECT string_agg(path || '=' || retries_count, ' ' ORDER BY path) FROM registry_migration.repositories}),
	join(' ', 'out/ab=1', map { "$_=0" } @out), 'the outage spent no retry');
is(sql(q{SELECT count(*) FROM registry_migration.events WHERE event IN ('abort', 'retry_failed', 'skip')}), '0',
	'... no abort and no skip at all');

end_test();
