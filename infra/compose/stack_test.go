// Package compose is tests only: they check infra/docker-compose.yml, the
// shop's Docker stack, and infra/docker-compose.secure.yml, its secure
// variant over it, without Docker. They load the files with the loader
// Docker Compose itself uses and compare them with the stacks stated below
// (secure_stack_test.go for the secure one): every service, what it must
// say and why. The stack is never started where the project is built and
// tested, so this check is what keeps a hand edit of the files honest.
package compose

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/blackfriday-kafka/shop/infra/access"
)

// The addresses the README, the Makefile and the scripts use.
const (
	HostBrokers = "localhost:9092,localhost:9093,localhost:9094" // KAFKA_BROKERS on the host, as for `make run`
	inNetwork   = "kafka1:29092,kafka2:29092,kafka3:29092"       // KAFKA_BROKERS in a container
	registryURL = "http://schema-registry:8081"                  // SCHEMA_REGISTRY_URL in a container
	shopImage   = "blackfriday-kafka/shop"                       // infra/Dockerfile, built by the topics job
)

var (
	brokers          = []string{"kafka1", "kafka2", "kafka3"}
	kafkaAndRegistry = []string{"kafka1", "kafka2", "kafka3", "schema-registry"}
)

// service is what the stack needs of one service. Check also requires of
// every service a place in the stack, an image pinned to a version (one for
// all of Confluent's; pinned bases for one built here, a build for one never
// pulled), and a health check unless it is a job: `make up` and depends_on
// wait for them.
type service struct {
	area    string    // where its problems are reported
	image   string    // the image's repository
	command string    // what it runs of the shop's image: `shop <command>`
	job     bool      // runs once, so never restarts and needs no health check
	ports   []string  // what it publishes, as host IP:host port:container port
	healthy []string  // the services it starts after, once they are healthy
	done    []string  // the jobs it starts after, once they completed
	mounts  []string  // what it mounts, as type source:target
	env     []setting // what its environment must say
	also    []check   // what else it must do, beyond what a table says
}

// check reports what service name, svc in the file, breaks of one rule.
type check func(c *checker, name string, svc types.ServiceConfig)

// with is s with the settings env in place of its own of the same names,
// and the others added.
func (s service) with(env ...setting) service {
	out := slices.Clone(s.env)
	for _, set := range env {
		if i := slices.IndexFunc(out, func(o setting) bool { return o.name == set.name }); i >= 0 {
			out[i] = set
		} else {
			out = append(out, set)
		}
	}
	s.env = out
	return s
}

// setting is an environment variable and its value; a list's items may come
// in any order.
type setting struct{ name, value, why string }

// The stack: every service, and what it needs.
var stack = map[string]service{
	"kafka1": broker(1), "kafka2": broker(2), "kafka3": broker(3),
	"schema-registry": {area: "registry", image: "confluentinc/cp-schema-registry", ports: local(8081), healthy: brokers, env: []setting{
		{"SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka1:29092,PLAINTEXT://kafka2:29092,PLAINTEXT://kafka3:29092", "the schemas live on all three brokers"},
		{"SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081", "the services, the UI and the host find it on 8081"},
	}},
	"kafka-ui": {area: "ui", image: "kafbat/kafka-ui", ports: local(8080), healthy: kafkaAndRegistry, env: []setting{
		{"KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS", inNetwork, "the UI shows all three brokers"},
		{"KAFKA_CLUSTERS_0_SCHEMAREGISTRY", registryURL, "Avro shows decoded"},
	}},
	"topics": {area: "topics", image: shopImage, command: "topics", job: true, healthy: brokers, env: []setting{
		{"KAFKA_BROKERS", inNetwork, "replication 3 needs all three brokers"},
	}},
	"schemas": {area: "schemas", image: shopImage, command: "schemas", job: true, healthy: []string{"schema-registry"}, env: []setting{
		{"SCHEMA_REGISTRY_URL", registryURL, "the one step that registers the schemas, before any service starts"},
	}},
	"mailpit": {area: "mail", image: "axllent/mailpit", ports: []string{"127.0.0.1:1025:1025", "127.0.0.1:8025:8025"}, env: []setting{
		{"MP_MAX_MESSAGES", "0", "every message stays: chaos and the tests count them by Message-ID"},
	}},
	"payment": shop("payment", 8000), "order": shop("order", 8001), "email": emailService(), "analytics": shop("analytics", 8003),
}

