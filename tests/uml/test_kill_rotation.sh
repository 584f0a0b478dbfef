#!/bin/bash
# ctest wrapper: kill -9 of two tokend peers in UML at random moments, a few
# hundred times (TK_KILL_ROUNDS, default 200), while keys rotate every 2-3 s
# and clients add and delete associations; after each restart, what was
# acknowledged is held, what was not is all there or not at all, the kernel
# matches, nothing is duplicated and no outbound key is added twice.
# Exits with the scenario's status; 77 (skip) when UML is not installed.
here=$(cd "$(dirname "$0")" && pwd)
export UML_TIMEOUT=${UML_TIMEOUT:-540}
export UML_PASS_ENV="${UML_PASS_ENV:+$UML_PASS_ENV }TK_KILL_ROUNDS TK_KILL_SEED TK_KILL_MAX_SECONDS TK_KILL_BOUNDARY_PCT"
exec "$here/run.sh" "$here/scenario_kill_rotation.sh" "$@"
