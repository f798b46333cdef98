# The README, followed as a newcomer follows it: every block it marks
# "tested by: test/t/009_readme.pl" is taken from the README and run as
# written, with only the example's host names, ports and file paths
# replaced by this test's. The registry is the simulator serving HTTPS with
# a private CA, asking for a client certificate, and checking the tokens
# against the certificate the README's openssl commands make. The worker
# runs as the README's role and migrates the CSV loaded as the README says;
# the README's receiver delivers the notifications; then the Watch,
# Intervene and Troubleshoot statements run and do what they say.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use HTTP::Tiny;
use IPC::Run;
use NotificationReceiver;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Readme;
use RegistrySimulator;
use Test::More;
use ThrowawayCA;
use Time::HiRes qw(sleep time);

my $dir = PostgreSQL::Test::Utils::tempdir();
my $total = 40;
my $path = 'group/project/image';    # the README's example repository

sub block
{
	my ($section, $lang, $start) = @_;
	my @found = grep { $_->{tested_by} && $_->{tested_by} eq 'test/t/009_readme.pl'
		  && $_->{text} =~ /^\Q$start\E/ } Readme::blocks(section => $section, lang => $lang);
	is(scalar(@found), 1, "the README's $section section has the block that starts with $start")
	  or BAIL_OUT('the README changed: adapt this test');
	return $found[0]->{text};
}

# The README's example paths, here.
sub local_paths { return $_[0] =~ s{/etc/postgresql/}{$dir/}gr }

# ---- Configure: the token key, made by the README's commands ------------------------
my $user = getpwuid($<);
my $keygen = local_paths(block('Configure', 'sh', 'openssl genpkey')) =~ s/chown postgres:/chown $user:/r;
my ($out, $err) = ('', '');
ok(IPC::Run::run([ 'bash', '-e', '-c', $keygen ], '<', '/dev/null', '>', \$out, '2>', \$err,
		init => sub { chdir $dir }), "the README's key commands run") or diag($err);
ok(-s "$dir/registry_migration.crt", 'they made the certificate the registry trusts');

# ---- the registry's side, as its config.yml in the README has it -----------------------
my $yaml = block('Configure', 'yaml', 'http:');
my %registry = map { $_ => ($yaml =~ /^\s*$_: (\S+)/m)[0] } qw(service issuer url secret);
is(scalar(grep { defined } values %registry), 4, 'the config.yml names service, issuer, url and secret');
my ($notify_path) = $registry{url} =~ m{^https?://[^/]+(/.*)/\{path\}$};
ok(defined $notify_path, "the notification URL ends in /{path}: $registry{url}");

my $ca = ThrowawayCA->new($dir);
my $sim = RegistrySimulator->new(tls_cert => $ca->file('server.crt'), tls_key => $ca->file('server.key'),
	tls_client_ca => $ca->file('ca.crt'), jwt_public_key => "$dir/registry_migration.crt",
	jwt_issuer => $registry{issuer}, jwt_audience => $registry{service},
	pre_import_seconds => 0.3, import_seconds => 0.2, auto_create => 1, cancel_cooldown => 0);
$sim->add_repositories({ path => $path, pre_import_outcomes => [ 'hang', 'hang', 'hang' ] });

# ---- Install and Run: postgresql.conf -------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('readme');
$node->init;
my $conf = local_paths(block('Install', '', 'shared_preload_libraries'))
  =~ s{registry_url = '[^']*'}{registry_url = '${\ $sim->url }'}r;
$node->append_conf('postgresql.conf', $conf . block('Run', '', 'registry_migration.guard_interval')
	  . "registry_migration.enqueue_interval = '1s'\n");
$node->start;
my ($database) = $conf =~ /registry_migration\.database = '(\w+)'/;
$node->safe_psql('postgres', "CREATE DATABASE $database");

sub sql { return $node->safe_psql($database, $_[0]) }

# Runs README statements as psql does from a file, in $dir; dies on an error.
sub run_readme_sql
{
	my ($text) = @_;
	my ($stdout, $stderr) = ('', '');
	my $ok = IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-A', '-t', '-d', $node->connstr($database), '-f', '-' ],
		'<', \$text, '>', \$stdout, '2>', \$stderr, init => sub { chdir $dir });
	return ($ok, $stdout, $stderr);
}

