package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
)

// Users are the project registry's users, each with its password: what
// `shop registry` asks for with HTTP basic auth. They print with their
// names only, so no %v of a Config, no log line and no JSON shows a
// password.
type Users map[string]string

// Names are the users' names, sorted.
func (u Users) Names() []string { return slices.Sorted(maps.Keys(u)) }

// String is the names, without the passwords.
func (u Users) String() string {
	if len(u) == 0 {
		return "none"
	}
	return strings.Join(u.Names(), ",") + " (passwords redacted)"
}

// GoString is String, for %#v.
func (u Users) GoString() string { return u.String() }

// LogValue is String, for log/slog.
func (u Users) LogValue() slog.Value { return slog.StringValue(u.String()) }

// MarshalJSON is the names.
func (u Users) MarshalJSON() ([]byte, error) { return json.Marshal(u.Names()) }

// registryUsers reads the registry's users: REGISTRY_USERS_FILE names a
// file of "user:password" lines (blank lines and lines starting with #
// skipped), REGISTRY_USERS holds "user:password" pairs separated by
// commas. At most one of them; none leaves the registry open. Errors name
// the entry, never its password.
func registryUsers(getenv func(string) string) (Users, error) {
	file, list := getenv("REGISTRY_USERS_FILE"), getenv("REGISTRY_USERS")
	switch {
	case file != "" && list != "":
		return nil, fmt.Errorf("REGISTRY_USERS_FILE and REGISTRY_USERS: give one of them")
	case file != "":
		text, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("REGISTRY_USERS_FILE=%q: %w", file, err)
		}
		return parseUsers(fmt.Sprintf("REGISTRY_USERS_FILE=%q: line", file), strings.Split(string(text), "\n"))
	case list != "":
		return parseUsers("REGISTRY_USERS: entry", strings.Split(list, ","))
	}
	return nil, nil
}

func parseUsers(where string, entries []string) (Users, error) {
	users := Users{}
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" || strings.HasPrefix(e, "#") {
			continue
		}
		name, pass, ok := strings.Cut(e, ":")
		name = strings.TrimSpace(name)
		switch {
		case !ok || name == "" || pass == "":
			return nil, fmt.Errorf("%s %d: want user:password", where, i+1)
		case users[name] != "":
			return nil, fmt.Errorf("%s %d: user %s given twice", where, i+1, name)
		}
		users[name] = pass
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s: no user", strings.TrimSuffix(strings.TrimSuffix(where, " line"), " entry"))
	}
	return users, nil
}