// emailService is the email service, delivering to the stack's Mailpit.
func emailService() service {
	s := shop("email", 8002)
	s.env = append(s.env, setting{"SMTP_ADDR", "mailpit:1025", "the confirmations go to the stack's Mailpit; in a container, localhost is the container"})
	return s
}

// broker is Kafka node n, a broker and a controller (KRaft combined mode).
func broker(n int) service {
	name, host, port := node(n)
	return service{area: "brokers", image: "confluentinc/cp-kafka", ports: local(port), mounts: []string{"volume " + name + "-data:/var/lib/kafka/data"}, env: append([]setting{
		{"KAFKA_NODE_ID", strconv.Itoa(n), "the quorum names the nodes by ID"},
		{"KAFKA_LISTENERS", fmt.Sprintf("PLAINTEXT://%s:29092,CONTROLLER://%[1]s:29093,PLAINTEXT_HOST://0.0.0.0:%d", name, port), "the network's, the quorum's, the host's"},
		{"KAFKA_ADVERTISED_LISTENERS", fmt.Sprintf("PLAINTEXT://%s:29092,PLAINTEXT_HOST://%s", name, host), "containers reach a node by name, the host on localhost"},
	}, brokerSettings...)}
}

// node is Kafka node n's name, its host listener's address and port.
func node(n int) (name, host string, port int) {
	name, host = fmt.Sprintf("kafka%d", n), splitList(HostBrokers)[n-1]
	port, _ = strconv.Atoi(host[strings.LastIndex(host, ":")+1:])
	return name, host, port
}

// brokerSettings are the same on every node, as the Confluent image spells them.
var brokerSettings = []setting{
	{"CLUSTER_ID", "0kMKn7ncRTWJwjnnJofGQw", "one cluster; the nodes' volumes are formatted with it"},
	{"KAFKA_PROCESS_ROLES", "broker,controller", "KRaft combined mode"},
	{"KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka1:29093,2@kafka2:29093,3@kafka3:29093", "one quorum of three voters, the nodes' controller listeners"},
	{"KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER", "the quorum's listener"},
	{"KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT", "the nodes replicate over the in-network listener"},
	{"KAFKA_DEFAULT_REPLICATION_FACTOR", "3", "three copies of every record"},
	{"KAFKA_MIN_INSYNC_REPLICAS", "2", "acks=all waits for two copies"},
	{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3", "consumer offsets survive a broker"},
	{"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3", "transactions survive a broker"},
	{"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2", "transactions commit on two copies"},
	{"KAFKA_ADD_PARTITIONS_TO_TXN_RETRY_BACKOFF_MAX_MS", "2000", "under transactions version 2 a first produce waits at the broker, not 5 s in the client"},
	{"KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false", "topics are created on purpose, never by a typo"},
	{"KAFKA_LOG_DIRS", "", "the data stays in /var/lib/kafka/data, on the node's volume"},
}

// shop is one of the shop's four services, on its HTTP port.
func shop(name string, port int) service {
	return service{area: "services", image: shopImage, command: name, ports: local(port), healthy: kafkaAndRegistry, done: []string{"topics", "schemas"}, env: []setting{
		{"PORT", strconv.Itoa(port), "the Makefile, the README and the scripts use it"},
		{"KAFKA_BROKERS", inNetwork, "all three brokers; in a container, localhost is the container"},
		{"SCHEMA_REGISTRY_URL", registryURL, "the stack's registry; in a container, localhost is the container"},
	}}
}

// local publishes port on the host's loopback interface only: nothing here has a password.
func local(port int) []string { return []string{fmt.Sprintf("127.0.0.1:%d:%d", port, port)} }

// Load reads compose files the way `docker compose -f path -f ...` does,
// each over the ones before it, with an empty environment so the result
// does not depend on the caller's shell.
func Load(ctx context.Context, paths ...string) (*types.Project, error) {
	opts, err := projectOptions(paths...)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(ctx)
}

// projectOptions are the loader's options for paths, as Docker Compose
// takes them: absolute, relative paths inside resolved from the first
// file's directory.
func projectOptions(paths ...string) (*cli.ProjectOptions, error) {
	var abs []string
	for _, path := range paths {
		a, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		abs = append(abs, a)
	}
	if len(abs) == 0 {
		return nil, fmt.Errorf("no compose file")
	}
	return cli.NewProjectOptions(abs, cli.WithWorkingDirectory(filepath.Dir(abs[0])))
}

// Check returns what p breaks of the stack, one sentence each, sorted;
// none means the stack is what the README promises.
func Check(p *types.Project) []string { return checkStack(p, stack) }

// CheckSecure is Check for the secure stack: docker-compose.secure.yml over
// docker-compose.yml, as `SECURE=1 make up` runs them.
func CheckSecure(p *types.Project) []string { return checkStack(p, secureStack) }

func checkStack(p *types.Project, stated map[string]service) []string {
	c := &checker{Project: p}
	for name, want := range stated {
		c.compare(name, want)
	}
	confluent := map[string][]string{} // tag -> services
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		if _, ok := stated[name]; !ok {
			c.fail("services", "%s is not part of the stack: state what it needs in infra/compose/stack_test.go", name)
		}
		if repo, tag := splitImage(p.Services[name].Image); strings.HasPrefix(repo, "confluentinc/") {
			confluent[tag] = append(confluent[tag], name)
		}
	}
	if len(confluent) > 1 {
		c.fail("images", "Confluent images must share one platform version, found %v (Confluent releases them as one platform)", confluent)
	}
	c.passwords()
	slices.Sort(c.problems) // grouped by area, the same on every run
	// One text may hold the same wrong password twice, which reads as the
	// same sentence: say it once.
	return slices.Compact(c.problems)
}

