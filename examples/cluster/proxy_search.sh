#!/usr/bin/env bash
# Workers that share one database through a resnas storage-proxy (a gRPC server holding its connections).
#   proxy node:   RESNAS_DB=postgresql://USER:PASSWORD@DB_HOST:5432/resnas HOST=10.0.0.2 bash proxy_search.sh proxy
#   every worker: PROXY=10.0.0.2:13000 bash proxy_search.sh worker --space full --workers 4
set -euo pipefail
case "${1:-}" in
    proxy)  # no authentication, no TLS: HOST must be an address only the cluster reaches
        exec resnas storage-proxy --storage "${RESNAS_DB:?set RESNAS_DB to the database URL}" \
            --host "${HOST:-127.0.0.1}" --port "${PORT:-13000}" ;;
    worker)
        shift
        exec resnas search --storage "grpc://${PROXY:?set PROXY to HOST:PORT of the proxy}" "$@" ;;
    *)
        echo "usage: $0 proxy | worker [resnas search options]" >&2
        exit 2 ;;
esac
