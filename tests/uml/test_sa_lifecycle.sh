#!/bin/bash
# ctest wrapper: the life of an association between two tokend peers in UML
# (rotation, SIGTERM and kill -9 restarts, an outbound SA lost while tokend
# was down, secret hygiene), a ping at 20/s counting every lost reply.
# Exits with the scenario's status; 77 (skip) when UML is not installed.
here=$(cd "$(dirname "$0")" && pwd)
export UML_TIMEOUT=${UML_TIMEOUT:-600}
exec "$here/run.sh" "$here/scenario_sa_lifecycle.sh" "$@"
