// What the fuzz target calls in libFuzzer, which -sanitize=fuzzer links in: the driver
// (its main calls it, because SwiftPM links an executable's main to the Swift module's
// own entry point) and the byte mutator (which its structure-aware mutator applies to one file).
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t maxSize);
