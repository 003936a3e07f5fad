package compose

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/blackfriday-kafka/shop/infra/access"
)

// The secure stack: docker-compose.secure.yml over docker-compose.yml
// (SECURE=1 make up). The same services, and a job that creates the ACLs;
// every client signs in with SASL as a principal of infra/access, whose
// credentials the brokers get when they format their storage, and the
// brokers check the ACLs.
var secureStack = secured()

const (
	saslProtocol  = "SASL_PLAINTEXT" // the security protocol of every listener a client uses
	kafkaLogin    = "-Djava.security.auth.login.config=/etc/kafka/sasl/jaas.conf"
	registryRealm = "SchemaRegistry-Props"
	registryLogin = "-Djava.security.auth.login.config=/etc/schema-registry/auth/jaas.conf"
	// Jetty 12's, the Jetty of Confluent Platform 8; Jetty 9's
	// org.eclipse.jetty.jaas.spi would refuse every password.
	propertyFileLogin = "org.eclipse.jetty.security.jaas.spi.PropertyFileLoginModule"
	scramLoginModule  = "org.apache.kafka.common.security.scram.ScramLoginModule"
)

// kafkaJAAS is a Kafka client's login as principal, with its dev password.
func kafkaJAAS(principal string) string {
	return fmt.Sprintf(`%s required username="%s" password="%s";`, scramLoginModule, principal, access.DevPassword(principal))
}

