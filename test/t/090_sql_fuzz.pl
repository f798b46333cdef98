# SQL fuzz test with a fixed seed.
#
# Thousands of calls of EVERY function of schema registry_migration (read
# from pg_proc at run time, so a new function is covered automatically; the
# trigger functions are called directly too), of every view, SETs of every
# registry_migration.* parameter, and hostile INSERT/UPDATE/DELETE/TRUNCATE
# on settings, registry_state, repositories, events and denied_namespaces.
# Arguments: NULLs, empty and 1 MB strings, malformed paths ("..", "a//b",
# "%2e%2e", 3000 slashes, unicode, control characters, upper case), every
# enum label, boundary numbers. The registry is the project's simulator (some
# repositories known to it) in most rounds, a closed port or no URL at all in
# the others.
#
# The run is a list of ROUNDS (SqlFuzz::Plan): each starts from a baseline
# (session settings, sane settings row, a set of repositories in every state,
# a reset simulator) and then runs its operations; failures are attributed to
# the hostile values the round stored before them. Directed rounds come
# first and guarantee coverage; random rounds (fixed seed, own generator)
# follow until the target number of calls. Everything runs in one psql
# session (SqlFuzz::Runner).
#
# Assertions (each failure is listed, grouped by cause, in the diag output;
# SqlFuzz::Expectations holds the rules):
#   internal         no call or statement ends in class XX or 58
#   session          the session is never lost; no crash, no restart
#   timeout          no call runs into statement_timeout (15 s)
#   path_grammar     a non-NULL path outside the path grammar gives 22023
#                    in every function that takes a path
#   null_arg         a NULL argument of a non-STRICT path function gives
#                    22004; a STRICT one returns NULL
#   trigger_direct   a trigger function called directly gives 0A000
#   privilege        a role without grants gets 42501
#   stored_value     a value the tables accepted never makes a later call
#                    fail with class 22 (other than 22004/22023 explained by
#                    the arguments) or 23, nor shows up as such an error in
#                    a cycle summary
#   singleton        DELETE/TRUNCATE of settings and registry_state are
#                    refused with 55000
#   result           results are valid (retry_decision follows its decision
#                    table; states are labels; cycles return their summary)
#   sql_error        no class-42 error from a well-formed call
#   setup            the test's own baseline statements succeed
# and at the end: the postmaster was never restarted, no backend was
# terminated by a signal, settings and registry_state hold exactly one row,
# every CHECK constraint of the schema holds for every row.
#
# Reproduce: RM_FUZZ_SEED=<seed> (printed at the start); RM_FUZZ_CALLS sets
# the target number of function calls (default 7000).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use SqlFuzz::Expectations;
use SqlFuzz::Generator;
use SqlFuzz::Plan;
use SqlFuzz::Random;
use SqlFuzz::Report;
use SqlFuzz::Runner;
use SqlFuzz::Surface;
use SqlFuzz::Values;
use Test::More;
use Time::HiRes qw(time);

my $t_start = time();
my $SEED = $ENV{RM_FUZZ_SEED} // 20240917;
my $TARGET_CALLS = $ENV{RM_FUZZ_CALLS} // 7000;
die "RM_FUZZ_SEED must be a positive integer\n" unless $SEED =~ /^\d+$/ && $SEED > 0;
srand($SEED);    # nothing below uses rand(); the generator is our own
seed_rng($SEED);
diag("SQL fuzz: seed $SEED, target $TARGET_CALLS function calls (RM_FUZZ_SEED=$SEED reproduces)");

# ---- the registry simulator, a closed port, the cluster --------------------------

my $sim = RegistrySimulator->new(pre_import_seconds => 0.05, import_seconds => 0.05,
	max_imports => 6, cancel_cooldown => 0.5);
my $closed_port = do {
	my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp') or die "socket: $!";
	my $p = $s->sockport;
	close $s;
	$p;
};
set_registry_urls($sim->url, $closed_port);

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf('postgresql.conf', join("\n",
	"shared_preload_libraries = 'registry_migration'",
	# The worker serves a database without the extension: it idles, so it
	# changes nothing behind the fuzzer's back but worker_status still works.
	"registry_migration.database = 'postgres'",
	"registry_migration.connect_timeout = '300ms'",
	"registry_migration.request_timeout = '3s'",
	"registry_migration.log_level = 'debug1'",
	# A crash must not end the run: the server comes back, the session is
	# restarted, and the crash is reported (session rule, server log).
	"restart_after_crash = on",
	"log_min_error_statement = panic", ''));
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE fuzz');
$node->safe_psql('fuzz', 'CREATE EXTENSION registry_migration; CREATE ROLE fuzz_nobody NOLOGIN;');
my $postmaster_start = $node->safe_psql('fuzz', 'SELECT pg_postmaster_start_time()');

