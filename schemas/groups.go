package schemas

// The consumer groups and transactional IDs of the shop, named once as the
// topics are: the stages, the delivery loop, the access table, the
// dashboard and the tools take them from here.

// Group is the consumer group of a service, such as order-service-group:
// the group of its exactly-once stage, or, for analytics, the one it
// publishes its position to for lag tools.
func Group(service string) string { return service + "-service-group" }

// TransactionalID is the transactional ID of an instance of a service's
// stage, such as order-service-2: stable per instance, so that a restarted
// instance fences the transactions its previous incarnation left open.
// With instance "" it is the prefix of all of the service's.
func TransactionalID(service, instance string) string {
	return service + "-service-" + instance
}

// DeliveryGroup is the consumer group of the email delivery loop: its
// committed offsets on email-sent are how far delivery has provably got.
const DeliveryGroup = "email-delivery-group"