func secured() map[string]service {
	s := maps.Clone(stack)
	for n := range brokers {
		s[brokers[n]] = secureBroker(n + 1)
	}
	registry := s["schema-registry"].with(
		setting{"SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "SASL_PLAINTEXT://kafka1:29092,SASL_PLAINTEXT://kafka2:29092,SASL_PLAINTEXT://kafka3:29092", "the registry keeps only the listeners of its store's protocol"},
		setting{"SCHEMA_REGISTRY_KAFKASTORE_SECURITY_PROTOCOL", saslProtocol, "its store signs in"},
		setting{"SCHEMA_REGISTRY_KAFKASTORE_SASL_MECHANISM", access.Mechanism, "the principals' mechanism"},
		setting{"SCHEMA_REGISTRY_KAFKASTORE_SASL_JAAS_CONFIG", kafkaJAAS(access.Admin), "its store is admin's: it creates and writes _schemas"},
		setting{"SCHEMA_REGISTRY_AUTHENTICATION_METHOD", "BASIC", "its API asks every client for a principal's password"},
		setting{"SCHEMA_REGISTRY_AUTHENTICATION_REALM", registryRealm, "the JAAS section of its users"},
		setting{"SCHEMA_REGISTRY_AUTHENTICATION_ROLES", "admin,user", "the roles its users have"},
		setting{"SCHEMA_REGISTRY_OPTS", registryLogin, "its JVM finds the JAAS file"},
	)
	registry.also = []check{registryUsers, registryHealthSignsIn}
	s["schema-registry"] = registry
	s["kafka-ui"] = s["kafka-ui"].with(
		setting{"KAFKA_CLUSTERS_0_PROPERTIES_SECURITY_PROTOCOL", saslProtocol, "the UI signs in"},
		setting{"KAFKA_CLUSTERS_0_PROPERTIES_SASL_MECHANISM", access.Mechanism, "the principals' mechanism"},
		setting{"KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG", kafkaJAAS(access.Admin), "the UI shows everything, so it is admin"},
		setting{"KAFKA_CLUSTERS_0_SCHEMAREGISTRYAUTH_USERNAME", access.Admin, "the registry asks the UI for a password"},
		setting{"KAFKA_CLUSTERS_0_SCHEMAREGISTRYAUTH_PASSWORD", access.DevPassword(access.Admin), "the registry asks the UI for a password"},
	)
	for _, job := range []string{"topics", "schemas"} {
		j := s[job].with(secureMode)
		j.also = []check{signsInAs(access.Admin)}
		s[job] = j
	}
	s["acls"] = service{area: "acls", image: shopImage, command: "acls", job: true, healthy: brokers, env: []setting{
		{"KAFKA_BROKERS", inNetwork, "the ACLs of infra/access go to the cluster"},
		secureMode,
	}, also: []check{signsInAs(access.Admin)}}
	for _, name := range slices.Sorted(maps.Keys(stack)) {
		if stack[name].area != "services" {
			continue
		}
		svc := s[name].with(secureMode)
		svc.done = append(slices.Clone(svc.done), "acls")
		svc.also = []check{signsInAs(name)}
		s[name] = svc
	}
	return s
}

// secureMode makes a shop container sign in, to Kafka and to the registry.
var secureMode = setting{"SECURE", "1", "it signs in: a service as its own principal, a job as admin"}

// secureBroker is Kafka node n of the secure stack.
func secureBroker(n int) service {
	name, host, port := node(n)
	b := broker(n).with(
		setting{"KAFKA_LISTENERS", fmt.Sprintf("SASL_PLAINTEXT://%s:29092,CONTROLLER://%[1]s:29093,SASL_PLAINTEXT_HOST://0.0.0.0:%d", name, port), "the network's and the host's sign clients in; the quorum's"},
		setting{"KAFKA_ADVERTISED_LISTENERS", fmt.Sprintf("SASL_PLAINTEXT://%s:29092,SASL_PLAINTEXT_HOST://%s", name, host), "containers reach a node by name, the host on localhost, both with SASL"},
	).with(secureBrokerSettings...)
	b.also = []check{clientListenersSignIn, formatsCredentials, brokersSignInAsAdmin, brokerHealthSignsIn}
	return b
}

// secureBrokerSettings are the same on every node of the secure stack.
var secureBrokerSettings = []setting{
	{"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_PLAINTEXT_HOST:SASL_PLAINTEXT", "both client listeners sign in; the quorum's stays inside the network"},
	{"KAFKA_INTER_BROKER_LISTENER_NAME", "SASL_PLAINTEXT", "the nodes replicate over SASL, as admin"},
	{"KAFKA_SASL_ENABLED_MECHANISMS", access.Mechanism, "the principals' mechanism"},
	{"KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL", access.Mechanism, "the nodes sign in to each other as the clients do"},
	{"KAFKA_OPTS", kafkaLogin, "the JAAS file of the SASL listeners; the image requires KAFKA_OPTS with SASL"},
	{"KAFKA_AUTHORIZER_CLASS_NAME", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "the brokers check the ACLs (KRaft's authorizer)"},
	{"KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND", "false", "what no ACL allows is denied"},
	{"KAFKA_SUPER_USERS", "User:" + access.Admin + ";User:ANONYMOUS", "admin runs the tools; ANONYMOUS is the quorum, on the PLAINTEXT controller listener"},
}

// clientListenersSignIn: every listener a client uses is SASL_PLAINTEXT, the
// brokers' among themselves too, and the controller listener, where
// ANONYMOUS is a super user, is never published.
func clientListenersSignIn(c *checker, name string, svc types.ServiceConfig) {
	protocols := map[string]string{}
	for _, pair := range splitList(env(svc, "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")) {
		listener, protocol, _ := strings.Cut(pair, ":")
		protocols[strings.ToUpper(listener)] = strings.ToUpper(protocol)
	}
	protocol := func(listener string) string { return cmp.Or(protocols[listener], listener) }
	controllers := splitList(strings.ToUpper(env(svc, "KAFKA_CONTROLLER_LISTENER_NAMES")))
	seen := map[string]bool{}
	for _, key := range []string{"KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"} {
		for _, l := range splitList(env(svc, key)) {
			listener, address, _ := strings.Cut(l, "://")
			listener = strings.ToUpper(listener)
			if slices.Contains(controllers, listener) {
				port, _ := strconv.Atoi(address[strings.LastIndex(address, ":")+1:])
				for _, p := range svc.Ports {
					if int(p.Target) == port {
						c.fail("security", "%s publishes its controller listener %s, where anyone is ANONYMOUS, a super user", name, l)
					}
				}
				continue
			}
			if p := protocol(listener); p != saslProtocol && !seen[listener] {
				seen[listener] = true
				c.fail("security", "%s's listener %s is %s: every listener a client uses must sign its clients in (%s)", name, listener, p, saslProtocol)
			}
		}
	}
	if l := strings.ToUpper(env(svc, "KAFKA_INTER_BROKER_LISTENER_NAME")); protocol(l) != saslProtocol {
		c.fail("security", "%s replicates over its listener %s, which is %s: the nodes sign in to each other (%s)", name, l, protocol(l), saslProtocol)
	}
}

// The patterns the secure stack's checks look for, compiled once.
var (
	commandConfig = regexp.MustCompile(`--command-config[ =](\S+)`)
	passwordFile  = regexp.MustCompile(`file\s*=\s*"([^"]+)"`)
	jaasConfig    = regexp.MustCompile(`-Djava\.security\.auth\.login\.config=(\S+)`)
)

// addSCRAM is a SCRAM credential that `kafka-storage format` writes.
var addSCRAM = regexp.MustCompile(`--add-scram[ =]+['"]?(SCRAM-SHA-(?:256|512))=\[name=([^,\]]+),password=([^,\]'"]*)\]`)

// formatsCredentials: the node formats an empty volume with every
// principal's SCRAM credential, then starts as the image does.
func formatsCredentials(c *checker, name string, svc types.ServiceConfig) {
	script := strings.Join(slices.Concat(svc.Entrypoint, svc.Command), " ")
	for _, part := range []struct{ text, why string }{
		{"meta.properties", "it formats an empty volume only"},
		{"kafka-storage format", "the credentials go in when the storage is formatted, before any broker needs them"},
		{"$CLUSTER_ID", "it formats for the stack's one cluster"},
		{"exec /etc/confluent/docker/run", "then it starts as the image does"},
	} {
		if !strings.Contains(script, part.text) {
			c.fail("security", "%s's command does not say %q: %s", name, part.text, part.why)
		}
	}
	got := map[string]string{} // principal -> password
	for _, m := range addSCRAM.FindAllStringSubmatch(script, -1) {
		if m[1] == access.Mechanism {
			got[m[2]] = m[3]
		}
	}
	for _, p := range access.Principals() {
		switch pass, ok := got[p]; {
		case !ok:
			c.fail("security", "%s formats its storage without a %s credential for %s, who could never sign in", name, access.Mechanism, p)
		case pass != access.DevPassword(p):
			c.fail("security", "%s formats %s's credential with a password other than the one %[2]s signs in with", name, p)
		}
	}
}

// brokersSignInAsAdmin: the SASL listeners' JAAS file, KAFKA_OPTS's, has
// the SCRAM login of admin, the brokers' own among themselves.
func brokersSignInAsAdmin(c *checker, name string, svc types.ServiceConfig) {
	content, ok := c.loginFile(name, svc, "KAFKA_OPTS")
	if !ok {
		return
	}
	section, found := jaasSection(content, "KafkaServer")
	switch user := jaasUser(section); {
	case !found:
		c.fail("security", "%s's JAAS file has no KafkaServer section: its SASL listeners could not start", name)
	case !strings.Contains(section, scramLoginModule):
		c.fail("security", "%s's KafkaServer login is not %s", name, scramLoginModule)
	case user != access.Admin:
		c.fail("security", "%s's brokers sign in to each other as %q, want %s: replication needs a super user", name, user, access.Admin)
	}
}

// brokerHealthSignsIn: the health check asks the node's own listener, signed
// in as admin, so healthy means the node lets principals in.
func brokerHealthSignsIn(c *checker, name string, svc types.ServiceConfig) {
	test := healthTest(svc)
	if !strings.Contains(test, "--bootstrap-server "+name+":29092") {
		c.fail("health", "%s's health check does not ask %s:29092, its in-network listener", name, name)
	}
	m := commandConfig.FindStringSubmatch(test)
	if m == nil {
		c.fail("health", "%s's health check does not sign in (--command-config): on a SASL listener it never passes", name)
		return
	}
	content, err := c.mounted(svc, m[1])
	if err != nil {
		c.fail("health", "%s's health check signs in with %s: %v", name, m[1], err)
		return
	}
	props := properties(content)
	if props["security.protocol"] != saslProtocol || props["sasl.mechanism"] != access.Mechanism || jaasUser(props["sasl.jaas.config"]) == "" {
		c.fail("health", "%s's health check signs in with %s, which must say security.protocol=%s, sasl.mechanism=%s and a sasl.jaas.config login", name, m[1], saslProtocol, access.Mechanism)
	}
}

// registryUsers: the registry's JAAS file, SCHEMA_REGISTRY_OPTS's, has its
// realm's section, whose password file lists every principal with its dev
// password and a role the registry accepts, and no one else.
func registryUsers(c *checker, name string, svc types.ServiceConfig) {
	content, ok := c.loginFile(name, svc, "SCHEMA_REGISTRY_OPTS")
	if !ok {
		return
	}
	realm := env(svc, "SCHEMA_REGISTRY_AUTHENTICATION_REALM")
	section, found := jaasSection(content, realm)
	if !found {
		c.fail("security", "%s's JAAS file has no section %q, its realm (SCHEMA_REGISTRY_AUTHENTICATION_REALM)", name, realm)
		return
	}
	if !strings.Contains(section, propertyFileLogin) {
		c.fail("security", "%s's login is not %s, the login module of Jetty 12, the registry's Jetty", name, propertyFileLogin)
	}
	file := passwordFile.FindStringSubmatch(section)
	if file == nil {
		c.fail("security", "%s's login names no password file (file=\"...\")", name)
		return
	}
	users, err := c.mounted(svc, file[1])
	if err != nil {
		c.fail("security", "%s's password file %s: %v", name, file[1], err)
		return
	}
	roles := splitList(env(svc, "SCHEMA_REGISTRY_AUTHENTICATION_ROLES"))
	listed := map[string][]string{} // user -> password, roles
	for _, line := range strings.Split(users, "\n") {
		if user, rest, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(user, "#") {
			listed[strings.TrimSpace(user)] = splitList(rest)
		}
	}
	for _, p := range access.Principals() {
		switch entry, ok := listed[p]; {
		case !ok:
			c.fail("security", "%s's users lack %s, who could not use the registry", name, p)
		case len(entry) == 0 || entry[0] != access.DevPassword(p):
			c.fail("passwords", "%s's users give %s a password other than the one %[2]s signs in with", name, p)
		case !slices.ContainsFunc(entry[1:], func(r string) bool { return slices.Contains(roles, r) }):
			c.fail("security", "%s's users give %s no role of %v (SCHEMA_REGISTRY_AUTHENTICATION_ROLES), so it is refused", name, p, roles)
		}
	}
	principals := access.Principals()
	for _, user := range slices.Sorted(maps.Keys(listed)) {
		if !slices.Contains(principals, user) {
			c.fail("security", "%s's users list %q, who is no principal of infra/access", name, user)
		}
	}
}

// registryHealthSignsIn: with basic auth on, a health check that does not
// sign in gets 401 and the registry is never healthy.
func registryHealthSignsIn(c *checker, name string, svc types.ServiceConfig) {
	for _, login := range basicLogins(healthTest(svc)) {
		if slices.Contains(access.Principals(), login[0]) {
			return
		}
	}
	c.fail("health", "%s's health check sends no principal's basic auth (Authorization: Basic): it would get 401, never healthy", name)
}

// signsInAs: a shop container signs in as principal, its own.
func signsInAs(principal string) check {
	return func(c *checker, name string, svc types.ServiceConfig) {
		if user := env(svc, "KAFKA_USERNAME"); user != "" && user != principal {
			c.fail("security", "%s signs in as %s (KAFKA_USERNAME), want %s: its own principal, whose rights are what it needs (infra/access)", name, user, principal)
		}
	}
}

// loginFile is the content of the JAAS file that the JVM options in
// variable key name, mounted in svc.
func (c *checker) loginFile(name string, svc types.ServiceConfig, key string) (string, bool) {
	m := jaasConfig.FindStringSubmatch(env(svc, key))
	if m == nil {
		c.fail("security", "%s's %s names no JAAS file (-Djava.security.auth.login.config=...)", name, key)
		return "", false
	}
	content, err := c.mounted(svc, m[1])
	if err != nil {
		c.fail("security", "%s's JAAS file %s: %v", name, m[1], err)
		return "", false
	}
	return content, true
}

// jaasSections are the patterns of jaasSection, one per section name,
// compiled once: the checks ask for the same few sections on every node.
var jaasSections sync.Map // section name -> *regexp.Regexp

// jaasSection is what section name of a JAAS file says, between its braces.
func jaasSection(content, name string) (string, bool) {
	re, ok := jaasSections.Load(name)
	if !ok {
		re, _ = jaasSections.LoadOrStore(name, regexp.MustCompile(`(?s)(?:^|\s)`+regexp.QuoteMeta(name)+`\s*\{(.*?)\}\s*;`))
	}
	m := re.(*regexp.Regexp).FindStringSubmatch(content)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// jaasUser is the username of a JAAS login, or "".
func jaasUser(login string) string {
	if m := jaasLogin.FindStringSubmatch(login); m != nil {
		return m[1]
	}
	return ""
}

func healthTest(svc types.ServiceConfig) string {
	if svc.HealthCheck == nil {
		return ""
	}
	return strings.Join(svc.HealthCheck.Test, " ")
}

// properties parses a Java properties file of key=value lines.
func properties(content string) map[string]string {
	props := map[string]string{}
	for _, line := range strings.Split(content, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if key, value, ok := strings.Cut(line, "="); ok {
			props[strings.TrimSpace(key)] = strings.TrimSpace(value)
		}
	}
	return props
}
