# Shared by scripts/kafka-up and scripts/kafka-down: where the local Apache
# Kafka cluster lives and how to recognise the processes they started.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_POM="$ROOT/infra/kafka/pom.xml"
KAFKA_CACHE="$ROOT/infra/kafka/.cache"
KAFKA_LIB="$KAFKA_CACHE/lib"
RUN_DIR="$ROOT/.run/kafka"
SHOP="$ROOT/bin/shop"
KAFKACHECK="$ROOT/bin/kafkacheck"
KAFKANET="$ROOT/bin/kafkanet"

NODES=(1 2 3)
client_port() { echo $((9091 + $1)); }     # 9092 9093 9094
controller_port() { echo $((19091 + $1)); } # 19092 19093 19094
REGISTRY_ADDR=127.0.0.1:8081
BROKER_LIST=127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094

# Network namespaces (as root, unless NETNS=0): each node in a namespace of
# its own, shop-kafka-N, at 10.209.0.N on a bridge of the host, shopkafka0
# (10.209.0.254), through a veth pair whose host side is shopkN. Taking that
# link down cuts the node off from the others and from the shop while its
# process runs (make chaos FAULTS=partition). bin/kafkanet forwards
# 127.0.0.1:909N to the node, so the seed brokers stay on localhost.
NET_BRIDGE=shopkafka0
NET_PREFIX=10.209.0
node_netns() { echo "shop-kafka-$1"; }
node_link() { echo "shopk$1"; }
node_host() { if [[ $(net_mode) == netns ]]; then echo "$NET_PREFIX.$1"; else echo 127.0.0.1; fi; }
net_mode() { cat "$RUN_DIR/net" 2>/dev/null || echo loopback; }
node_linkfile() { echo "$RUN_DIR/node-$1.link"; }
kafkanet_pidfile() { echo "$RUN_DIR/kafkanet.pid"; }
kafkanet_marker() { echo "$KAFKANET 127.0.0.1:"; }

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }

node_dir() { echo "$RUN_DIR/node-$1"; }
node_pidfile() { echo "$RUN_DIR/node-$1.pid"; }
registry_pidfile() { echo "$RUN_DIR/registry.pid"; }
apicurio_pidfile() { echo "$RUN_DIR/apicurio.pid"; }

# Apicurio Registry (REGISTRY=apicurio): 3.3.3 needs Java 21 or newer,
# which these machines have as Temurin 25; on Java 17 alone, 3.0.9.
APICURIO_JAVA=/usr/lib/jvm/temurin-25-jdk-amd64/bin/java
if [[ -x $APICURIO_JAVA ]]; then APICURIO_VERSION=3.3.3; else APICURIO_JAVA=java APICURIO_VERSION=3.0.9; fi
APICURIO_DIR="$KAFKA_CACHE/apicurio-$APICURIO_VERSION"
APICURIO_MANAGEMENT_PORT=8091 # its health endpoints live on a port of their own
APICURIO_CCOMPAT=/apis/ccompat/v7
apicurio_marker() { echo "$APICURIO_DIR/quarkus-run.jar"; }

# Mailpit, the mail server the email service delivers to: SMTP on 1025, its
# web UI and API on 8025; built with go install into the cache.
MAILPIT_VERSION=v1.33.1
MAILPIT_BIN="$KAFKA_CACHE/mailpit-$MAILPIT_VERSION/mailpit"
MAILPIT_SMTP=127.0.0.1:1025
MAILPIT_HTTP=127.0.0.1:8025
mailpit_pidfile() { echo "$RUN_DIR/mailpit.pid"; }
mailpit_marker() { echo "$MAILPIT_BIN --smtp"; }

# cmdline PID prints the process's command line with spaces between the
# arguments, or nothing when there is no such process.
cmdline() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true; }

# ours PIDFILE MARKER prints the PID in PIDFILE when that process is alive and
# its command line contains MARKER, that is when it is still the process we
# started and not a later process that reuses the PID.
ours() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ $(cmdline "$pid") == *"$2"* ]] || return 1
	echo "$pid"
}
node_marker() { echo "kafka.Kafka $(node_dir "$1")/server.properties"; }
registry_marker() { echo "$SHOP registry"; }

# port_busy PORT succeeds when something listens on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