# ---- the SQL surface, read at run time -----------------------------------------

load_surface($node);
ok(exists $FN{$_}, "function registry_migration.$_ exists") for @EXPECTED_FUNCTIONS;
ok((grep { $_->{trigger} } @$FUNCTIONS) >= 1, 'trigger functions are enumerated');
ok(@STATES == 7 && @REASONS == 9, 'both enums are enumerated');
note('functions: ' . join(', ', map { $_->{name} } @$FUNCTIONS));

# ---- generating and running the statements -------------------------------------

my $directed_calls = plan_rounds($TARGET_CALLS);
my @all_ops = map { @{ $_->{ops} } } @rounds;
diag(sprintf('%d rounds, %d statements, %d function calls (%d directed), generated in %.1f s',
	scalar @rounds, scalar @all_ops, $total_calls, $directed_calls, time() - $t_start));

my %run = run_rounds($node, $sim, \@rounds, \@SIM_REPOS);
diag(sprintf('ran %d statements in %.1f s (%d psql session(s))', scalar @all_ops, $run{seconds},
	$run{session_starts}));

# ---- the outcomes ----------------------------------------------------------------

my @failures = judge_outcomes(\@rounds);

my ($table, $calls_of) = sqlstate_table(\@all_ops);
diag("SQLSTATEs per function (seed $SEED):\n$table");
for my $f (@$FUNCTIONS)
{
	cmp_ok($calls_of->{ $f->{name} } // 0, '>=', 20, "registry_migration.$f->{name} was called at least 20 times");
}

for my $rule (sort keys %RULES)
{
	my @mine = grep { $_->{rule} eq $rule } @failures;
	is(scalar @mine, 0, "$rule: $RULES{$rule}")
	  or diag("$rule: " . scalar(@mine) . " failure(s), grouped by cause:\n" . failure_report($rule, @mine));
}

diag(session_loss_text($_)) for @{ $run{session_losses} };
is(scalar @{ $run{session_losses} }, 0, 'the psql session was never lost');

# ---- the server and the tables afterwards ----------------------------------------

is($node->safe_psql('fuzz', 'SELECT pg_postmaster_start_time()'), $postmaster_start,
	'the postmaster was never restarted');
my $log = slurp_file($node->logfile);
my @crash_lines = grep { /terminated by signal|server process .* was terminated|terminating any other active server processes|PANIC|TRAP:/ }
  split /\n/, $log;
is(scalar @crash_lines, 0, 'no backend was terminated by a signal') or diag(join("\n", @crash_lines[ 0 .. ($#crash_lines < 9 ? $#crash_lines : 9) ]));

is($node->safe_psql('fuzz', 'SELECT count(*) FROM registry_migration.settings'), '1',
	'registry_migration.settings has exactly one row');
is($node->safe_psql('fuzz', 'SELECT count(*) FROM registry_migration.registry_state'), '1',
	'registry_migration.registry_state has exactly one row');
my $checks = catalog_json($node, q{
	SELECT coalesce(json_agg(json_build_object('rel', conrelid::regclass::text, 'name', conname,
		'def', pg_get_constraintdef(oid)) ORDER BY conrelid, conname), '[]')
	  FROM pg_constraint WHERE connamespace = 'registry_migration'::regnamespace AND contype = 'c'});
my @broken;
for my $c (@$checks)
{
	(my $expr = $c->{def}) =~ s/^CHECK \((.*)\)( NOT VALID)?$/$1/s;
	my $n = $node->safe_psql('fuzz', "SELECT count(*) FROM $c->{rel} WHERE NOT ($expr)");
	push @broken, "$c->{rel}.$c->{name}: $n rows" if $n ne '0';
}
ok(@$checks > 0, 'CHECK constraints found');
is(scalar @broken, 0, 'every CHECK constraint of the schema holds for every row') or diag(join("\n", @broken));

$node->stop;
$sim->stop;
my %round_seconds = %{ $run{round_seconds} };
diag(sprintf('total %.1f s (running the statements: %.1f s); slowest rounds: %s', time() - $t_start, $run{seconds},
	join(', ', map { sprintf('%d %.1fs', $_, $round_seconds{$_}) }
	  (sort { $round_seconds{$b} <=> $round_seconds{$a} } keys %round_seconds)[0 .. 4])));
done_testing();