type checker struct {
	*types.Project
	problems []string
}

func (c *checker) fail(area, format string, args ...any) {
	c.problems = append(c.problems, area+": "+fmt.Sprintf(format, args...))
}

// compare reports how service name differs from want.
func (c *checker) compare(name string, want service) {
	svc, ok := c.Services[name]
	if !ok {
		c.fail(want.area, "no %s service", name)
		return
	}
	c.pinned(name, "image", svc.Image)
	if repo, _ := splitImage(svc.Image); repo != want.image {
		c.fail("images", "%s runs %q, want an image of %s", name, svc.Image, want.image)
	}
	builds := func(b types.ServiceConfig) bool { return b.Build != nil && b.Image == svc.Image }
	switch {
	case svc.Build != nil:
		c.pinnedBases(name, svc.Build)
	case svc.PullPolicy == types.PullPolicyNever && !slices.ContainsFunc(slices.Collect(maps.Values(c.Services)), builds):
		c.fail("images", "%s runs %s with pull_policy never, but no service builds it", name, svc.Image)
	}
	if got := strings.Join(svc.Command, " "); got != want.command && want.command != "" {
		c.fail(want.area, "%s runs `shop %s`, want `shop %s`", name, got, want.command)
	}
	for _, set := range want.env {
		if got := env(svc, set.name); !sameItems(got, set.value) {
			c.fail(want.area, "%s has %s=%q, want %s (%s)", name, set.name, redact(set.name, got), cmp.Or(set.value, "it unset"), set.why)
		}
	}
	ports := published(svc)
	if slices.Sort(ports); !slices.Equal(ports, want.ports) { // the table lists them sorted
		c.fail("ports", "%s publishes %v, want %v (on 127.0.0.1 only: nothing here has a password)", name, ports, want.ports)
	}
	for _, dep := range want.healthy {
		if svc.DependsOn[dep].Condition != types.ServiceConditionHealthy {
			c.fail("health", "%s must depend on %s with condition %s", name, dep, types.ServiceConditionHealthy)
		}
	}
	for _, dep := range want.done {
		if svc.DependsOn[dep].Condition != types.ServiceConditionCompletedSuccessfully {
			c.fail(want.area, "%s must depend on %s with condition %s", name, dep, types.ServiceConditionCompletedSuccessfully)
		}
	}
	switch hc := svc.HealthCheck; {
	case want.job && svc.Restart != "" && svc.Restart != types.RestartPolicyNo:
		c.fail(want.area, "%s has restart %q; a one-shot job must not restart", name, svc.Restart)
	case !want.job && (hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE"):
		c.fail("health", "%s has no health check", name)
	}
	var mounts []string
	for _, v := range svc.Volumes {
		mounts = append(mounts, fmt.Sprintf("%s %s:%s", v.Type, v.Source, v.Target))
	}
	if slices.Sort(mounts); !slices.Equal(mounts, want.mounts) {
		c.fail("volumes", "%s mounts %v, want %v (a node's data survives `make down` on a volume of its own)", name, mounts, want.mounts)
	}
	for _, also := range want.also {
		also(c, name, svc)
	}
}

// published is what svc publishes, as host IP:host port:container port,
// in the file's order.
func published(svc types.ServiceConfig) (out []string) {
	for _, p := range svc.Ports {
		out = append(out, fmt.Sprintf("%s:%s:%d", p.HostIP, p.Published, p.Target))
	}
	return out
}

// mounted is the content of the config svc mounts at target.
func (c *checker) mounted(svc types.ServiceConfig, target string) (string, error) {
	for _, ref := range svc.Configs {
		if cmp.Or(ref.Target, "/"+ref.Source) != target {
			continue
		}
		cfg, ok := c.Configs[ref.Source]
		switch {
		case !ok:
			return "", fmt.Errorf("config %s, mounted at %s, is not defined", ref.Source, target)
		case cfg.File != "":
			data, err := os.ReadFile(cfg.File)
			return string(data), err
		}
		return cfg.Content, nil
	}
	return "", fmt.Errorf("no config is mounted at %s", target)
}

// Credentials as the files spell them: a JAAS login, a SCRAM credential at
// format, an HTTP basic auth header; then any password left.
var (
	jaasLogin   = regexp.MustCompile(`username\s*=\s*"([^"]*)"\s+password\s*=\s*"([^"]*)"`)
	scramLogin  = regexp.MustCompile(`name=([^,\]\s'"]+),password=([^,\]\s'"]+)`)
	basicLogin  = regexp.MustCompile(`Basic\s+([A-Za-z0-9+/]+=*)`)
	anyPassword = regexp.MustCompile(`(?i)password\s*[=:]\s*"?([^"\s,;\]']+)`)
)

// basicLogins are the user and password of each HTTP basic auth in text.
func basicLogins(text string) [][2]string {
	var out [][2]string
	for _, m := range basicLogin.FindAllStringSubmatch(text, -1) {
		if raw, err := base64.StdEncoding.DecodeString(m[1]); err == nil {
			user, pass, _ := strings.Cut(string(raw), ":")
			out = append(out, [2]string{user, pass})
		}
	}
	return out
}

// passwords reports every password the files hold that is not a dev one, a
// principal's <name>-secret (infra/access), that principal's where the
// file says whose. A real deployment passes its own through the
// environment; none belongs in these files. The reports never say the
// password.
func (c *checker) passwords() {
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		svc := c.Services[name]
		texts := map[string]string{
			"command":    strings.Join(svc.Command, " "),
			"entrypoint": strings.Join(svc.Entrypoint, " "),
		}
		if svc.HealthCheck != nil {
			texts["health check"] = strings.Join(svc.HealthCheck.Test, " ")
		}
		for key, value := range svc.Environment {
			if value == nil {
				continue
			}
			texts["environment "+key] = *value
			if base, ok := strings.CutSuffix(strings.ToUpper(key), "PASSWORD"); ok && *value != "" {
				c.credential(name, "environment "+key, env(svc, base+"USERNAME"), *value)
			}
		}
		c.scan(name, texts)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Configs)) {
		c.scan("config "+name, map[string]string{"content": c.Configs[name].Content})
	}
}