# ---- Install: the extension and the repositories --------------------------------------
open(my $csv, '>', "$dir/repositories.csv") or die $!;
print $csv "$path,gold\n", map { "group/app-$_," . ($_ % 2 ? 'free' : '') . "\n" } 1 .. $total - 1;
close $csv;
my ($ok, $stdout, $stderr) = run_readme_sql(block('Install', 'sql', 'CREATE EXTENSION'));
ok($ok, "the README's CREATE EXTENSION and \\copy run") or diag($stderr);
is(sql(q{SELECT count(*) FROM registry_migration.repositories WHERE state = 'default'}), $total,
	"the $total repositories of the CSV are loaded, waiting");

# ---- Configure: our side of HTTPS ------------------------------------------------------
my $ours = local_paths(block('Configure', 'sql', 'ALTER SYSTEM'));
$ours =~ s{'\Q$dir\E/registry-ca\.crt'}{'${\ $ca->file('ca.crt') }'};
$ours =~ s{'\Q$dir\E/registry-client\.(crt|key)'}{"'" . $ca->file("client.$1") . "'"}ge;
($ok, $stdout, $stderr) = run_readme_sql($ours);
ok($ok, "the README's settings are accepted") or diag($stderr);
ok($node->poll_query_until($database, "SELECT current_setting('registry_migration.client_key_file') = '${\ $ca->file('client.key') }'"),
	'a new session has them');
($ok, $stdout, $stderr) = run_readme_sql(block('Configure', 'sql', 'SELECT registry_migration.registry_import_status'));
ok($ok, "the README's first request goes through over HTTPS with the client certificate") or diag($stderr);
is(sql('SHOW registry_migration.jwt_audience') . ' ' . sql('SHOW registry_migration.jwt_issuer'),
	"$registry{service} $registry{issuer}", "our token's audience and issuer are the registry's service and issuer");
