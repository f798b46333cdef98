# The SQL surface of schema registry_migration, read from the catalogs at
# run time so that a new function, enum label, column, view or parameter is
# fuzzed without touching the test.
#
# load_surface($node) fills the exported variables; every other SqlFuzz
# module reads them.
package SqlFuzz::Surface;

use strict;
use warnings;
use Exporter 'import';
use JSON::PP;

our @EXPORT = qw(
  load_surface catalog_json
  $FUNCTIONS $ENUMS $COLUMNS $VIEWS $GUCS %FN @STATES @REASONS @SETTINGS_COLUMNS %SETTINGS_TYPE
  $STATE_TYPE $REASON_TYPE
);

our $STATE_TYPE = 'registry_migration.migration_state';
our $REASON_TYPE = 'registry_migration.skip_reason';
our ($FUNCTIONS, $ENUMS, $COLUMNS, $VIEWS, $GUCS, %FN, @STATES, @REASONS, @SETTINGS_COLUMNS, %SETTINGS_TYPE);

my $json = JSON::PP->new->utf8(0)->canonical->allow_nonref;

# A query of the fuzz database that returns one JSON value.
sub catalog_json { my ($node, $sql) = @_; return $json->decode($node->safe_psql('fuzz', $sql)) }

sub load_surface
{
	my ($node) = @_;
	my $sql_json = sub { return catalog_json($node, $_[0]) };
	$FUNCTIONS = $sql_json->(q{
		SELECT coalesce(json_agg(json_build_object(
			'name', p.proname, 'kind', p.prokind, 'strict', p.proisstrict, 'retset', p.proretset,
			'rettype', p.prorettype::regtype::text, 'ndefaults', p.pronargdefaults,
			'argtypes', (SELECT coalesce(json_agg(t::regtype::text ORDER BY i), '[]')
			               FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i)),
			'argnames', coalesce(to_json(p.proargnames), '[]'),
			'argmodes', to_json(p.proargmodes::text[])) ORDER BY p.proname, p.oid), '[]')
		  FROM pg_proc p WHERE p.pronamespace = 'registry_migration'::regnamespace});
	$ENUMS = $sql_json->(q{
		SELECT coalesce(json_object_agg(t, labels), '{}') FROM (
			SELECT e.enumtypid::regtype::text AS t, json_agg(e.enumlabel ORDER BY e.enumsortorder) AS labels
			  FROM pg_enum e JOIN pg_type ty ON ty.oid = e.enumtypid
			 WHERE ty.typnamespace = 'registry_migration'::regnamespace GROUP BY 1) s});
	$COLUMNS = $sql_json->(q{
		SELECT coalesce(json_object_agg(rel, cols), '{}') FROM (
			SELECT c.relname AS rel, json_agg(json_build_object('name', a.attname,
				'type', format_type(a.atttypid, a.atttypmod),
				'generated', a.attgenerated <> '', 'identity', a.attidentity <> '') ORDER BY a.attnum) AS cols
			  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
			 WHERE c.relnamespace = 'registry_migration'::regnamespace AND c.relkind IN ('r', 'p')
			 GROUP BY c.relname) s});
	$VIEWS = $sql_json->(q{
		SELECT coalesce(json_agg(relname::text ORDER BY relname), '[]') FROM pg_class
		 WHERE relnamespace = 'registry_migration'::regnamespace AND relkind IN ('v', 'm')});
	$GUCS = $sql_json->(q{
		SELECT coalesce(json_agg(json_build_object('name', name, 'vartype', vartype, 'context', context,
			'enumvals', enumvals) ORDER BY name), '[]')
		  FROM pg_settings WHERE name LIKE 'registry_migration.%'});

	@STATES = @{ $ENUMS->{$STATE_TYPE} || [] };
	@REASONS = @{ $ENUMS->{$REASON_TYPE} || [] };
	%FN = map { $_->{name} => $_ } @$FUNCTIONS;
	@SETTINGS_COLUMNS = @{ $COLUMNS->{settings} || [] };
	%SETTINGS_TYPE = map { $_->{name} => $_->{type} } @SETTINGS_COLUMNS;

	# Input arguments (names and types) of each function.
	for my $f (@$FUNCTIONS)
	{
		my @names = @{ $f->{argnames} };
		my @modes = $f->{argmodes} ? @{ $f->{argmodes} } : map { 'i' } @names;
		my @in_names = map { $names[$_] // '' } grep { !defined $modes[$_] || $modes[$_] =~ /^[ibv]$/ }
		  0 .. $#modes;
		@in_names = ('') x @{ $f->{argtypes} } if !@in_names && @{ $f->{argtypes} };
		$f->{args} = [ map { { type => $f->{argtypes}[$_], name => $in_names[$_] // '' } }
			  0 .. $#{ $f->{argtypes} } ];
		$f->{trigger} = $f->{rettype} eq 'trigger';
		$f->{takes_path} = grep { $_->{name} =~ /(^|_)paths?$/ } @{ $f->{args} };
	}
	return;
}

1;
