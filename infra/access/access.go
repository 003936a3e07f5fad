// Package access is who may do what on the shop's cluster in secure mode:
// a principal per service, authenticated with SASL/SCRAM-SHA-512, and the
// ACLs each needs, nothing more. One table, read by the embedded cluster
// (its users and ACLs), by `shop acls` (which creates them on a real
// cluster, idempotently) and by the README.
package access

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/blackfriday-kafka/shop/infra"
	"github.com/blackfriday-kafka/shop/schemas"
)

// Mechanism is the SASL mechanism of every principal.
const Mechanism = "SCRAM-SHA-512"

// Admin is the principal of the operators' tools: topics, ACLs, schemas,
// chaos and bench. It is a super user, as Kafka's own admin is.
const Admin = "admin"

// DevPassword is a principal's password in the dev stacks (make run,
// make kafka-up, make up): a real deployment passes its own.
func DevPassword(principal string) string { return principal + "-secret" }

// Grant is one line of the table: a principal may do ops on a resource.
type Grant struct {
	Resource kmsg.ACLResourceType
	Name     string
	Prefixed bool // Name is a prefix
	Ops      []kmsg.ACLOperation
}

var (
	read      = []kmsg.ACLOperation{kmsg.ACLOperationRead}
	write     = []kmsg.ACLOperation{kmsg.ACLOperationWrite}
	readWrite = []kmsg.ACLOperation{kmsg.ACLOperationRead, kmsg.ACLOperationWrite}
	describe  = []kmsg.ACLOperation{kmsg.ACLOperationDescribe}
	// A transactional ID is written (InitProducerID, AddPartitionsToTxn,
	// EndTxn) and described (FindCoordinator).
	transact = []kmsg.ACLOperation{kmsg.ACLOperationWrite, kmsg.ACLOperationDescribe}
)

func topic(name string, ops []kmsg.ACLOperation) Grant {
	return Grant{Resource: kmsg.ACLResourceTypeTopic, Name: name, Ops: ops}
}

func group(name string, ops []kmsg.ACLOperation) Grant {
	return Grant{Resource: kmsg.ACLResourceTypeGroup, Name: name, Ops: ops}
}

func transactionalIDs(prefix string, ops []kmsg.ACLOperation) Grant {
	return Grant{Resource: kmsg.ACLResourceTypeTransactionalId, Name: prefix, Prefixed: true, Ops: ops}
}

// Table is what each principal may do. (READ includes DESCRIBE, and WRITE
// too, as Kafka's authorizer has it.)
var Table = map[string][]Grant{
	"payment": {
		topic(schemas.Payments.Name, write),
		{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Ops: []kmsg.ACLOperation{kmsg.ACLOperationIdempotentWrite}},
		topic(schemas.PaymentRequests.Name, readWrite), // what it answered to each Idempotency-Key
	},
	"order": {
		topic(schemas.Payments.Name, read),
		group(schemas.Group("order"), read),
		topic(schemas.Orders.Name, readWrite), // its view, and the memory of what it ordered
		topic(schemas.PaymentDLQ.Name, write),
		topic(schemas.Duplicates.Name, write),
		topic(schemas.OrderViewCheckpoints.Name, readWrite),
		transactionalIDs(schemas.TransactionalID("order", ""), transact),
		transactionalIDs(schemas.OrderViewCheckpoints.Name+"-", transact),
	},
	"email": {
		topic(schemas.Orders.Name, read),
		group(schemas.Group("email"), read),
		topic(schemas.Emails.Name, readWrite), // its view
		topic(schemas.OrderDLQ.Name, write),
		topic(schemas.EmailViewCheckpoints.Name, readWrite),
		transactionalIDs(schemas.TransactionalID("email", ""), transact),
		transactionalIDs(schemas.EmailViewCheckpoints.Name+"-", transact),
		// The delivery loop: email-sent in a group of its own, the
		// delivery records and smtp-rejected dead letters with an
		// idempotent producer.
		group(schemas.DeliveryGroup, read),
		topic(schemas.EmailDeliveries.Name, readWrite),
		{Resource: kmsg.ACLResourceTypeCluster, Name: "kafka-cluster", Ops: []kmsg.ACLOperation{kmsg.ACLOperationIdempotentWrite}},
	},
	"analytics": {
		topic(schemas.Payments.Name, read),
		topic(schemas.Orders.Name, read),
		topic(schemas.Emails.Name, read),
		topic(schemas.PaymentDLQ.Name, read),
		topic(schemas.OrderDLQ.Name, read),
		topic(schemas.Duplicates.Name, read),
		topic(schemas.EmailDeliveries.Name, read), // the undelivered count
		group(schemas.Group("analytics"), read),   // it publishes its position there
		// The dashboard: the stages' groups and producers, seen, not touched.
		group(schemas.Group("order"), describe),
		group(schemas.Group("email"), describe),
		group(schemas.DeliveryGroup, describe),
		transactionalIDs(schemas.TransactionalID("order", ""), describe),
		transactionalIDs(schemas.TransactionalID("email", ""), describe),
		// Its own state: the checkpoints of its figures.
		topic(schemas.AnalyticsCheckpoints.Name, readWrite),
		transactionalIDs(schemas.AnalyticsCheckpoints.Name+"-", transact),
	},
}

