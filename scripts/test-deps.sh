#!/usr/bin/env bash
# `npm test` runs this first (pretest): the tests need programs npm does not install —
# redis-server and redis-cli (the Redis store, readiness), openssl (TLS certificates), curl
# (HTTP), python3 (a client in another language, a pty), chromium (the login page in a real
# browser, driven by puppeteer-core) — and one python3 module, cryptography (the spec-only
# sealed-session client, test/e2e/sealed_client.py: Ed25519, X25519, HKDF). A missing one must
# fail the run, never skip its tests, so: as root with apt-get, install what is missing;
# otherwise stop here, before anything runs, with one line naming what to install.
# Only shell builtins are used until apt-get, so a bare PATH still gets that line — apart from
# python3 itself, run to try each import (no python3 on PATH: its modules count as missing too).
set -uo pipefail

# program, or python3:module → the Debian/Ubuntu package that has it
declare -A PACKAGE=([redis-server]=redis-server [redis-cli]=redis-tools [openssl]=openssl [curl]=curl [python3]=python3 [chromium]=chromium
  [python3:cryptography]=python3-cryptography)
PROGRAMS=(redis-server redis-cli openssl curl python3 chromium)
MODULES=(cryptography)

missing() {
  local program module out=()
  for program in "${PROGRAMS[@]}"; do command -v "$program" >/dev/null 2>&1 || out+=("$program"); done
  for module in "${MODULES[@]}"; do python3 -c "import $module" >/dev/null 2>&1 || out+=("python3:$module"); done
  echo "${out[*]}"
}

packages_for() {
  local program out=()
  for program in "$@"; do
    case " ${out[*]} " in *" ${PACKAGE[$program]} "*) ;; *) out+=("${PACKAGE[$program]}") ;; esac
  done
  echo "${out[*]}"
}

read -r -a need <<<"$(missing)"
[ "${#need[@]}" -eq 0 ] && exit 0
read -r -a packages <<<"$(packages_for "${need[@]}")"

if [ "${EUID}" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "rotor tests: installing ${packages[*]} (apt-get) for ${need[*]}" >&2
  if apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; then
    read -r -a need <<<"$(missing)"
    [ "${#need[@]}" -eq 0 ] && exit 0
  fi
  echo "rotor tests: apt-get could not provide ${need[*]}: install ${packages[*]}, then run npm test again" >&2
  exit 1
fi

echo "rotor tests need ${need[*]} (programs on PATH; python3:NAME a module python3 imports): install ${packages[*]} (e.g. sudo apt-get install ${packages[*]}), then run npm test again" >&2
exit 1
