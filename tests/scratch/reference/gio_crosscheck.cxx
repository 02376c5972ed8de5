// Cross-check driver for holdall's GenericIO tests, built against the reference GenericIO
// library (see build.sh). It writes the table that tests/scratch/test_scratch_reference.py
// also writes with holdall, and prints every row of a file so the test can compare.
//
//   mpiexec -n 2 gio_crosscheck write FILE LAYOUT   LAYOUT: plain, split, same or cart;
//                                                  compression via GENERICIO_COMPRESS=1
//   gio_crosscheck read FILE                       prints "<rank> <name> <values...>"
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "GenericIO.h"

using gio::GenericIO;

namespace {

// Rows of rank r: 3000 + 7r, with long runs so that blosc has something to compress.
std::size_t rowsOf(int r) { return 3000 + 7 * static_cast<std::size_t>(r); }

int writeFile(const std::string &file, const std::string &layout) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm comm = MPI_COMM_WORLD;
  if (layout == "cart") {
    int dims[3] = {size, 1, 1}, periods[3] = {0, 0, 0};
    MPI_Cart_create(MPI_COMM_WORLD, 3, dims, periods, 0, &comm);
  }
  std::size_t n = rowsOf(rank);
  // Extra room at the end of each vector: GenericIO may use it for the CRC.
  std::vector<int64_t> id(n + 1);
  std::vector<float> x(n + 2);
  std::vector<double> m(n + 1);
  for (std::size_t i = 0; i < n; ++i) {
    id[i] = 1000000 * static_cast<int64_t>(rank) + static_cast<int64_t>(i / 16);
    x[i] = 0.5f * static_cast<float>(i % 100);
    m[i] = rank + 0.25 * static_cast<double>(i);
  }
  {
    GenericIO out(comm, file, GenericIO::FileIOPOSIX);
    out.setNumElems(n);
    out.setPhysOrigin(0.0);
    out.setPhysScale(2.0);
    if (layout == "split" || layout == "cart") out.setPartition(rank);
    if (layout == "same") out.setPartition(3);
    out.addVariable("id", id);
    out.addVariable("x", x, GenericIO::VarIsPhysCoordX);
    out.addVariable("m", m);
    out.write();
  }
  if (comm != MPI_COMM_WORLD) MPI_Comm_free(&comm);
  return 0;
}

template <typename T>
void printColumn(int rank, const char *name, const std::vector<T> &values, std::size_t n) {
  std::printf("%d %s", rank, name);
  for (std::size_t i = 0; i < n; ++i) std::printf(" %.17g", static_cast<double>(values[i]));
  std::printf("\n");
}

int readFile(const std::string &file) {
  GenericIO in(MPI_COMM_SELF, file, GenericIO::FileIOPOSIX);
  in.openAndReadHeader(GenericIO::MismatchAllowed);
  int ranks = in.readNRanks();
  for (int r = 0; r < ranks; ++r) {
    std::size_t n = in.readNumElems(r);
    std::size_t extra = in.requestedExtraSpace();
    std::vector<int64_t> id(n + extra / sizeof(int64_t));
    std::vector<float> x(n + extra / sizeof(float));
    std::vector<double> m(n + extra / sizeof(double));
    in.clearVariables();
    in.addVariable("id", id, GenericIO::VarHasExtraSpace);
    in.addVariable("x", x, GenericIO::VarHasExtraSpace);
    in.addVariable("m", m, GenericIO::VarHasExtraSpace);
    in.readData(r, false, false);
    printColumn(r, "id", id, n);
    printColumn(r, "x", x, n);
    printColumn(r, "m", m, n);
  }
  return 0;
}

}  // namespace

int main(int argc, char *argv[]) {
  MPI_Init(&argc, &argv);
  int status = 2;
  try {
    if (argc == 4 && std::strcmp(argv[1], "write") == 0)
      status = writeFile(argv[2], argv[3]);
    else if (argc == 3 && std::strcmp(argv[1], "read") == 0)
      status = readFile(argv[2]);
    else
      std::fprintf(stderr, "usage: %s write FILE LAYOUT | read FILE\n", argv[0]);
  } catch (const std::exception &err) {
    std::fprintf(stderr, "gio_crosscheck: %s\n", err.what());
    status = 1;
  }
  MPI_Finalize();
  return status;
}
