#!/usr/bin/env bash
# A pipeline step on a plain shell runner (Jenkins, Buildkite, cron, ...): render the bundle of
# pipeline $PIPELINE, use it, and clean it up whatever happens.
#
#   CONNC_REPO      the connection repository, checked out (default: .)
#   PIPELINE        the pipeline id (pipelines.d/$PIPELINE.yaml)
#   SOPS_AGE_KEY_FILE  the runner's age key, provisioned by the runner (never in the repository)
#
# Then run your build in `build` below: git, docker/skopeo, kubectl, npm, pip and Maven find
# their credentials through the variables of the bundle's env file.
set -euo pipefail
: "${PIPELINE:?set PIPELINE to the pipeline id}"
: "${SOPS_AGE_KEY_FILE:?set SOPS_AGE_KEY_FILE to the runner key}"

bundle=""
cleanup() {
  # Revokes the minted GitHub tokens and removes the bundle, also after a failed build.
  if [ -n "$bundle" ]; then connc clean "$bundle"; fi
}
trap cleanup EXIT

# `connc render` prints the env file; CONNC_BUNDLE in it names the bundle for the clean-up.
eval "$(connc render "$PIPELINE" --repo "${CONNC_REPO:-.}")"
bundle=$CONNC_BUNDLE

build() {
  # Your steps. For example (no prompt: the credential comes from the bundle):
  #   git clone https://git.example.com/acme/app.git
  #   kubectl get pods
  git config --get-all include.path >/dev/null  # the bundle's git config is in effect
}
build
