# Helpers shared by the TAP tests: one node with the extension, one registry
# simulator, and short functions to run cycles, read rows, events and the
# simulator's request log, and set up repositories.
#
# A test starts its node with start_node() (or hands an existing node to
# use_node()); every helper then works on that node and simulator.
package MigrationTest;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(basename);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RegistrySimulator;
use Test::More;
use Time::HiRes qw(time sleep);

our @EXPORT = qw(
  $json start_node use_node create_attempt_function start_guard_test start_enqueuer_test
  sql sql_json quote ago attempt timed_attempt guard enqueue
  row repo state_of events event_rows events_of event_count
  request_line requests requests_with_code requests_for sent enqueue_logged guard_logged
  db_add put_row db_pre_import_done db_aborted settings fresh_defaults fresh
  wait_until deliver notify section_time sim_running
  fault respond paths_of summary_lists lists_empty left_alone_reasons
  psql_bg end_test
);

our $json = JSON::PP->new->utf8->canonical;

my ($node, $sim);
my $started = time();
my %fresh_defaults;
my $last_notification = 0;

# ---- the node ------------------------------------------------------------------

# A new node pointed at the simulator (if any), with extra postgresql.conf
# lines, started, with the extension created.
sub start_node
{
	my ($name, %opt) = @_;
	my $new = PostgreSQL::Test::Cluster->new($name);
	$new->init;
	$new->append_conf('postgresql.conf', join("\n",
		($opt{sim} ? "registry_migration.registry_url = '" . $opt{sim}->url . "'" : ()),
		@{ $opt{conf} // [] }, ''));
	$new->start;
	$new->safe_psql('postgres', 'CREATE EXTENSION registry_migration');
	use_node($new, $opt{sim});
	return $new;
}

# The node (and simulator) the helpers work on.
sub use_node { ($node, $sim) = @_; return }

# public.attempt(statement): its single value, or
# "ERROR <sqlstate>: message DETAIL: detail".
sub create_attempt_function
{
	$node->safe_psql('postgres', q{
	CREATE FUNCTION public.attempt(q text) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		result text; st text; msg text; det text;
	BEGIN
		EXECUTE q INTO result;
		RETURN result;
	EXCEPTION WHEN others THEN
		GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
		RETURN 'ERROR ' || st || ': ' || msg || coalesce(' DETAIL: ' || nullif(det, ''), '');
	END $$;});
	return;
}

# The guard, notification and admin tests: steps on the simulator last 60 s,
# a canceled pre-import has no cool-down, public.attempt() exists, and every
# fresh() makes the guard act at once (no step duration or timeout) with
# capacity 10, three retries and no tag limit. Returns (node, simulator).
sub start_guard_test
{
	my ($name) = @_;
	my $new_sim = RegistrySimulator->new(
		pre_import_seconds => 60, import_seconds => 60, cancel_cooldown => 0);
	my $new = start_node($name, sim => $new_sim, conf => [
		"registry_migration.request_timeout = '5s'",
		"registry_migration.connect_timeout = '1s'" ]);
	create_attempt_function();
	fresh_defaults(
		enabled => 'true', capacity => 10, max_retries => 3, start_max_retries => 50,
		max_step_duration => q{'0'}, pre_import_timeout => q{'0'}, import_timeout => q{'0'},
		pre_import_tags_rate => 0, max_tags_count => 0, created_before => 'NULL',
		target_plans => 'NULL', enqueue_waiting_time => q{'0'}, guard_batch_size => 100);
	return ($new, $new_sim);
}

# The enqueuer tests: steps do not end by themselves unless a test asks for
# it (per-repository durations), a canceled pre-import has no cool-down
# unless asked for, and every fresh() enables the migration with capacity 10
# and no tag limit. Returns (node, simulator).
sub start_enqueuer_test
{
	my ($name) = @_;
	my $new_sim = RegistrySimulator->new(
		pre_import_seconds => 600, import_seconds => 600, cancel_cooldown => 0);
	my $new = start_node($name, sim => $new_sim, conf => [
		"registry_migration.request_timeout = '5s'", 'max_connections = 40' ]);
	fresh_defaults(enabled => 'true', capacity => 10, max_tags_count => 0);
	return ($new, $new_sim);
}

# ---- statements ------------------------------------------------------------------

sub sql { return $node->safe_psql('postgres', $_[0]) }
sub sql_json { return $json->decode(sql($_[0])) }

sub quote { (my $s = $_[0]) =~ s/'/''/g; return "'$s'" }

# An expression for a time $interval ago.
sub ago { return "now() - interval '$_[0]'" }

# One statement through public.attempt(), after optional SQL (SETs): its
# value, or "ERROR <sqlstate>: ...".
sub attempt
{
	my ($statement, $settings) = @_;
	return sql(($settings // '') . "SELECT public.attempt(\$q\$$statement\$q\$)");
}

# attempt() and how long it took: (result, seconds).
sub timed_attempt
{
	my $t0 = time();
	my $result = attempt(@_);
	return ($result, time() - $t0);
}

# One enqueue (or guard) cycle, its summary; optional SQL (SETs) run first
# in the session.
sub enqueue { return sql_json(($_[0] // '') . 'SELECT registry_migration.run_enqueuer()') }
sub guard   { return sql_json(($_[0] // '') . 'SELECT registry_migration.run_guard()') }

# ---- rows and events -------------------------------------------------------------

# The repository's whole row (row_to_json), undef when there is none.
sub row
{
	my ($path) = @_;
	return sql_json("SELECT coalesce((SELECT row_to_json(r) FROM registry_migration.repositories r
		WHERE path = '$path'), 'null')");
}

# The repository's row as a hash (timestamps as booleans "<name>_set",
# aborted_at as text for comparisons), undef when there is none.
sub repo
{
	my ($path) = @_;
	my $row = sql("SELECT row_to_json(r) FROM (SELECT state, retries_count, skipped_reason,
		aborted_in_state, aborted_at::text AS aborted_at,
		pre_import_started_at IS NOT NULL AS pre_import_started_set,
		pre_import_done_at IS NOT NULL AS pre_import_done_set,
		import_started_at IS NOT NULL AS import_started_set,
		import_done_at IS NOT NULL AS import_done_set,
		aborted_at IS NOT NULL AS aborted_set,
		skipped_at IS NOT NULL AS skipped_set
		FROM registry_migration.repositories WHERE path = " . quote($path) . ') AS r');
	return $row eq '' ? undef : $json->decode($row);
}

sub state_of { my $r = repo($_[0]); return $r ? $r->{state} : undef }

# The event log of one repository, as rows.
sub event_rows
{
	my ($path) = @_;
	return @{ sql_json("SELECT coalesce(json_agg(e ORDER BY id), '[]')
		FROM registry_migration.events e WHERE path = '$path'") };
}

# The event log of one repository, one line per event:
# "cause event old>new http_status registry_status".
sub events
{
	return map {
		join(' ', $_->{cause}, $_->{event}, "$_->{old_state}>$_->{new_state}",
			$_->{http_status} // '-', $_->{registry_status} // '-')
	} event_rows($_[0]);
}

# The repository's events: "old>new:event" joined by spaces, in order.
sub events_of
{
	return sql("SELECT coalesce(string_agg(format('%s>%s:%s', old_state, new_state, event), ' ' ORDER BY id), '')
		FROM registry_migration.events WHERE path = " . quote($_[0]));
}

sub event_count { return sql('SELECT count(*) FROM registry_migration.events') }

# ---- the simulator's request log ---------------------------------------------------

# One request as a short line: "start:pre a/b", "status a/b", "cancel a/b",
# "cancel:force a/b", "tags a/b" (with the answer code when asked).
sub request_line
{
	my ($r, $with_code) = @_;
	my $what = $r->{kind};
	$what .= ":$r->{import_type}" if $r->{kind} eq 'start';
	$what .= ':force' if $r->{kind} eq 'cancel' && ($r->{query} // '') =~ /force=true/;
	return "$what " . ($r->{repository} // '?') . ($with_code ? ' ' . ($r->{code} // 'none') : '');
}
sub requests { return map { request_line($_) } @{ $sim->requests } }
sub requests_with_code { return map { request_line($_, 1) } @{ $sim->requests } }
sub requests_for
{
	my ($path) = @_;
	return grep { / \Q$path\E$/ } requests();
}

# The requests as the registry received them, one line each:
# "PUT start a/b import_type=pre", "GET tags a/b n=6", "GET status a/b".
sub sent
{
	return [ map { join(' ', $_->{method}, $_->{kind}, $_->{repository} // '-', $_->{query} // '') =~ s/ $//r }
		  @{ $sim->requests } ];
}

# A cycle with the request log cleared before: (summary, requests).
sub enqueue_logged
{
	my ($pre) = @_;
	$sim->clear_requests;
	my $summary = enqueue($pre);
	return ($summary, sent());
}

sub guard_logged
{
	my ($pre) = @_;
	$sim->clear_requests;
	my $summary = guard($pre);
	return ($summary, sent());
}

# ---- repositories and settings ----------------------------------------------------

# Insert one repository: column => SQL expression.
sub db_add
{
	my ($path, %columns) = @_;
	my @names = ('path', sort keys %columns);
	my @values = (quote($path), map { $columns{$_} } sort keys %columns);
	sql('INSERT INTO registry_migration.repositories (' . join(', ', @names) . ') VALUES ('
		  . join(', ', @values) . ')');
}

# Insert a repository row in a given state; %columns are SQL expressions.
sub put_row
{
	my ($path, $state, %columns) = @_;
	db_add($path, state => "'$state'", %columns);
}

# The usual in-process and aborted rows, with consistent timestamps.
sub db_pre_import_done
{
	my ($path, $ago, %more) = @_;
	db_add($path, state => "'pre_import_done'", pre_import_started_at => "now() - interval '1 day'",
		pre_import_done_at => "now() - interval '$ago'", %more);
}

sub db_aborted
{
	my ($path, $ago, %more) = @_;
	db_add($path, state => "'import_aborted'", pre_import_started_at => "now() - interval '1 day'",
		aborted_at => "now() - interval '$ago'", retries_count => 1,
		aborted_in_state => "'pre_importing'", %more);
}

# Change settings: column => SQL expression.
sub settings
{
	my (%set) = @_;
	return unless %set;
	sql('UPDATE registry_migration.settings SET ' . join(', ', map { "$_ = $set{$_}" } sort keys %set));
}

# The settings every fresh() starts from (on top of the defaults).
sub fresh_defaults { %fresh_defaults = @_; return }

# A clean slate: no repositories, events, deny list or Retry-After, the
# default settings changed by fresh_defaults() and then by %set; the
# simulator reset (no faults, empty logs).
sub fresh
{
	my (%set) = @_;
	$sim->reset;
	$sim->clear_requests;
	sql(q{DELETE FROM registry_migration.repositories;
		DELETE FROM registry_migration.events;
		DELETE FROM registry_migration.denied_namespaces;
		UPDATE registry_migration.registry_state SET retry_after_until = NULL;
		INSERT INTO registry_migration.settings DEFAULT VALUES;});
	settings(%fresh_defaults, %set);
}

# ---- waiting and notifications --------------------------------------------------

sub wait_until
{
	my ($check, $timeout) = @_;
	my $deadline = time() + ($timeout // 20);
	while (time() < $deadline)
	{
		return 1 if $check->();
		sleep 0.02;
	}
	return 0;
}

# The notifications the simulator sent since the last delivery (waiting for
# at least $count of them), delivered through handle_notification() in
# order, as the receiving application does. Returns "status -> result"
# strings.
sub deliver
{
	my ($count) = @_;
	my @new;
	wait_until(sub {
		@new = grep { $_->{seq} > $last_notification } @{ $sim->notifications };
		return @new >= ($count // 0);
	}, 10);
	my @results;
	for my $n (sort { $a->{seq} <=> $b->{seq} } @new)
	{
		$last_notification = $n->{seq};
		push @results, "$n->{status} -> "
		  . attempt("SELECT registry_migration.handle_notification('$n->{path}', '$n->{status}')");
	}
	return @results;
}

# handle_notification(path, status) through attempt(): the state after, or
# "ERROR <sqlstate>: ...".
sub notify { return attempt("SELECT registry_migration.handle_notification('$_[0]', '$_[1]')") }

sub section_time
{
	my ($name, $since) = @_;
	note(sprintf('%s: %.1f s', $name, time() - $since));
}

# A step running on the simulator (it never ends by itself: outcome hang).
sub sim_running
{
	my ($path, $step, %extra) = @_;
	$sim->add_repositories({ path => $path, pre_import_outcomes => ['hang'],
		import_outcomes => ['hang'], ($step eq 'final' ? (status => 'pre_import_complete') : ()),
		%extra });
	my $r = HTTP::Tiny->new(timeout => 10)->request('PUT', $sim->url . "/gitlab/v1/import/$path/?import_type=$step");
	die "could not start $step on $path: $r->{status} $r->{content}" unless $r->{status} == 202;
}

# ---- simulator faults and cycle summaries ------------------------------------------

sub fault
{
	my ($match, $action, $times) = @_;
	return { match => $match, action => $action, (defined $times ? (times => $times) : ()) };
}

sub respond { my ($code, %more) = @_; return { type => 'respond', code => $code, %more } }

sub paths_of { return [ map { ref $_ ? $_->{path} : $_ } @{ $_[0] } ] }

# A guard summary's left_alone_reasons, the reasons that occurred:
# "reason count" joined by spaces, in name order; "" when none did.
sub left_alone_reasons
{
	my $reasons = $_[0]{left_alone_reasons} // {};
	return join(' ', map { "$_ $reasons->{$_}" } grep { $reasons->{$_} } sort keys %$reasons);
}

# The lists of an enqueuer summary.
sub summary_lists { return qw(final_imports retried started finished skipped aborted errors unavailable not_ready) }

sub lists_empty
{
	my ($s) = @_;
	return !grep { @{ $s->{$_} // [] } } summary_lists();
}

# ---- sessions in the background ------------------------------------------------

# A psql session in the background running a script; its output goes to a
# file (read it after finish). Stdin is a file, so it runs without pumping.
my ($bg_dir, $bg_count);
sub psql_bg
{
	my ($sql) = @_;
	$bg_dir //= PostgreSQL::Test::Utils::tempdir();
	my $base = "$bg_dir/bg" . ++$bg_count;
	open(my $fh, '>', "$base.sql") or die "$base.sql: $!";
	print $fh $sql;
	close $fh;
	my $h = IPC::Run::start([ 'psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$base.sql", '-d',
			$node->connstr('postgres') . ' application_name=cycle_worker' ],
		'<', '/dev/null', '>', "$base.out", '2>', "$base.err");
	return ($h, "$base.out");
}

# The end of a test file: the simulator and the node stopped, the time the
# file took noted, done_testing().
sub end_test
{
	$sim->stop if $sim;
	$node->stop;
	note(sprintf('%s: %.1f s', basename($0, '.pl'), time() - $started));
	done_testing();
}

1;
