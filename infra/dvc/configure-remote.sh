#!/usr/bin/env bash
# Make an S3 bucket the default DVC remote. Usage: configure-remote.sh s3://bucket/path [endpoint_url]
set -euo pipefail
url=${1:?usage: configure-remote.sh s3://bucket/path [endpoint_url]}
endpoint=${2:-}
dvc remote add --default --force storage "$url"
if [[ -n "$endpoint" ]]; then
  dvc remote modify --local storage endpointurl "$endpoint"
fi
if [[ -n "${AWS_ACCESS_KEY_ID:-}" ]]; then
  dvc remote modify --local storage access_key_id "$AWS_ACCESS_KEY_ID"
  dvc remote modify --local storage secret_access_key "${AWS_SECRET_ACCESS_KEY:?AWS_SECRET_ACCESS_KEY is not set}"
fi
echo "DVC remote 'storage' -> $url${endpoint:+ (endpoint $endpoint)}"