func (c *checker) scan(owner string, texts map[string]string) {
	for _, where := range slices.Sorted(maps.Keys(texts)) {
		text := texts[where]
		for _, login := range []*regexp.Regexp{jaasLogin, scramLogin} {
			for _, m := range login.FindAllStringSubmatch(text, -1) {
				c.credential(owner, where, m[1], m[2])
			}
			text = login.ReplaceAllString(text, "")
		}
		for _, login := range basicLogins(text) {
			c.credential(owner, where+" (basic auth)", login[0], login[1])
		}
		for _, m := range anyPassword.FindAllStringSubmatch(text, -1) {
			c.credential(owner, where, "", m[1])
		}
	}
}

// redact is the value of variable name with its passwords hidden, for a
// report: the files' dev passwords are no secret, but one that is wrong may
// be real.
func redact(name, value string) string {
	if strings.HasSuffix(strings.ToUpper(name), "PASSWORD") && value != "" {
		return "***"
	}
	return anyPassword.ReplaceAllStringFunc(value, func(m string) string {
		return m[:len(m)-len(anyPassword.FindStringSubmatch(m)[1])] + "***"
	})
}

// credential reports pass unless it is user's dev password, or, for no
// user, some principal's.
func (c *checker) credential(owner, where, user, pass string) {
	principals := access.Principals()
	switch {
	case user != "" && !slices.Contains(principals, user):
		c.fail("passwords", "%s signs in as %q in its %s, which is no principal of infra/access %v", owner, user, where, principals)
	case user != "" && pass != access.DevPassword(user):
		c.fail("passwords", "%s has a password for %s in its %s that is not %[2]s's dev one (%[2]s-secret): a real deployment passes its own through the environment (KAFKA_USERNAME, KAFKA_PASSWORD), never in this file", owner, user, where)
	case user == "" && !slices.ContainsFunc(principals, func(p string) bool { return pass == access.DevPassword(p) }):
		c.fail("passwords", "%s has a password in its %s that is no principal's dev one (<name>-secret): a real deployment passes its own through the environment, never in this file", owner, where)
	}
}