// Principals are the service principals and the admin, in a fixed order:
// the services in the order of the flow, any other principal of Table by
// name, then the admin.
func Principals() []string { return slices.Clone(principals) }

// principals is Principals, computed once from Table; callers get a copy
// so none can reorder it for the others.
var principals = func() []string {
	names := []string{"payment", "order", "email", "analytics"}
	for _, name := range slices.Sorted(maps.Keys(Table)) { // sorted: map order is random
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return append(names, Admin)
}()

// Embedded are the options of a kfake cluster in secure mode: SASL, ACLs
// checked, a user per principal with its ACLs, admin a super user.
func Embedded(password func(principal string) string) []kfake.Opt {
	opts := []kfake.Opt{kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser(Mechanism, Admin, password(Admin))}
	for _, p := range Principals() {
		if p == Admin {
			continue
		}
		var seeded []kfake.ACL
		for _, g := range Table[p] {
			pattern := kmsg.ACLResourcePatternTypeLiteral
			if g.Prefixed {
				pattern = kmsg.ACLResourcePatternTypePrefixed
			}
			for _, op := range g.Ops {
				seeded = append(seeded, kfake.ACL{Resource: g.Resource, Name: g.Name, Pattern: pattern, Operation: op, Allow: true})
			}
		}
		opts = append(opts, kfake.User(Mechanism, p, password(p), seeded...))
	}
	return opts
}

// Apply creates the table's ACLs on a cluster, as adm (the admin). Kafka
// keeps one copy of an ACL created twice: running it again changes nothing.
func Apply(ctx context.Context, adm *kadm.Client) error {
	for _, p := range Principals() {
		for _, g := range Table[p] { // a request a grant, all its operations
			ab := kadm.NewACLs().Allow("User:" + p).AllowHosts("*").Operations(g.Ops...)
			if g.Prefixed {
				ab = ab.ResourcePatternType(kadm.ACLPatternPrefixed)
			}
			switch g.Resource {
			case kmsg.ACLResourceTypeTopic:
				ab = ab.Topics(g.Name)
			case kmsg.ACLResourceTypeGroup:
				ab = ab.Groups(g.Name)
			case kmsg.ACLResourceTypeTransactionalId:
				ab = ab.TransactionalIDs(g.Name)
			case kmsg.ACLResourceTypeCluster:
				ab = ab.Clusters()
			}
			results, err := adm.CreateACLs(ctx, ab)
			if err != nil {
				return fmt.Errorf("create the ACLs of %s: %w", p, err)
			}
			for _, r := range results {
				if r.Err != nil {
					return fmt.Errorf("create an ACL of %s on %s %s: %w", p, g.Resource, g.Name, r.Err)
				}
			}
		}
	}
	return nil
}

// Print writes the table as the README shows it.
func Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRINCIPAL\tRESOURCE\tNAME\tOPERATIONS")
	for _, p := range Principals() {
		if p == Admin {
			fmt.Fprintf(tw, "%s\tcluster\t*\tsuper user (topics, ACLs, registry writes; the tools)\n", p)
			continue
		}
		for _, g := range Table[p] {
			name := g.Name
			if g.Prefixed {
				name += "*"
			}
			ops := make([]string, len(g.Ops))
			for i, op := range g.Ops {
				ops[i] = strings.ToUpper(op.String())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p, strings.ToLower(g.Resource.String()), name, strings.Join(ops, ", "))
		}
	}
	return tw.Flush()
}

// Stack is what the embedded stack needs in secure mode, its principals'
// passwords from password: the brokers' users and ACLs, the admin's
// credentials for its own clients, the registry's users.
func Stack(password func(principal string) string) *infra.Secure {
	return &infra.Secure{
		Cluster:  Embedded(password),
		Admin:    []kgo.Opt{kgo.SASL(scram.Auth{User: Admin, Pass: password(Admin)}.AsSha512Mechanism())},
		Registry: []sr.ClientOpt{sr.BasicAuth(Admin, password(Admin))},
		Users:    Users(password),
	}
}

// Users are the registry's users, every principal with its password from
// password: what the embedded stack's registry takes in secure mode.
func Users(password func(principal string) string) map[string]string {
	users := make(map[string]string, len(principals))
	for _, p := range principals {
		users[p] = password(p)
	}
	return users
}
