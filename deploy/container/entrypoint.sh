#!/bin/sh
# `serve` (the default) first writes the config and keys if missing and migrates the
# database, so a fresh /data volume starts a node; any other arguments run that command
# (`podman exec attestd attestd override list` works too).
set -eu
# Keys, database and config are readable by the node's user only.
umask 077
if [ "$#" -eq 0 ] || [ "$1" = serve ]; then
    attestd init
    attestd db upgrade
fi
exec attestd "$@"
