// Package compose checks infra/docker-compose.yml, the shop's Docker stack,
// without Docker: it loads the file with the loader Docker Compose itself
// uses and reports every broken invariant of the cluster the README
// promises. Three KRaft nodes that form one cluster with a 3-voter quorum,
// replication 3 with min ISR 2, a registry and a UI that see all three
// brokers, pinned images, unique host ports, services wired to the
// in-network listeners and started only once what they need is healthy.
//
// The stack is never started where the project is built and tested, so this
// check is what keeps a hand edit of the compose file honest.
package compose

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/blackfriday-kafka/shop/services/platform"
)

// What the rest of the project relies on (CONTRACTS.md).
const (
	// HostBrokers is KAFKA_BROKERS for scripts on the host: the same as
	// `make run`, so one set of scripts serves both stacks.
	HostBrokers = "localhost:9092,localhost:9093,localhost:9094"
	// RegistryPort is the schema registry's port, in the network and on the host.
	RegistryPort = 8081
	// UIPort is Kafka UI's port on the host.
	UIPort = 8080
	// Brokers is the number of KRaft nodes, each a broker and a controller.
	Brokers = 3
)

// Broker settings every node must carry, as the Confluent image spells them.
var brokerSettings = []struct{ env, want, why string }{
	{"KAFKA_DEFAULT_REPLICATION_FACTOR", "3", "three copies of every record"},
	{"KAFKA_MIN_INSYNC_REPLICAS", "2", "acks=all waits for two copies"},
	{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3", "consumer offsets survive a broker"},
	{"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3", "transactions survive a broker"},
	{"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2", "transactions commit on two copies"},
	{"KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false", "topics are created on purpose"},
}

// Image repositories by role.
const (
	kafkaImage    = "confluentinc/cp-kafka"
	registryImage = "confluentinc/cp-schema-registry"
	confluentOrg  = "confluentinc/"
)

var uiImages = []string{"kafbat/kafka-ui", "provectuslabs/kafka-ui", "ghcr.io/kafbat/kafka-ui"}

// Load reads a compose file the way `docker compose -f path` does, with an
// empty environment so the result does not depend on the caller's shell.
func Load(ctx context.Context, path string) (*types.Project, error) {
	opts, err := options(path)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(ctx)
}

// LoadModel reads a compose file into its canonical YAML tree (anchors
// merged, variables substituted, paths absolute): the form to edit a copy of.
func LoadModel(ctx context.Context, path string) (map[string]any, error) {
	opts, err := options(path)
	if err != nil {
		return nil, err
	}
	return opts.LoadModel(ctx)
}

func options(path string) (*cli.ProjectOptions, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return cli.NewProjectOptions([]string{abs}, cli.WithWorkingDirectory(filepath.Dir(abs)))
}

// Stack is what Check learned about the stack's roles, for callers that go
// on checking other files (the README) against it.
type Stack struct {
	Project     *types.Project
	Brokers     []string // broker service names, sorted
	InNetwork   []string // the brokers' in-network addresses, such as kafka1:29092
	HostAddrs   []string // the brokers' host addresses, such as localhost:9092
	Registry    string   // registry service name
	RegistryURL string   // in-network registry URL
	UI          string   // Kafka UI service name
	TopicsJob   string   // the one-shot service that creates the topics

	published map[hostPortKey]string // host port -> the service publishing it
	problems  []string
}

type hostPortKey struct {
	port  int
	proto string
}

// PublishedBy names the service that publishes TCP port port on the host,
// or returns "" when none does.
func (s *Stack) PublishedBy(port int) string {
	return s.published[hostPortKey{port, "tcp"}]
}

// Check returns every invariant p breaks, one sentence each; none means the
// stack is what the README promises.
func Check(p *types.Project) []string {
	return Inspect(p).Problems()
}

// Inspect checks p and returns what it found, problems included.
func Inspect(p *types.Project) *Stack {
	s := &Stack{Project: p, published: map[hostPortKey]string{}}
	s.checkImages()
	s.checkPorts()
	s.checkBrokers()
	s.checkRegistry()
	s.checkUI()
	s.checkTopicsJob()
	s.checkShopServices()
	s.checkHealth()
	sort.Strings(s.problems) // grouped by their prefix, the same on every run
	return s
}

// Problems are the broken invariants, sorted.
func (s *Stack) Problems() []string { return s.problems }

func (s *Stack) fail(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// serviceNames returns the project's services in name order, so problems
// come out in the same order on every run.
func (s *Stack) serviceNames() []string {
	names := make([]string, 0, len(s.Project.Services))
	for name := range s.Project.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (s *Stack) servicesWithImage(repos ...string) []string {
	var out []string
	for _, name := range s.serviceNames() {
		repo, _ := splitImage(s.Project.Services[name].Image)
		if slices.Contains(repos, repo) {
			out = append(out, name)
		}
	}
	return out
}

// --- images -------------------------------------------------------------

// splitImage splits an image reference into repository and tag; the tag is
// empty when the reference has none, and "@digest" when it is pinned by digest.
func splitImage(image string) (repo, tag string) {
	if at := strings.Index(image, "@"); at >= 0 {
		return image[:at], image[at:]
	}
	slash := strings.LastIndex(image, "/")
	if colon := strings.LastIndex(image, ":"); colon > slash {
		return image[:colon], image[colon+1:]
	}
	return image, ""
}

func pinned(image string) error {
	_, tag := splitImage(image)
	switch {
	case image == "":
		return fmt.Errorf("has no image")
	case tag == "":
		return fmt.Errorf("image %q has no tag: pin a version", image)
	case tag == "latest":
		return fmt.Errorf("image %q is pinned to latest, which moves: pin a version", image)
	}
	return nil
}

func (s *Stack) checkImages() {
	confluent := map[string][]string{} // tag -> services
	for _, name := range s.serviceNames() {
		svc := s.Project.Services[name]
		if err := pinned(svc.Image); err != nil {
			s.fail("images: %s %v", name, err)
		}
		repo, tag := splitImage(svc.Image)
		if strings.HasPrefix(repo, confluentOrg) && tag != "" {
			confluent[tag] = append(confluent[tag], name)
		}
		if svc.Build != nil {
			s.checkDockerfile(name, svc.Build)
		} else if !s.pullable(svc) {
			s.fail("images: %s runs %s with pull_policy never, but no service builds it", name, svc.Image)
		}
	}
	if len(confluent) > 1 {
		var parts []string
		for tag, names := range confluent {
			parts = append(parts, fmt.Sprintf("%s on %s", strings.Join(names, ","), tag))
		}
		sort.Strings(parts)
		s.fail("images: Confluent images must share one platform version, found %s", strings.Join(parts, "; "))
	}
}

// pullable reports whether svc's image comes from a registry or from another
// service's build.
func (s *Stack) pullable(svc types.ServiceConfig) bool {
	if svc.PullPolicy != types.PullPolicyNever {
		return true
	}
	for _, other := range s.Project.Services {
		if other.Build != nil && other.Image == svc.Image {
			return true
		}
	}
	return false
}

// checkDockerfile requires every base image of a built service to be pinned.
func (s *Stack) checkDockerfile(service string, b *types.BuildConfig) {
	path := b.Dockerfile
	if path == "" {
		path = "Dockerfile"
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.Context, path)
	}
	f, err := os.Open(path)
	if err != nil {
		s.fail("images: %s builds from %s: %v", service, path, err)
		return
	}
	defer f.Close()
	stages := map[string]bool{}
	froms := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.EqualFold(fields[0], "FROM") {
			continue
		}
		froms++
		args := fields[1:]
		for len(args) > 0 && strings.HasPrefix(args[0], "--") { // --platform=...
			args = args[1:]
		}
		if len(args) == 0 {
			continue
		}
		base := args[0]
		if len(args) >= 3 && strings.EqualFold(args[1], "AS") {
			stages[strings.ToLower(args[2])] = true
		}
		if base == "scratch" || stages[strings.ToLower(base)] {
			continue
		}
		if err := pinned(base); err != nil {
			s.fail("images: %s builds from %s, whose base %v", service, filepath.Base(path), err)
		}
	}
	if froms == 0 {
		s.fail("images: %s builds from %s, which has no FROM line", service, path)
	}
}

// --- ports --------------------------------------------------------------

// checkPorts forbids publishing a host port twice (the second container
// would not start) and on other interfaces than the loopback one (nothing
// here has a password).
func (s *Stack) checkPorts() {
	for _, name := range s.serviceNames() {
		for _, port := range s.Project.Services[name].Ports {
			if port.Published != "" && port.HostIP != "127.0.0.1" {
				s.fail("ports: %s publishes %s on %q, want 127.0.0.1 only", name, port.Published, port.HostIP)
			}
			lo, hi, err := portRange(port.Published)
			if err != nil {
				s.fail("ports: %s publishes %q: %v", name, port.Published, err)
				continue
			}
			for n := lo; n <= hi && n > 0; n++ {
				key := hostPortKey{n, port.Protocol}
				if key.proto == "" {
					key.proto = "tcp"
				}
				if owner, dup := s.published[key]; dup {
					s.fail("ports: host port %d/%s is published twice, by %s and %s", n, key.proto, owner, name)
					continue
				}
				s.published[key] = name
			}
		}
	}
}

func portRange(published string) (lo, hi int, err error) {
	if published == "" {
		return 0, 0, nil // container port only, no host binding
	}
	a, b, isRange := strings.Cut(published, "-")
	if lo, err = strconv.Atoi(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, err
		}
	}
	return lo, hi, nil
}

