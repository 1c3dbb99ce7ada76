#!/bin/sh
# Wait for the Temporal frontend, create the namespace and register Mendline's search
# attributes (run by the `temporal-setup` service once the server is up).
#
# SEARCH_ATTRIBUTES is a space-separated list of Name=Type; docker-compose.yml holds the list
# and tests/test_compose.py checks it against workers/server.py SEARCH_ATTRIBUTES, so the
# containerised cluster and the embedded dev server know the same attributes. Creating an
# attribute that already exists with the same type is a no-op, so reruns are safe.
set -eu

ADDRESS="${TEMPORAL_ADDRESS:?set TEMPORAL_ADDRESS to host:port of the frontend}"
NAMESPACE="${NAMESPACE:-default}"
ATTEMPTS="${SETUP_ATTEMPTS:-60}"
: "${SEARCH_ATTRIBUTES:?set SEARCH_ATTRIBUTES to a list of Name=Type}"

attempt=1
until temporal operator cluster health --address "$ADDRESS" | grep -q SERVING; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
        echo "temporal-setup: $ADDRESS did not report SERVING after $ATTEMPTS tries;" \
            "check 'docker compose logs temporal'" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

if ! temporal operator namespace describe --address "$ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1; then
    echo "temporal-setup: creating namespace $NAMESPACE"
    # Freshly started clusters can refuse namespace creation for a few seconds.
    attempt=1
    until temporal operator namespace create --address "$ADDRESS" -n "$NAMESPACE" \
            --retention "${NAMESPACE_RETENTION:-72h}"; do
        if [ "$attempt" -ge "$ATTEMPTS" ]; then
            echo "temporal-setup: could not create namespace $NAMESPACE" >&2
            exit 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
fi

for pair in $SEARCH_ATTRIBUTES; do
    name="${pair%%=*}"
    type="${pair#*=}"
    echo "temporal-setup: search attribute $name ($type)"
    attempt=1
    until temporal operator search-attribute create --address "$ADDRESS" \
            --namespace "$NAMESPACE" --name "$name" --type "$type"; do
        if [ "$attempt" -ge 10 ]; then
            echo "temporal-setup: could not register $name as $type; if it exists with" \
                "another type, remove it or rename Mendline's attribute" >&2
            exit 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
done
echo "temporal-setup: done"
