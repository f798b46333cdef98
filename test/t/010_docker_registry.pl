# The registry client against the real Docker distribution registry with
# token authentication: the tag count of a repository with
# pushed tags comes back correct with a token the real registry verified,
# and a wrong key gets a clear authentication error.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use DockerRegistry;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $fixtures = "$FindBin::RealBin/../fixtures";
my $tmp = PostgreSQL::Test::Utils::tempdir();

# The registry trusts a certificate of the fixture key; a second key is wrong.
system('openssl', 'req', '-x509', '-new', '-key', "$fixtures/jwt_test_key.pem",
	'-subj', '/CN=registry_migration test', '-days', '2', '-out', "$tmp/cert.pem") == 0
  or die 'openssl req failed';
system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $tmp/wrong.pem 2>/dev/null") == 0
  or die 'openssl genpkey failed';

my $registry = DockerRegistry->new(dir => $tmp);
$registry->start;
$registry->push_image('group/app', map { "v$_" } 1 .. 7);
$registry->push_image('group/single', 'latest');
$registry->stop;
$registry->start(token => { issuer => 'registry_migration', service => 'container_registry',
	cert => "$tmp/cert.pem" });

my $node = PostgreSQL::Test::Cluster->new('docker_registry');
$node->init;
$node->append_conf('postgresql.conf', "registry_migration.jwt_private_key_file = '$fixtures/jwt_test_key.pem'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION registry_migration');
my $set_url = "SET registry_migration.registry_url = '" . $registry->url . "';";

is($node->safe_psql('postgres', "$set_url SELECT registry_migration.registry_tags_count('group/app')"),
	'7', 'tag count of a repository with 7 pushed tags, with a token the registry accepted');
is($node->safe_psql('postgres', "$set_url SELECT registry_migration.registry_tags_count('group/single')"),
	'1', 'tag count of a repository with one tag');
is($node->safe_psql('postgres',
	"$set_url SELECT registry_migration.registry_tags_count('group/missing') IS NULL"),
	't', 'an unknown repository gives NULL (404)');

# A token signed with another key: a clear authentication error, 08006.
$node->append_conf('postgresql.conf', "registry_migration.jwt_private_key_file = '$tmp/wrong.pem'\n");
$node->reload;
my ($rc, $out, $err) = $node->psql('postgres',
	"$set_url SELECT registry_migration.registry_tags_count('group/app')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($rc, 0, 'a token signed with the wrong key is refused');
like($err, qr/08006/, 'the error is registry unavailable (08006)');
like($err, qr/HTTP 401: the registry refused the request's credentials/, 'the error says the credentials were refused');
unlike($err, qr/eyJ/, 'the token does not appear in the error');

# No key at all: no token, also refused by a registry that requires one.
$node->append_conf('postgresql.conf', "registry_migration.jwt_private_key_file = ''\n");
$node->reload;
($rc, $out, $err) = $node->psql('postgres',
	"$set_url SELECT registry_migration.registry_tags_count('group/app')");
like($err, qr/HTTP 401/, 'without a key the registry refuses the request');

$node->stop;
$registry->stop;
done_testing();