// publishes reports whether svc publishes host port host to container port target.
func publishes(svc types.ServiceConfig, host, target int) bool {
	for _, p := range svc.Ports {
		if p.Published == strconv.Itoa(host) && int(p.Target) == target {
			return true
		}
	}
	return false
}

// --- brokers ------------------------------------------------------------

func env(svc types.ServiceConfig, name string) string {
	if v := svc.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// listeners parses "NAME://host:port,..." into name -> host:port.
func listeners(value string) map[string]string {
	out := map[string]string{}
	for _, l := range splitList(value) {
		name, addr, ok := strings.Cut(l, "://")
		if ok {
			out[name] = addr
		}
	}
	return out
}

func splitList(value string) []string {
	var out []string
	for _, part := range strings.Split(value, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func hostPort(addr string) (string, int) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return addr, 0
	}
	port, _ := strconv.Atoi(addr[i+1:])
	return addr[:i], port
}

// inNetworkName is how other containers reach svc: its hostname or its
// service name.
func inNetworkName(name string, svc types.ServiceConfig, host string) bool {
	return host == name || (svc.Hostname != "" && host == svc.Hostname)
}

func (s *Stack) checkBrokers() {
	s.Brokers = s.servicesWithImage(kafkaImage)
	if len(s.Brokers) != Brokers {
		s.fail("brokers: want %d Kafka nodes (%s), found %d: %v", Brokers, kafkaImage, len(s.Brokers), s.Brokers)
	}
	if len(s.Brokers) == 0 {
		return
	}
	var (
		clusterIDs = map[string][]string{}
		voterSets  = map[string][]string{}
		byNodeID   = map[int]string{}
	)
	for _, name := range s.Brokers {
		svc := s.Project.Services[name]
		roles := splitList(env(svc, "KAFKA_PROCESS_ROLES"))
		slices.Sort(roles)
		if !slices.Equal(roles, []string{"broker", "controller"}) {
			s.fail("brokers: %s has KAFKA_PROCESS_ROLES=%q, want broker,controller (KRaft combined mode)", name, env(svc, "KAFKA_PROCESS_ROLES"))
		}
		id, err := strconv.Atoi(env(svc, "KAFKA_NODE_ID"))
		if err != nil {
			s.fail("brokers: %s has no numeric KAFKA_NODE_ID (%q)", name, env(svc, "KAFKA_NODE_ID"))
		} else if other, dup := byNodeID[id]; dup {
			s.fail("brokers: %s and %s share node ID %d", other, name, id)
		} else {
			byNodeID[id] = name
		}
		cid := env(svc, "CLUSTER_ID")
		if cid == "" {
			s.fail("brokers: %s has no CLUSTER_ID, so it cannot format its storage", name)
		}
		clusterIDs[cid] = append(clusterIDs[cid], name)
		voters := env(svc, "KAFKA_CONTROLLER_QUORUM_VOTERS")
		voterSets[voters] = append(voterSets[voters], name)

		for _, set := range brokerSettings {
			if got := env(svc, set.env); !strings.EqualFold(got, set.want) {
				s.fail("brokers: %s has %s=%q, want %s (%s)", name, set.env, got, set.want, set.why)
			}
		}
		s.checkListeners(name, svc)
		s.checkDataVolume(name, svc)
	}
	if len(clusterIDs) > 1 {
		s.fail("brokers: the nodes disagree on CLUSTER_ID: %s", describeGroups(clusterIDs))
	}
	if len(voterSets) > 1 {
		s.fail("brokers: the nodes disagree on KAFKA_CONTROLLER_QUORUM_VOTERS: %s", describeGroups(voterSets))
	}
	for voters := range voterSets {
		s.checkVoters(voters, byNodeID)
	}
	sort.Strings(s.InNetwork)
	sort.Strings(s.HostAddrs)
	if got := strings.Join(s.HostAddrs, ","); got != HostBrokers {
		s.fail("brokers: host listeners are %q, want %q (the KAFKA_BROKERS of `make run` and the scripts)", got, HostBrokers)
	}
}

func describeGroups(groups map[string][]string) string {
	var parts []string
	for value, names := range groups {
		parts = append(parts, fmt.Sprintf("%s: %q", strings.Join(names, ","), value))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// checkVoters requires a quorum of every node: id@host:port for each node ID,
// at that node's in-network name and controller port.
func (s *Stack) checkVoters(voters string, byNodeID map[int]string) {
	entries := splitList(voters)
	if len(entries) != Brokers {
		s.fail("brokers: KAFKA_CONTROLLER_QUORUM_VOTERS %q has %d voters, want %d", voters, len(entries), Brokers)
	}
	for _, v := range entries {
		idText, addr, ok := strings.Cut(v, "@")
		id, err := strconv.Atoi(idText)
		if !ok || err != nil {
			s.fail("brokers: quorum voter %q is not id@host:port", v)
			continue
		}
		name, known := byNodeID[id]
		if !known {
			s.fail("brokers: quorum voter %q names node %d, which no broker has", v, id)
			continue
		}
		svc := s.Project.Services[name]
		host, port := hostPort(addr)
		controller := listeners(env(svc, "KAFKA_LISTENERS"))[env(svc, "KAFKA_CONTROLLER_LISTENER_NAMES")]
		_, cport := hostPort(controller)
		if !inNetworkName(name, svc, host) || port != cport || port == 0 {
			s.fail("brokers: quorum voter %q does not match %s's controller listener %q", v, name, controller)
		}
	}
	for id, name := range byNodeID {
		if !strings.Contains(","+voters+",", ","+strconv.Itoa(id)+"@") {
			s.fail("brokers: node %d (%s) is not a quorum voter", id, name)
		}
	}
}

// checkListeners requires an in-network listener that the brokers also use
// between themselves, and a host listener advertised as localhost on a port
// published to the same port.
func (s *Stack) checkListeners(name string, svc types.ServiceConfig) {
	bound := listeners(env(svc, "KAFKA_LISTENERS"))
	advertised := listeners(env(svc, "KAFKA_ADVERTISED_LISTENERS"))
	controllerName := env(svc, "KAFKA_CONTROLLER_LISTENER_NAMES")
	if _, ok := bound[controllerName]; !ok || controllerName == "" {
		s.fail("brokers: %s: KAFKA_CONTROLLER_LISTENER_NAMES=%q is not in KAFKA_LISTENERS", name, controllerName)
	}
	internal := env(svc, "KAFKA_INTER_BROKER_LISTENER_NAME")
	addr, ok := advertised[internal]
	host, port := hostPort(addr)
	_, boundPort := hostPort(bound[internal])
	switch {
	case !ok:
		s.fail("brokers: %s does not advertise its inter-broker listener %q", name, internal)
	case !inNetworkName(name, svc, host) || port == 0 || port != boundPort:
		s.fail("brokers: %s advertises %s=%q, want %s:<port of that listener>", name, internal, addr, name)
	default:
		s.InNetwork = append(s.InNetwork, addr)
	}
	hostListeners := 0
	for lname, addr := range advertised {
		host, port := hostPort(addr)
		if host != "localhost" {
			continue
		}
		hostListeners++
		_, boundPort := hostPort(bound[lname])
		if !publishes(svc, port, boundPort) {
			s.fail("brokers: %s advertises %s=%s but does not publish host port %d to its listener port %d", name, lname, addr, port, boundPort)
			continue
		}
		s.HostAddrs = append(s.HostAddrs, addr)
	}
	if hostListeners != 1 {
		s.fail("brokers: %s has %d listeners advertised on localhost, want 1", name, hostListeners)
	}
}

// checkDataVolume requires each node's log directory on its own named volume,
// so the data survives `make down` and `make up`.
func (s *Stack) checkDataVolume(name string, svc types.ServiceConfig) {
	dir := env(svc, "KAFKA_LOG_DIRS")
	if dir == "" {
		dir = "/var/lib/kafka/data" // the Confluent image's default
	}
	for _, v := range svc.Volumes {
		if v.Target != dir {
			continue
		}
		if v.Type != types.VolumeTypeVolume || v.Source == "" {
			s.fail("volumes: %s mounts %s from a %s %q, want a named volume", name, dir, v.Type, v.Source)
			return
		}
		if _, declared := s.Project.Volumes[v.Source]; !declared {
			s.fail("volumes: %s mounts volume %q, which is not declared", name, v.Source)
		}
		for _, other := range s.Brokers {
			if other == name {
				continue
			}
			for _, ov := range s.Project.Services[other].Volumes {
				if ov.Type == types.VolumeTypeVolume && ov.Source == v.Source && other < name {
					s.fail("volumes: %s and %s share volume %q", other, name, v.Source)
				}
			}
		}
		return
	}
	s.fail("volumes: %s keeps %s in the container: mount a named volume there", name, dir)
}

// --- registry and UI ------------------------------------------------------

func (s *Stack) sameBrokers(value string) bool {
	var got []string
	for _, b := range splitList(value) {
		if _, addr, ok := strings.Cut(b, "://"); ok {
			b = addr
		}
		got = append(got, b)
	}
	sort.Strings(got)
	return len(s.InNetwork) == Brokers && slices.Equal(got, s.InNetwork)
}

func (s *Stack) checkRegistry() {
	regs := s.servicesWithImage(registryImage)
	if len(regs) != 1 {
		s.fail("registry: want one %s, found %v", registryImage, regs)
		return
	}
	s.Registry = regs[0]
	svc := s.Project.Services[s.Registry]
	host := s.Registry
	if svc.Hostname != "" {
		host = svc.Hostname
	}
	s.RegistryURL = fmt.Sprintf("http://%s:%d", host, RegistryPort)
	if bs := env(svc, "SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"); !s.sameBrokers(bs) {
		s.fail("registry: SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS=%q, want all brokers %v", bs, s.InNetwork)
	}
	if l := env(svc, "SCHEMA_REGISTRY_LISTENERS"); !strings.HasSuffix(l, ":"+strconv.Itoa(RegistryPort)) {
		s.fail("registry: SCHEMA_REGISTRY_LISTENERS=%q, want one on port %d", l, RegistryPort)
	}
	if !publishes(svc, RegistryPort, RegistryPort) {
		s.fail("registry: %s does not publish host port %d", s.Registry, RegistryPort)
	}
	s.requireHealthy(s.Registry, s.Brokers...)
}

func (s *Stack) checkUI() {
	uis := s.servicesWithImage(uiImages...)
	if len(uis) != 1 {
		s.fail("ui: want one Kafka UI (%v), found %v", uiImages, uis)
		return
	}
	s.UI = uis[0]
	svc := s.Project.Services[s.UI]
	if got := env(svc, "KAFKA_CLUSTERS_0_SCHEMAREGISTRY"); got != s.RegistryURL || got == "" {
		s.fail("ui: KAFKA_CLUSTERS_0_SCHEMAREGISTRY=%q, want %q so Avro shows decoded", got, s.RegistryURL)
	}
	if bs := env(svc, "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"); !s.sameBrokers(bs) {
		s.fail("ui: KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS=%q, want all brokers %v", bs, s.InNetwork)
	}
	if !publishes(svc, UIPort, 8080) {
		s.fail("ui: %s does not publish host port %d", s.UI, UIPort)
	}
	s.requireHealthy(s.UI, append(slices.Clone(s.Brokers), s.Registry)...)
}

// --- the shop -------------------------------------------------------------

func command(svc types.ServiceConfig) string { return strings.Join(svc.Command, " ") }

func (s *Stack) checkTopicsJob() {
	for _, name := range s.serviceNames() {
		if command(s.Project.Services[name]) == "topics" {
			s.TopicsJob = name
		}
	}
	if s.TopicsJob == "" {
		s.fail("topics: no one-shot service runs `shop topics`")
		return
	}
	svc := s.Project.Services[s.TopicsJob]
	s.checkKafkaClient(s.TopicsJob, svc)
	s.requireHealthy(s.TopicsJob, s.Brokers...)
	if svc.Restart != "" && svc.Restart != types.RestartPolicyNo {
		s.fail("topics: %s has restart %q; a one-shot job must not restart", s.TopicsJob, svc.Restart)
	}
}

// checkKafkaClient requires a container's KAFKA_BROKERS (and its registry
// URL, when it has one) to name the in-network listeners: inside a
// container, localhost is the container itself.
func (s *Stack) checkKafkaClient(name string, svc types.ServiceConfig) {
	brokers := env(svc, "KAFKA_BROKERS")
	for _, b := range splitList(brokers) {
		if host, _ := hostPort(b); isLoopback(host) {
			s.fail("services: %s has KAFKA_BROKERS=%q: %s is the container itself, use the in-network listeners %v", name, brokers, b, s.InNetwork)
			return
		}
	}
	if !s.sameBrokers(brokers) {
		s.fail("services: %s has KAFKA_BROKERS=%q, want all brokers %v", name, brokers, s.InNetwork)
	}
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1" || host == "[::1]" || host == "0.0.0.0"
}

func (s *Stack) checkShopServices() {
	names := make([]string, 0, len(platform.DefaultPorts))
	for name := range platform.DefaultPorts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		port := platform.DefaultPorts[name]
		svc, ok := s.Project.Services[name]
		if !ok {
			s.fail("services: no %s service", name)
			continue
		}
		if got := command(svc); got != name {
			s.fail("services: %s runs `shop %s`, want `shop %s`", name, got, name)
		}
		if got := env(svc, "PORT"); got != strconv.Itoa(port) {
			s.fail("services: %s has PORT=%q, want %d", name, got, port)
		}
		if !publishes(svc, port, port) {
			s.fail("services: %s does not publish host port %d", name, port)
		}
		s.checkKafkaClient(name, svc)
		url := env(svc, "SCHEMA_REGISTRY_URL")
		if host, _ := hostPort(strings.TrimPrefix(url, "http://")); isLoopback(host) {
			s.fail("services: %s has SCHEMA_REGISTRY_URL=%q: that is the container itself, use %s", name, url, s.RegistryURL)
		} else if url != s.RegistryURL {
			s.fail("services: %s has SCHEMA_REGISTRY_URL=%q, want %s", name, url, s.RegistryURL)
		}
		s.requireHealthy(name, append(slices.Clone(s.Brokers), s.Registry)...)
		if s.TopicsJob != "" {
			if dep, ok := svc.DependsOn[s.TopicsJob]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
				s.fail("services: %s must depend on %s with condition %s", name, s.TopicsJob, types.ServiceConditionCompletedSuccessfully)
			}
		}
	}
}

// --- health ---------------------------------------------------------------

// requireHealthy requires name to start only once each of deps is healthy.
func (s *Stack) requireHealthy(name string, deps ...string) {
	svc := s.Project.Services[name]
	for _, dep := range deps {
		if dep == "" {
			continue
		}
		if d, ok := svc.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
			s.fail("health: %s must depend on %s with condition %s", name, dep, types.ServiceConditionHealthy)
		}
	}
}

// checkHealth requires a health check on every long-running service, since
// `make up` and depends_on wait for them; the one-shot job needs none.
func (s *Stack) checkHealth() {
	for _, name := range s.serviceNames() {
		if name == s.TopicsJob {
			continue
		}
		hc := s.Project.Services[name].HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
			s.fail("health: %s has no health check", name)
		}
	}
}
