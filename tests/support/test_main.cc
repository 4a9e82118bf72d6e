// main() of every test binary: gives the tests a stable environment, then runs GoogleTest.
// - OMP_THREAD_LIMIT=1: Tesseract's OpenMP reads it only when the process starts, so when it is
//   missing the binary re-executes itself with it set (tests run OCR from several threads).
// - BATON_SOURCE_DIR / BATON_BINARY_DIR: where the tree and the build are (compiled in; the
//   environment wins), also for the programs the tests start.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

int main(int argc, char** argv) {
  if (std::getenv("OMP_THREAD_LIMIT") == nullptr) {
    setenv("OMP_THREAD_LIMIT", "1", 1);
    execv("/proc/self/exe", argv);  // on failure, carry on as we are
  }
  setenv("BATON_SOURCE_DIR", BATON_SOURCE_DIR_DEFAULT, 0);
  setenv("BATON_BINARY_DIR", BATON_BINARY_DIR_DEFAULT, 0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
