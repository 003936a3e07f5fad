package config

import (
	"encoding/json"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra/access"
)

// mechanisms are the SASL mechanisms KAFKA_SASL_MECHANISM may name, each
// with its client: FromEnv refuses any other, Connect signs in with it.
var mechanisms = map[string]func(user, pass string) sasl.Mechanism{
	"SCRAM-SHA-512": func(user, pass string) sasl.Mechanism {
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	},
	"SCRAM-SHA-256": func(user, pass string) sasl.Mechanism {
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	},
	"PLAIN": func(user, pass string) sasl.Mechanism { return plain.Auth{User: user, Pass: pass}.AsMechanism() },
}

// Credentials are a client's SASL credentials.
type Credentials struct {
	Mechanism, Username, Password string
}

// String is the credentials without the password, so that no %v of a
// Config, and no log line, ever shows it.
func (c Credentials) String() string {
	if c.Username == "" {
		return c.Mechanism
	}
	return c.Mechanism + " " + c.Username + " (password redacted)"
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

// LogValue is String, for log/slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON is String, for a Config written as JSON.
func (c Credentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// As is c for principal: a service's own credentials in secure mode.
func (c Config) As(principal string) Config {
	c.Principal = principal
	return c
}

// Credentials are the SASL credentials of c's principal: what the
// environment gave, else the dev stacks' (the principal's name, password
// <name>-secret), in secure mode; none otherwise.
func (c Config) Credentials() (Credentials, bool) {
	if !c.Secure && c.SASL.Username == "" {
		return Credentials{}, false
	}
	cred := c.SASL
	if cred.Mechanism == "" {
		cred.Mechanism = access.Mechanism
	}
	if cred.Username == "" {
		cred.Username = c.Principal
		if cred.Username == "" {
			cred.Username = access.Admin
		}
		cred.Password = access.DevPassword(cred.Username)
	}
	return cred, true
}

// Connect are the options every Kafka client of c's principal needs besides
// the seed brokers: a dialer that waits before it dials again a broker that
// refused, and the principal's SASL credentials, in secure mode.
func (c Config) Connect() []kgo.Opt {
	opts := []kgo.Opt{kgo.Dialer(newRedialer().dial)}
	cred, ok := c.Credentials()
	if !ok {
		return opts
	}
	mechanism, ok := mechanisms[cred.Mechanism]
	if !ok { // a Config built in code, unchecked: the principals' own
		mechanism = mechanisms[access.Mechanism]
	}
	return append(opts, kgo.SASL(mechanism(cred.Username, cred.Password)))
}

// Kafka are the options of a client of c's cluster: the seeds, then Connect.
func (c Config) Kafka() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.Connect()...)
}

// Registry are the options of a client of the schema registry: the same
// principal, with HTTP basic auth, in secure mode.
func (c Config) Registry() []sr.ClientOpt {
	cred, ok := c.Credentials()
	if !ok {
		return nil
	}
	return []sr.ClientOpt{sr.BasicAuth(cred.Username, cred.Password)}
}
