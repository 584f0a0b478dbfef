#!/bin/bash
# ctest wrapper: two peers with tokend in UML, ESP in both modes and families.
exec "$(dirname "$0")/run.sh" "$(dirname "$0")/scenario_sa_basic.sh"