// pinned reports image unless it is pinned to a version that does not move.
func (c *checker) pinned(name, what, image string) {
	switch _, tag := splitImage(image); tag {
	case "":
		c.fail("images", "%s %s %q has no tag: pin a version", name, what, image)
	case "latest":
		c.fail("images", "%s %s %q is pinned to latest, which moves: pin a version", name, what, image)
	}
}

var fromLine = regexp.MustCompile(`(?mi)^[ \t]*FROM[ \t]+(?:--\S+[ \t]+)*(\S+)(?:[ \t]+AS[ \t]+(\S+))?`)

// pinnedBases reports the base images of b's Dockerfile that are not pinned;
// a base that names an earlier stage is that stage.
func (c *checker) pinnedBases(name string, b *types.BuildConfig) {
	path := cmp.Or(b.Dockerfile, "Dockerfile")
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.Context, path)
	}
	data, err := os.ReadFile(path)
	froms := fromLine.FindAllStringSubmatch(string(data), -1)
	if err != nil {
		c.fail("images", "%s builds from %v", name, err)
	} else if len(froms) == 0 {
		c.fail("images", "%s builds from %s, which has no FROM line", name, path)
	}
	stages := map[string]bool{"scratch": true}
	for _, from := range froms {
		if !stages[strings.ToLower(from[1])] {
			c.pinned(name, "builds from "+filepath.Base(path)+", whose base image", from[1])
		}
		stages[strings.ToLower(from[2])] = from[2] != ""
	}
}

func env(svc types.ServiceConfig, name string) string {
	if v := svc.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func splitList(value string) (out []string) {
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// sameItems reports whether two lists hold the same items, in any order.
func sameItems(a, b string) bool {
	sorted := func(list string) string { return strings.Join(slices.Sorted(slices.Values(splitList(list))), ",") }
	return strings.EqualFold(sorted(a), sorted(b))
}

// splitImage splits an image reference into repository and tag; the tag is
// empty when there is none, and "@digest" when pinned by digest.
func splitImage(image string) (repo, tag string) {
	if at := strings.Index(image, "@"); at >= 0 {
		return image[:at], image[at:]
	}
	if colon := strings.LastIndex(image, ":"); colon > strings.LastIndex(image, "/") {
		return image[:colon], image[colon+1:]
	}
	return image, ""
}
