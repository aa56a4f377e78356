#!/bin/sh
# Takes out of the image's venv what nothing reads at run time (the Dockerfile's builder stage
# runs it after pip installed everything): test suites, bytecode caches (the runtime stage has a
# read-only root and PYTHONDONTWRITEBYTECODE, so they would be read, never refreshed; without
# them start-up compiles the modules it imports, ~1-2 s), type stubs, C headers, static
# libraries and Cython sources, matplotlib's sample data, pip, and the DWARF debug information
# in extension modules (uvloop's loop.so is 14 MB, 2 MB without). Each stripped module is then
# imported, so a binary the stripping broke fails the build, not a request (a module whose
# Python dependency is absent, like PIL's Tk bridge, cannot be imported anyway: skipped).
# Usage: slim_venv.sh /opt/venv
set -eu
venv=$1
site=$(echo "$venv"/lib/python3*/site-packages)
"$venv/bin/python" -m pip uninstall --yes --quiet pip
find "$venv" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
find "$site" -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.h' \
    -o -name '*.c' -o -name '*.a' \) -delete
rm -rf "$site/numpy/_core/include" "$site/numpy/_core/lib" "$site/numpy/random/lib" \
    "$site/matplotlib/mpl-data/sample_data"
stripped=$(mktemp)
find "$site" -name '*.so' -not -path '*.libs/*' | while read -r so; do
    if readelf -S "$so" | grep -q '\.debug_info'; then
        strip --strip-debug "$so"
        echo "${so#"$site"/}" >> "$stripped"
    fi
done
"$venv/bin/python" -B -c '
import importlib, sys
names = [line.split(".cpython-")[0].replace("/", ".") for line in open(sys.argv[1]).read().split()]
unused = []
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as missing:  # a Python dependency absent (PIL._imagingtk: tkinter)
        unused.append(f"{name} (needs {missing.name})")
print(f"slim_venv: stripped {len(names)} extension modules; imported all but {unused}")
' "$stripped"
rm -f "$stripped"
