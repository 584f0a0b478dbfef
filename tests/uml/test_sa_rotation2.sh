#!/bin/bash
# ctest wrapper: automatic key rotation between two tokend peers in UML,
# part two (a scheduled new master secret, kill -9 at a boundary, a clock
# step of several periods), a ping at 20/s counting every lost reply.
# Exits with the scenario's status; 77 (skip) when UML is not installed.
here=$(cd "$(dirname "$0")" && pwd)
export UML_TIMEOUT=${UML_TIMEOUT:-480}
exec "$here/run.sh" "$here/scenario_sa_rotation2.sh" "$@"
