#!/bin/bash
# ctest wrapper: automatic key rotation between two tokend peers in UML
# (rotation by the clock, epochs apart within and beyond the overlap, early
# moves at a byte limit), a ping at 20/s counting every lost reply.
# Exits with the scenario's status; 77 (skip) when UML is not installed.
here=$(cd "$(dirname "$0")" && pwd)
export UML_TIMEOUT=${UML_TIMEOUT:-480}
exec "$here/run.sh" "$here/scenario_sa_rotation.sh" "$@"
