#!/bin/bash
# ctest wrapper: two tokend peers in UML repair drift of their SAs and
# policies and leave foreign ones alone.
export UML_TIMEOUT=${UML_TIMEOUT:-480}
exec "$(dirname "$0")/run.sh" "$(dirname "$0")/scenario_sa_drift.sh" "$@"
