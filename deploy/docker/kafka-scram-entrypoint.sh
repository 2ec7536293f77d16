#!/usr/bin/env bash
# The apache/kafka image formats its storage without SCRAM users, and KRaft takes its first SCRAM
# user only at format time. This entry point writes the broker's configuration as the image does,
# formats the storage once with the admin's SCRAM user (TSUNAGU_KAFKA_ADMIN_PASSWORD), then hands
# over to the image's own launcher, which accepts storage that is already formatted.
# The storage tool takes the user as an argument: it is visible inside the container only, during
# the first start.
set -euo pipefail
. /etc/kafka/docker/bash-config
. /etc/kafka/docker/configureDefaults
/etc/kafka/docker/configure
if [ ! -f "${KAFKA_LOG_DIRS:-/tmp/kraft-combined-logs}/meta.properties" ]; then
  /opt/kafka/bin/kafka-storage.sh format --cluster-id="$CLUSTER_ID" -c /etc/kafka/kafka.properties \
    --add-scram "SCRAM-SHA-512=[name=tsunagu-admin,password=${TSUNAGU_KAFKA_ADMIN_PASSWORD:?}]" >/dev/null
fi
exec /etc/kafka/docker/launch