my @statuses = grep { ($_->{raw_path} // '') =~ m{^/gitlab/v1/import/} && $_->{method} eq 'GET' } @{ $sim->requests };
ok(scalar(@statuses) && $statuses[-1]{token_valid}, 'the first request carried a token the registry accepted')
  or diag(explain($statuses[-1]));

# ---- Privileges and Run: the worker's role, the notification role, enabling ----------------
my ($worker_grants) = grep { $_->{text} =~ /^-- The worker's role and its grants\./ } Readme::blocks(section => 'Run');
($ok, $stdout, $stderr) = run_readme_sql($worker_grants->{text} =~ s/DATABASE gitlab/DATABASE $database/r);
ok($ok, "the README's grants for the worker's role") or diag($stderr);
my ($notification_grant) = grep { $_->{text} =~ /registry_notifications/ } Readme::blocks(section => 'Privileges');
($ok, $stdout, $stderr) = run_readme_sql("CREATE ROLE registry_notifications LOGIN;\n" . $notification_grant->{text});
ok($ok, "the README's grant for the notification role") or diag($stderr);
sql('SELECT pg_reload_conf()');    # the worker's role exists now: connect without waiting

# The receiver, started with the README's command line.
open(my $secret, '>', "$dir/notification-secret") or die $!;
print $secret "$registry{secret}\n";
close $secret;
chmod 0600, "$dir/notification-secret";
my $receiver_command = block('Run', 'sh', 'PGDATABASE=gitlab') =~ s/\\\n\s*/ /gr;
my ($yaml_port) = $registry{url} =~ m{:(\d+)/};
like($receiver_command, qr/--port \Q$yaml_port\E\b/, "the receiver listens where the config.yml sends notifications");
$receiver_command =~ s{--secret-file \S+}{--secret-file $dir/notification-secret};
$receiver_command =~ s{--listen \S+}{--listen 127.0.0.1};
$receiver_command =~ s{--port 8089}{--port 0 --port-file $dir/receiver.port --log $dir/receiver.log};
$receiver_command =~ s{scripts/}{$FindBin::RealBin/../../scripts/};
my $receiver = IPC::Run::start([ 'bash', '-c', "exec env PGHOST=${\ $node->host } PGPORT=${\ $node->port } $receiver_command" ],
	'<', '/dev/null', '>', \$out, '2>', \$err);
my $deadline = time() + 30;
sleep 0.05 until -s "$dir/receiver.port" || time() > $deadline;
ok(-s "$dir/receiver.port", "the README's receiver command starts") or diag($err);
my $port = PostgreSQL::Test::Utils::slurp_file("$dir/receiver.port") =~ s/\s+//gr;
$sim->configure(notify_url => "http://127.0.0.1:$port$notify_path", notify_secret => $registry{secret});

($ok, $stdout, $stderr) = run_readme_sql(block('Run', 'sql', 'UPDATE registry_migration.settings'));
ok($ok, "the README's UPDATE enables the migration") or diag($stderr);

# ---- Watch, while it runs --------------------------------------------------------------
ok($node->poll_query_until($database, q{SELECT done >= 10 FROM registry_migration.progress}),
	'the worker migrates over HTTPS as the README role');
($ok, $stdout, $stderr) = run_readme_sql(block('Watch', 'sql', 'SELECT * FROM registry_migration.progress'));
ok($ok, "the README's Watch statements run") or diag($stderr);
like($stdout, qr/^\d+\|\d+\|\d+\|\d+\|/m, 'progress shows the counts');

# Prometheus and the chart, as the README's monitoring role sees them.
for my $grants (grep { $_->{text} =~ /migration_monitoring/ } Readme::blocks(section => 'Watch', lang => 'sql'))
{
	($ok, $stdout, $stderr) = run_readme_sql($grants->{text});
	ok($ok, "the README's grants for the monitoring role: " . (split /\n/, $grants->{text})[0]) or diag($stderr);
}
my $on_node = sub { $_[0] =~ s{host=/run/postgresql}{host=${\ $node->host } port=${\ $node->port }}r
	  =~ s{-h /run/postgresql}{-h ${\ $node->host } -p ${\ $node->port }}r };
my $exporter_port = PostgreSQL::Test::Cluster::get_free_port();
my $exporter_command = $on_node->(block('Watch', 'sh', 'DATA_SOURCE_NAME=')) =~ s/\\\n\s*/ /gr =~ s/\s+$//r;
my $exporter = IPC::Run::start([ 'bash', '-c', "exec env $exporter_command --web.listen-address=127.0.0.1:$exporter_port" ],
	'<', '/dev/null', '>', "$dir/exporter.log", '2>&1');
my $metrics = '';
$deadline = time() + 30;
until ($metrics =~ /^registry_migration_\w+/m || time() > $deadline)
{
	sleep 0.2;
	my $r = HTTP::Tiny->new(timeout => 5)->get("http://127.0.0.1:$exporter_port/metrics");
	$metrics = $r->{content} // '' if $r->{success};
}
like($metrics, qr/^registry_migration_\w+\{[^}]*state="import_done"[^}]*\} [1-9]/m,
	"the README's exporter command serves the repositories per state");
$exporter->kill_kill;
my $report_command = $on_node->(block('Watch', 'sh', 'scripts/report')) =~ s{^scripts/}{$FindBin::RealBin/../../scripts/}r;
ok(IPC::Run::run([ 'bash', '-c', $report_command ], '<', '/dev/null', '>', \$out, '2>', \$err,
		init => sub { chdir $dir }), "the README's report command runs") or diag($err);
like(PostgreSQL::Test::Utils::slurp_file("$dir/progress.svg"), qr/<svg/, 'and draws the chart');

ok($node->poll_query_until($database, "SELECT count(*) = $total - 1 FROM registry_migration.repositories
	WHERE state = 'import_done' AND path <> '$path'"), 'all but the hanging repository are imported');
is(sql(qq{SELECT state FROM registry_migration.repositories WHERE path = '$path'}), 'pre_importing',
	"$path hangs in its pre-import");
cmp_ok(sql(q{SELECT count(*) FROM registry_migration.events WHERE cause = 'notification'}), '>', 0,
	"the notifications came through the README's receiver");
is(sql(q{SELECT usename FROM pg_stat_activity WHERE backend_type = 'registry_migration worker'}),
	'registry_migration_worker', "the worker runs as the README's role");

# The worker stands aside while the statements below act on one repository.
sql(q{ALTER SYSTEM SET registry_migration.worker_enabled = off});
sql('SELECT pg_reload_conf()');
ok($node->poll_query_until($database, q{SELECT activity LIKE 'idle%' FROM registry_migration.worker_status}),
	'the worker idles');

# ---- Intervene: each statement, in an order in which each applies ---------------------------
my %intervene = map { (s/\s*--.*//r) => 1 } grep { /\S/ } split /\n/, block('Intervene', 'sql', 'UPDATE registry_migration.settings');

sub intervene
{
	my ($prefix, $query, $expected, $what) = @_;
	my @statements = grep { index($_, $prefix) == 0 } keys %intervene;
	is(scalar(@statements), 1, "the README's Intervene block has: $prefix") or return;
	delete $intervene{ $statements[0] };
	my ($done, $output, $error) = run_readme_sql($statements[0]);
	ok($done, "runs: $statements[0]") or diag($error);
	is(sql($query), $expected, $what);
}
my $state = qq{SELECT state || coalesce(' ' || skipped_reason, '') FROM registry_migration.repositories WHERE path = '$path'};
intervene("SELECT registry_migration.cancel('$path');", $state, 'import_aborted', 'cancel: aborted');
intervene("SELECT registry_migration.retry('$path');", $state, 'pre_importing', 'retry: pre-importing again');
intervene("SELECT registry_migration.cancel('$path', true);", $state, 'import_skipped migration_forced_canceled',
	'forced cancel: skipped');
intervene('UPDATE registry_migration.settings SET enabled = false;',
	'SELECT enabled FROM registry_migration.settings', 'f', 'paused');
intervene("SELECT registry_migration.reset('$path');", $state, 'default', 'reset: back to the start');
intervene("SELECT registry_migration.skip('$path', 'not_in_plan');", $state, 'import_skipped not_in_plan',
	'skip: skipped');
intervene('UPDATE registry_migration.settings SET capacity = 50;',
	'SELECT capacity FROM registry_migration.settings', '50', 'capacity changed');
intervene('INSERT INTO registry_migration.denied_namespaces', 'SELECT string_agg(root_namespace, \',\') FROM registry_migration.denied_namespaces',
	'customer', 'a namespace denied');
sql(q{UPDATE registry_migration.registry_state SET retry_after_until = now() + interval '1 hour'});
intervene('UPDATE registry_migration.registry_state SET retry_after_until = NULL;',
	'SELECT retry_after_until IS NULL FROM registry_migration.registry_state', 't', 'Retry-After forgotten');
is(join(' | ', sort keys %intervene), '', 'every statement of the Intervene block was run');

# ---- Troubleshoot ------------------------------------------------------------------------
($ok, $stdout, $stderr) = run_readme_sql(block('Troubleshoot', 'sql', 'SELECT * FROM registry_migration.registry_request'));
ok($ok, "the README's raw status request runs") or diag($stderr);
like($stdout, qr/\|200\|/, 'and shows the answer of the registry');

$receiver->kill_kill;
$sim->stop;
$node->stop;
done_testing();
