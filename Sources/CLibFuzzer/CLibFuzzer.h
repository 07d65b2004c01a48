// libFuzzer's driver, which -sanitize=fuzzer links in: the fuzz target's main calls it,
// because SwiftPM links an executable's main to the Swift module's own entry point.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
