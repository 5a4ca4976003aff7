#!/usr/bin/env bash
# Install the Debian packages that the browser and production-stack tests start: Chromium with
# its driver, and the PostgreSQL server. Packages already present are left alone. Arguments
# (`chromium`, `postgresql`) limit the check to those packages.
set -euo pipefail

wanted=" ${*:-chromium postgresql} "
missing=()
if [[ $wanted == *" chromium "* ]]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
if [[ $wanted == *" postgresql "* ]]; then
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "Missing Debian packages: ${missing[*]}. Install them as root with" \
        "'apt-get install ${missing[*]}', then run the command again." >&2
    exit 1
fi
echo "Installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; then
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null
fi
