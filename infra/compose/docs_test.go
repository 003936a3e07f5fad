package compose

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The Docker walkthrough names services, addresses and ports of this file;
// each must exist, or a user's first try fails.
func TestDocsAgreeWithStack(t *testing.T) {
	p := load(t, composeFile)
	brokers := slices.Concat(splitList(inNetwork), splitList(HostBrokers))
	docs := map[string]string{
		"../../README.md": "With Docker", // its Docker section only
	}
	var (
		serviceRef  = regexp.MustCompile(`docker compose -f infra/docker-compose\.yml (?:exec|logs|run|restart|stop|start)((?:\s+-\S+)*)\s+([a-z0-9-]+)`)
		bootstrap   = regexp.MustCompile(`--bootstrap-server[ =](\S+)`)
		hostURL     = regexp.MustCompile(`https?://localhost:(\d+)`)
		registryRef = regexp.MustCompile(`schema\.registry\.url=(\S+)`)
	)
	checked := 0
	for path, section := range docs {
		lines, err := docLines(path, section)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) == 0 {
			continue
		}
		checked++
		for _, line := range lines {
			where := path + ": " + strings.TrimSpace(line)
			for _, m := range serviceRef.FindAllStringSubmatch(line, -1) {
				if _, ok := p.Services[m[2]]; !ok {
					t.Errorf("%s: no service %q in the compose file", where, m[2])
				}
			}
			for _, m := range bootstrap.FindAllStringSubmatch(line, -1) {
				for _, addr := range splitList(m[1]) {
					if !slices.Contains(brokers, addr) {
						t.Errorf("%s: %s is no broker listener (in-network %s, host %s)", where, addr, inNetwork, HostBrokers)
					}
				}
			}
			for _, m := range hostURL.FindAllStringSubmatch(line, -1) {
				port, _ := strconv.Atoi(m[1])
				if publishedBy(p, port) == "" {
					t.Errorf("%s: nothing publishes host port %d", where, port)
				}
			}
			for _, m := range registryRef.FindAllStringSubmatch(line, -1) {
				if m[1] != registryURL {
					t.Errorf("%s: registry URL %s, want %s", where, m[1], registryURL)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no Docker walkthrough to check (infra/README-docker.md or README.md's With Docker section)")
	}
}

// docLines returns the lines of a Markdown file, or of its section whose
// heading contains section, up to the next heading of the same level.
func docLines(path, section string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		lines   []string
		inFence bool
		level   int // heading level of the section while inside it, else 0
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(line, "#") {
			hashes := len(line) - len(strings.TrimLeft(line, "#"))
			switch {
			case level > 0 && hashes <= level:
				level = 0
			case level == 0 && section != "" && strings.Contains(line, section):
				level = hashes
			}
		}
		if section == "" || level > 0 {
			lines = append(lines, line)
		}
	}
	return lines, sc.Err()
}
