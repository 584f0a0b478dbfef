#!/bin/bash
# ctest-style host-side test: boots User-Mode Linux and runs
# scenario_esp_smoke.sh inside (ESP with AES-GCM and AES-CBC+HMAC-SHA-256
# over IPv4 and IPv6 between two namespaces, and SA lifetime expiry).
# Exits with the scenario's status; 77 (skip) when UML is not installed.
#
# ctest: add_test(NAME uml_smoke COMMAND tests/uml/test_uml_smoke.sh) with
# SKIP_RETURN_CODE 77 and a TIMEOUT above UML_TIMEOUT (default 300 s).
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/run.sh" "$here/scenario_esp_smoke.sh" "$@"
